"""Shared fixtures: tiny random models built offline once per test session."""

from __future__ import annotations

import pytest

import beholder
from beholder.scoring import Scorer
from beholder.testing import build_model, make_image, make_tiny_model


@pytest.fixture(scope="session")
def tiny_internvl(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("tiny-internvl"), backbone="internvl", seed=0)


@pytest.fixture(scope="session")
def tiny_qwen2_vl(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("tiny-qwen2-vl"), backbone="qwen2_vl", seed=0)


@pytest.fixture(scope="session")
def internvl_scorer(tiny_internvl):
    return beholder.load(tiny_internvl)


@pytest.fixture(scope="session")
def qwen2_vl_scorer(tiny_qwen2_vl):
    return beholder.load(tiny_qwen2_vl)


@pytest.fixture(scope="session")
def qwen2_5_vl_scorer():
    return Scorer(build_model("qwen2_5_vl"))


@pytest.fixture(scope="session")
def qwen3_vl_scorer():
    return Scorer(build_model("qwen3_vl"))


@pytest.fixture(scope="session")
def varied_images():
    """Images whose shapes give different tile counts / patch grids (wide, tall, square, tiny, large)."""
    sizes = [(200, 120), (64, 64), (100, 300), (30, 20), (400, 90), (333, 250)]
    return [make_image(w, h, seed=i) for i, (w, h) in enumerate(sizes)]
