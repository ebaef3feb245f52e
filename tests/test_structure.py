"""The code's shape: choice fields of the configs name what the registries hold."""

from __future__ import annotations

import typing

from beholder.config import Activation, BackboneName, TemplateName
from beholder.model.backbones import ADAPTERS
from beholder.model.heads import ACTIVATIONS
from beholder.model.prompts import TEMPLATES


def test_config_choices_are_the_registries_entries():
    assert set(typing.get_args(BackboneName)) == set(ADAPTERS)
    assert set(typing.get_args(TemplateName)) == set(TEMPLATES)
    assert set(typing.get_args(Activation)) == set(ACTIVATIONS)
