"""The cheap-to-expensive cascade on a tiny pair of models: only survivors reach stage 2, one table with both
scores and the stage each row reached, resumable, and refused when resumed with other settings; the same table
with the Ray engine (a local Ray instance, 2 CPUs) and with either model served by `beholder serve`."""

from __future__ import annotations

from pathlib import Path

import pytest
from image_files import encode, write_shard

import beholder
import beholder.cli.cascade as cli_cascade
from beholder.cascade import CascadePaths, CascadeRule, parse_cascade
from beholder.cli import main
from beholder.io import read_provenance, read_scores
from beholder.io.tables import is_score_column
from beholder.scoring import Scorer
from beholder.testing import make_image, make_tiny_model

N_IMAGES = 10
N_MEMBERS = 5  # images in the tar shard beside the manifest (the Ray and served cascades score both)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """A tiny LAION-style predictor (cheap), a tiny ArtiMuse-style VLM (expensive), a manifest of 10 images in
    two prompt groups, and a WebDataset shard of 5 images (and a sidecar)."""
    root = tmp_path_factory.mktemp("cascade")
    cheap = make_tiny_model(root / "cheap", backbone="clip", seed=1)
    expensive = make_tiny_model(root / "expensive", preset_name="artimuse", seed=2)
    lines = ["path,prompt"]
    for i in range(N_IMAGES):
        make_image(60 + 9 * i, 50 + 5 * (i % 3), seed=20 + i).save(root / f"img{i}.png")
        lines.append(f"img{i}.png,{'cat' if i % 2 else 'dog'}")
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    members = {f"{i:03d}.jpg": encode(40 + i, "jpg", (70 + 7 * i, 50)) for i in range(N_MEMBERS)}
    write_shard(root / "shard.tar", {**members, "000.json": b"{}"})
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
    assert [r["prompt"] for r in rows] == ["cat" if i % 2 else "dog" for i in range(N_IMAGES)]  # on every row
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


# ---- the same cascade on the Ray engine, and with served models ---------------------------------------------------


def cascade_with_shard(pair, out, cheap, expensive, *extra):
    """The cascade of the manifest and the tar shard (the best 2 of each prompt group and 2 of the tar's 5).

    One image per forward pass: engines group images into passes differently, and a float32 score on ArtiMuse's
    0-100 scale moves by a few 1e-6 with the other images of its pass."""
    root = pair[0]
    return main(["score", str(root / "manifest.csv"), str(root / "shard.tar"), "--cascade", f"{cheap}:top=40%",
                 *expensive, "-o", str(out), "--group-by", "prompt", "--no-progress", "--batch-size", "1", *extra])


@pytest.fixture(scope="module")
def local_reference(pair, tmp_path_factory):
    out = tmp_path_factory.mktemp("cascade-reference") / "local.parquet"
    assert cascade_with_shard(pair, out, pair[1], ["-m", pair[2]]) == 0
    return out


def assert_same_table(got_path, want_path):
    got, want = read_scores(got_path), read_scores(want_path)
    assert got.column_names == want.column_names
    assert [r["path"] for r in got.to_pylist()] == [r["path"] for r in want.to_pylist()]
    for g, w in zip(got.to_pylist(), want.to_pylist()):
        for name, value in w.items():
            if is_score_column(name) and value is not None:
                assert g[name] == pytest.approx(value, abs=1e-6), (w["path"], name)
            else:
                assert g[name] == value, (w["path"], name)


def counting_score_batch(log: Path) -> type:
    """The engine's ScoreBatch, appending `MODEL<tab>PATH` to `log` for every row its actor scores."""
    from beholder.distributed import ScoreBatch

    class Counting(ScoreBatch):
        def __init__(self, model, **kwargs):
            super().__init__(model, **kwargs)
            self.name = Path(model).name

        def __call__(self, batch):
            scored = super().__call__(batch)
            with open(log, "a") as out:
                out.writelines(f"{self.name}\t{path}\n" for path in scored["path"].to_pylist())
            return scored

    return Counting


def scored_by(log: Path, model: str) -> list[str]:
    lines = log.read_text().splitlines() if log.exists() else []
    return [path for name, path in (line.split("\t") for line in lines) if name == model]


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_ray_cascade_killed_in_stage_2_resumes_and_equals_the_local_one(
    pair, cluster, local_reference, tmp_path, monkeypatch
):
    from beholder.distributed import engine
    from beholder.distributed.output import ShardedOutput

    root, cheap, expensive = pair
    out, log = tmp_path / "out.parquet", tmp_path / "scored.log"
    paths = CascadePaths.of(out)
    monkeypatch.setattr(engine, "ScoreBatch", counting_score_batch(log))
    planned, load_preprocessor = [], engine.load_preprocessor

    def plans_with(name, **options):  # what the driver loads (weightless) to plan a stage
        planned.append(name)
        return load_preprocessor(name, **options)

    monkeypatch.setattr(engine, "load_preprocessor", plans_with)
    write_part = ShardedOutput.write_part
    stage2_parts: list[int] = []

    def dies_at_the_second_stage_2_part(self, index, table, provenance):
        if self.folder == paths.stage2:
            if len(stage2_parts) == 1:
                raise KeyboardInterrupt  # the driver stops between two parts of stage 2
            stage2_parts.append(index)
        write_part(self, index, table, provenance)

    monkeypatch.setattr(ShardedOutput, "write_part", dies_at_the_second_stage_2_part)
    ray_options = ["--engine", "ray", "--address", cluster, "--cpus-per-actor", "0.5", "--shard-size", "3"]
    assert cascade_with_shard(pair, out, cheap, ["-m", expensive], *ray_options) == 101
    assert not out.exists() and read_provenance(paths.stage1)["rows"] == N_IMAGES + N_MEMBERS
    [kept] = [p.name for p in paths.stage2.glob("part-*.parquet")]
    assert kept == f"part-{stage2_parts[0]:06d}.parquet"
    survivors = set(read_scores(paths.survivors)["path"].to_pylist())
    assert len(survivors) == 6 and {f"{root}/shard.tar/{m}" for m in ("002.jpg", "003.jpg")} - survivors
    assert sorted(scored_by(log, "cheap")) == sorted(read_scores(local_reference)["path"].to_pylist())
    assert set(scored_by(log, "expensive")) <= survivors  # ... and nothing else reached the expensive model
    assert planned == [cheap, expensive]
    before = {p.name: p.stat().st_mtime_ns for p in [*paths.stage1.glob("part-*"), paths.stage2 / kept]}
    log.unlink()
    planned.clear()
    monkeypatch.setattr(ShardedOutput, "write_part", write_part)

    assert cascade_with_shard(pair, out, cheap, ["-m", expensive], *ray_options) == 0
    assert scored_by(log, "cheap") == [] and planned == [expensive]  # stage 1 was finished: not even planned
    done = set(read_scores(paths.stage2 / kept)["path"].to_pylist())
    assert sorted(scored_by(log, "expensive")) == sorted(survivors - done)  # the other shards, each row once
    assert {p.name: p.stat().st_mtime_ns for p in [*paths.stage1.glob("part-*"), paths.stage2 / kept]} == before
    assert_same_table(out, local_reference)
    assert read_provenance(out)["stage2"]["engine"]["name"] == "ray"


def test_either_stage_can_be_a_served_model(pair, local_reference, subprocess_env, tmp_path):
    from beholder.serve.launch import ServerProcess

    root, cheap, expensive = pair
    server = ServerProcess(expensive, "--max-batch", "1", "--log-level", "warning", env=subprocess_env)
    try:
        served = tmp_path / "served.parquet"
        assert cascade_with_shard(pair, served, cheap, ["--server", server.url]) == 0
        assert_same_table(served, local_reference)
        assert read_provenance(served)["cascade"]["expensive"] == server.url
        swapped, swapped_locally = tmp_path / "swapped.jsonl", tmp_path / "swapped-locally.jsonl"
        assert cascade_with_shard(pair, swapped, server.url, ["-m", cheap]) == 0  # the served model first
        assert cascade_with_shard(pair, swapped_locally, expensive, ["-m", cheap]) == 0
        assert_same_table(swapped, swapped_locally)
    finally:
        assert server.stop() == 0, server.output()


def test_ray_or_served_cascade_usage_errors(pair, tmp_path, capsys):
    root, cheap, expensive = pair
    ray = ["--engine", "ray"]
    assert cascade_with_shard(pair, tmp_path / "o.csv", cheap, ["--server", "http://127.0.0.1:9"], *ray) == 2
    assert "not with --server" in capsys.readouterr().err
    assert cascade_with_shard(pair, tmp_path / "o.csv", "http://127.0.0.1:9", ["-m", expensive], *ray) == 2
    served = ["--server", "http://127.0.0.1:9", "--dtype", "bfloat16"]
    assert cascade_with_shard(pair, tmp_path / "o.csv", "http://127.0.0.1:9", served) == 2
    assert "--dtype: the server's settings" in capsys.readouterr().err
