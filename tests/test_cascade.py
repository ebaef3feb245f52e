"""The cheap-to-expensive cascade on a tiny pair of models: only survivors reach stage 2, one table with both
scores and the stage each row reached, resumable, and refused when resumed with other settings."""

from __future__ import annotations

import pytest

import beholder
import beholder.cli.cascade as cli_cascade
from beholder.cascade import CascadePaths, CascadeRule, parse_cascade
from beholder.cli import main
from beholder.io import read_provenance, read_scores
from beholder.scoring import Scorer
from beholder.testing import make_image, make_tiny_model

N_IMAGES = 10


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """A tiny LAION-style predictor (cheap), a tiny ArtiMuse-style VLM (expensive), and a manifest of 10 images in
    two prompt groups."""
    root = tmp_path_factory.mktemp("cascade")
    cheap = make_tiny_model(root / "cheap", backbone="clip", seed=1)
    expensive = make_tiny_model(root / "expensive", preset_name="artimuse", seed=2)
    lines = ["path,prompt"]
    for i in range(N_IMAGES):
        make_image(60 + 9 * i, 50 + 5 * (i % 3), seed=20 + i).save(root / f"img{i}.png")
        lines.append(f"img{i}.png,{'cat' if i % 2 else 'dog'}")
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    return root, str(cheap), str(expensive)


def cascade(pair, out, rule="top=40%", *extra):
    root, cheap, expensive = pair
    return main(["score", str(root / "manifest.csv"), "--cascade", f"{cheap}:{rule}", "-m", expensive, "-o", str(out),
                 "--no-progress", "--batch-size", "2", *extra])


def plain_scores(model, paths):
    return {r.path: r.score for r in beholder.load(model).score(paths)}


def test_only_survivors_reach_stage_2_and_the_table_has_both_scores(pair, tmp_path):
    root, cheap, expensive = pair
    out = tmp_path / "out.parquet"
    assert cascade(pair, out, "top=40%", "--group-by", "prompt") == 0
    table = read_scores(out)
    assert table.column_names == ["path", "score", "level", "error", "stage", "stage1_score", "head_lm", "prompt"]
    rows = table.to_pylist()
    assert [r["path"] for r in rows] == [str(root / f"img{i}.png") for i in range(N_IMAGES)]  # input order
    cheap_scores = plain_scores(cheap, [r["path"] for r in rows])
    assert [r["stage1_score"] for r in rows] == pytest.approx([cheap_scores[r["path"]] for r in rows], abs=1e-6)
    survivors = {r["path"] for r in rows if r["stage"] == 2}
    for group in ("cat", "dog"):  # the best ceil(40% of 5) = 2 of each group by the cheap score
        members = sorted((r for r in rows if r["prompt"] == group), key=lambda r: -r["stage1_score"])
        assert {r["path"] for r in members if r["path"] in survivors} == {r["path"] for r in members[:2]}
    assert len(survivors) == 4
    stage2 = read_scores(CascadePaths.of(out).stage2)
    assert set(stage2["path"].to_pylist()) == survivors  # the expensive model saw nothing else
    expensive_scores = plain_scores(expensive, sorted(survivors))
    for r in rows:
        if r["stage"] == 2:
            assert r["score"] == pytest.approx(expensive_scores[r["path"]], abs=1e-5) and r["level"]
        else:
            assert r["score"] is None and r["level"] is None and r["error"] is None
    provenance = read_provenance(out)
    assert provenance["cascade"]["survivors"] == 4 and provenance["scale"] == [0.0, 100.0]
    assert provenance["stage1"]["model"].startswith("random-tiny-laion")


