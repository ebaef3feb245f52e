"""examples/ runs end to end, as its README section says: make the inputs, build the dataset, train, score."""

from __future__ import annotations

import runpy
import shutil
import sys
from pathlib import Path

from beholder.cli import main
from beholder.io import read_provenance, read_scores

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_example_builds_trains_and_scores(tmp_path, monkeypatch):
    for name in ("sources.yaml", "train.yaml"):
        shutil.copy(EXAMPLES / name, tmp_path)
    monkeypatch.setattr(sys, "argv", ["make_example.py", str(tmp_path)])
    runpy.run_path(str(EXAMPLES / "make_example.py"), run_name="__main__")
    monkeypatch.chdir(tmp_path)
    assert main(["data", "build", "sources.yaml", "--no-progress"]) == 0
    assert main(["train", "train.yaml"]) == 0
    model = tmp_path / "runs" / "example" / "model"
    assert main(["score", "data/studio", "-m", str(model), "-o", "scores.csv", "--no-progress"]) == 0
    rows = read_scores(tmp_path / "scores.csv").to_pylist()
    assert len(rows) == 8 and all(r["error"] is None and "dim_overall" in r for r in rows)
    assert read_provenance(tmp_path / "scores.csv")["model"] == "example"
