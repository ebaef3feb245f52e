"""The ERIA-1K table as one command (four models, one leaderboard with per-category bias), and a cascade measured
on a labelled benchmark, on tiny models and a tiny ERIA-style benchmark."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import rankdata, spearmanr

from beholder.cli import main
from beholder.io import read_scores
from beholder.testing import make_image, make_tiny_model

CATEGORIES = ("photography", "illustration/anime", "graphic/poster")
# The seed's four ERIA-1K scorers, each built tiny from its preset (ERNIE-Image-Aes reads as ArtiMuse does).
FOUR = {
    "laion": ("clip", "laion-aesthetic-v2"),
    "artimuse": ("internvl", "artimuse-10k"),
    "unipercept": ("internvl", "unipercept"),
    "ernie": ("internvl", "ernie-image-aes"),
}


@pytest.fixture(scope="module")
def eria(tmp_path_factory):
    """12 images in three categories with ERIA-style 1-10 ground truth, and the four tiny models."""
    root = tmp_path_factory.mktemp("eria")
    rows = []
    for i in range(12):
        make_image(64 + 11 * i, 48 + 7 * (i % 4), seed=40 + i).save(root / f"{i:02d}.jpg", quality=92)
        rows.append({"image": f"{i:02d}.jpg", "score": round(2.0 + 0.6 * i, 2), "category": CATEGORIES[i % 3]})
    (root / "eria.json").write_text(json.dumps(rows))
    models = {name: make_tiny_model(root / name, backbone=backbone, preset_name=preset, seed=7 + n)
              for n, (name, (backbone, preset)) in enumerate(FOUR.items())}
    return root, models


def test_the_eria_table_is_one_command_with_per_category_bias(eria, capsys):
    root, models = eria
    out = root / "reports"
    args = ["evaluate", "--benchmark", str(root / "eria.json"), "-o", str(out), "--bootstrap", "0",
            "--format", "json,md"]
    for name in FOUR:
        args += ["--model", str(models[name])]
    assert main(args) == 0
    printed = capsys.readouterr().out
    leaderboard, bias = printed.split("Per-category bias, all models")
    assert all(str(models[name]) in leaderboard for name in FOUR)
    header = next(line for line in bias.splitlines() if line.startswith("| Model"))
    assert [c.strip() for c in header.strip("|").split("|")[1:]] == [
        "graphic/poster (n=4)", "illustration/anime (n=4)", "photography (n=4)"]
    assert sum(str(models[name]) in line for line in bias.splitlines() for name in FOUR) == 4
    assert "Per-category bias, all models" in (out / "report.md").read_text()
    # one model's bias, restated from its predictions: mean of (pred - lo) / (hi - lo) - (gt - 1) / 9 per category
    report = json.loads((out / "report.json").read_text())
    laion = next(e for e in report["evaluations"] if e["model"]["name"] == str(models["laion"]))
    table = read_scores(next(out.glob("predictions-*laion*.jsonl")))
    gt = {r["image"]: (r["score"], r["category"]) for r in json.loads((root / "eria.json").read_text())}
    for category in CATEGORIES:
        errors = [(s - 1) / 9 - (gt[p.rsplit("/", 1)[-1]][0] - 1) / 9
                  for p, s in zip(table["path"].to_pylist(), table["score"].to_pylist())
                  if gt[p.rsplit("/", 1)[-1]][1] == category]
        assert laion["categories"][category]["bias"] == pytest.approx(np.mean(errors))


def test_a_cascade_measured_on_the_benchmark(eria, capsys):
    root, models = eria
    out = root / "cascade-report"
    code = main(["evaluate", "--benchmark", str(root / "eria.json"), "-o", str(out), "--bootstrap", "0",
                 "--format", "json", "--cascade", f"{models['laion']}:top=50%", "--model", str(models["artimuse"])])
    assert code == 0
    report = json.loads((out / "cascade.json").read_text())
    cheap = read_scores(next(out.glob("predictions-*laion*.jsonl"))).to_pylist()
    costly = {r["path"]: r["score"] for r in read_scores(next(out.glob("predictions-*artimuse*.jsonl"))).to_pylist()}
    gt = {str(root / r["image"]): r["score"] for r in json.loads((root / "eria.json").read_text())}
    paths = [r["path"] for r in cheap]
    c = np.array([r["score"] for r in cheap])
    e = np.array([costly[p] for p in paths])
    kept = {paths[i] for i in np.argsort(-c, kind="stable")[:6]}  # ceil(50% of 12)
    top_expensive = {paths[i] for i in np.argsort(-e, kind="stable")[:6]}
    final = [len(paths) + rankdata(e)[i] if p in kept else rankdata(c)[i] for i, p in enumerate(paths)]
    assert report["survivors"] == 6 and report["expensive_saved"] == pytest.approx(0.5)
    assert report["recall_at_k"] == pytest.approx(len(kept & top_expensive) / 6)
    assert report["srcc_final"] == pytest.approx(spearmanr(final, [gt[p] for p in paths]).statistic)
    assert report["srcc_expensive"] == pytest.approx(spearmanr(e, [gt[p] for p in paths]).statistic)
    assert "Recall@K" in capsys.readouterr().out
    per_category = main(["evaluate", "--benchmark", str(root / "eria.json"), "-o", str(out), "--bootstrap", "0",
                         "--format", "json", "--cascade", f"{models['laion']}:top=1", "--group-by-category",
                         "--model", str(models["artimuse"])])
    assert per_category == 0 and json.loads((out / "cascade.json").read_text())["survivors"] == 3


def test_a_cascade_evaluation_needs_one_expensive_model(eria, capsys):
    root, models = eria
    code = main(["evaluate", "--benchmark", str(root / "eria.json"), "--cascade", f"{models['laion']}:top=2",
                 "--model", str(models["artimuse"]), "--model", str(models["ernie"])])
    assert code == 2 and "one --model" in capsys.readouterr().err
