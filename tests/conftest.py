"""Shared fixtures: tiny random models built offline once per test session.

Torch runs one thread in the test process (as the subprocesses the tests start do, by OMP_NUM_THREADS): the
models are tiny, so a second thread gains little, and on a CPU shared with other jobs its spinning workers made
the suite several times slower (measured: 27 s against 69-104 s for the scoring and training tests).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import beholder
from beholder.scoring import Scorer
from beholder.testing import build_model, make_image, make_tiny_model

torch.set_num_threads(1)

SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.fixture(scope="session")
def subprocess_env() -> dict[str, str]:
    """The environment of a beholder subprocess: this checkout's sources first, one torch thread."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [SRC, os.environ.get("PYTHONPATH")])),
            "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def cluster():
    """A Ray instance of the module's own (2 CPUs, no dashboard; never one left running on the machine), shut down
    whatever happens; yields its address."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


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
