"""Shared fixtures: tiny random models built offline once per test session.

Torch runs one thread in the test process (as the subprocesses the tests start do, by OMP_NUM_THREADS): the
models are tiny, so a second thread gains little, and on a CPU shared with other jobs its spinning workers made
the suite several times slower (measured: 27 s against 69-104 s for the scoring and training tests).
"""

from __future__ import annotations

import pytest
import torch

import beholder
from beholder.scoring import Scorer
from beholder.testing import build_model, make_image, make_tiny_model

torch.set_num_threads(1)


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