def test_a_threshold_rule_and_no_survivor_at_all(pair, tmp_path, monkeypatch):
    loaded = []
    real = cli_cascade.load_scorer
    monkeypatch.setattr(cli_cascade, "load_scorer", lambda args, name: loaded.append(name) or real(args, name))
    assert cascade(pair, tmp_path / "none.csv", "min=1e9") == 0
    assert loaded == [pair[1]]  # the expensive model is never loaded when nothing survives
    assert set(read_scores(tmp_path / "none.csv")["stage"].to_pylist()) == {1}
    first = read_scores(tmp_path / "none.csv")["stage1_score"].to_pylist()
    threshold = sorted(first)[-3]
    assert cascade(pair, tmp_path / "min.jsonl", f"min={threshold!r}") == 0
    table = read_scores(tmp_path / "min.jsonl")
    assert sum(s == 2 for s in table["stage"].to_pylist()) == 3


def test_a_killed_cascade_resumes_without_rescoring_or_duplicating(pair, tmp_path, monkeypatch):
    out = tmp_path / "out.jsonl"
    loaded = []
    real = cli_cascade.load_scorer
    monkeypatch.setattr(cli_cascade, "load_scorer", lambda args, name: loaded.append(name) or real(args, name))
    calls = {"n": 0}
    score_prepared = Scorer.score_prepared

    def dies_in_stage_2(self, items, **kwargs):
        if self.config.backbone == "internvl":
            calls["n"] += 1
            if calls["n"] == 2:
                raise KeyboardInterrupt
        return score_prepared(self, items, **kwargs)

    monkeypatch.setattr(Scorer, "score_prepared", dies_in_stage_2)
    args = ("--group-by", "prompt", "--checkpoint-seconds", "0", "--batch-size", "1")
    assert cascade(pair, out, "top=60%", *args) == 101
    assert not out.exists() and CascadePaths.of(out).stage1.exists()
    loaded.clear()
    assert cascade(pair, out, "top=60%", *args) == 0
    assert loaded == [pair[2]]  # stage 1 was finished: its model is not loaded again
    table = read_scores(out)
    assert len(table) == N_IMAGES and len(set(table["path"].to_pylist())) == N_IMAGES
    assert sum(s == 2 for s in table["stage"].to_pylist()) == 6  # ceil(60% of 5) per group
    assert cascade(pair, out, "top=60%", *args) == 0  # complete: nothing to do


def test_resuming_with_another_rule_is_refused(pair, tmp_path, capsys):
    out = tmp_path / "out.parquet"
    CascadePaths.of(out).folder.mkdir()
    (CascadePaths.of(out).record).write_text('{"cheap": "x", "expensive": "y", "rule": "top=1", "group_by": null}')
    assert cascade(pair, out, "top=40%") == 101
    assert "other settings (differ: cheap, expensive, rule)" in capsys.readouterr().err
    assert cascade(pair, out, "top=40%", "--overwrite") == 0


@pytest.mark.parametrize(("text", "rule"), [
    ("top=20%", CascadeRule(top_fraction=0.2)),
    ("top=100", CascadeRule(top_k=100)),
    ("min=5.5", CascadeRule(min_score=5.5)),
    ("min=5,top=10%", CascadeRule(min_score=5.0, top_fraction=0.1)),
])
def test_rules_parse(text, rule):
    assert CascadeRule.parse(text) == rule and CascadeRule.parse(str(rule)) == rule
    assert parse_cascade(f"./models/laion:v2:{text}") == ("./models/laion:v2", rule)


@pytest.mark.parametrize("spec", ["laion", "laion:", "laion:top=2.5", "laion:best=3", "laion:top=x%"])
def test_a_bad_cascade_is_an_argument_error(pair, tmp_path, spec, capsys):
    root, _, expensive = pair
    code = main(["score", str(root / "img0.png"), "--cascade", spec, "-m", expensive, "-o", str(tmp_path / "o.csv")])
    assert code == 2 and "error" in capsys.readouterr().err


def test_a_cascade_needs_an_output(pair, capsys):
    root, cheap, expensive = pair
    assert main(["score", str(root / "img0.png"), "--cascade", f"{cheap}:top=1", "-m", expensive]) == 2
    assert "give -o OUT" in capsys.readouterr().err
