"""The Ray engine on a local Ray instance started here (2 CPUs, no dashboard), with the tiny model.

Inputs mix real JPEG/PNG/WebP files, every broken kind, a CSV manifest (a duplicate, a missing file, a folder
posing as an image, carried columns), a WebDataset shard and a tar without images; they are given as relative
paths while Ray's workers run in another folder. The local engine scores the same inputs once as the
reference. A Ray run takes 5-15 s here (its worker processes import torch), so the module makes five: the
engine, the engine with an actor killed, a driver killed and its rerun, and the README's map_batches pipeline.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray
from image_files import encode, write_mixed_inputs, write_shard

import beholder
from beholder.cli import main
from beholder.distributed import RayOptions, ScoreBatch, engine, prepare_batch, score_to_shards
from beholder.distributed.output import ShardedOutput
from beholder.distributed.plan import ROW, ROWS, SHARD, Shard, expand_shards, keys_digest, make_plan, shard_units
from beholder.distributed.stages import DTYPE, PIXELS, SHAPE
from beholder.errors import BeholderError
from beholder.io import InputPlan, OutputConflict, read_provenance, read_scores
from beholder.io.tables import is_score_column

SRC = str(Path(__file__).resolve().parents[1] / "src")
N_FAILED = 6  # zero, truncated, text, huge, missing, folder-as-image
OPTIONS = RayOptions(actors=1, cpus_per_actor=0.5, shard_size=4)  # leaves 1.5 of the 2 CPUs for reading, decoding


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("ray-inputs")
    write_mixed_inputs(root)
    write_shard(root / "empty.tar", {"only.json": b"{}"})
    return {"root": root, "args": ["photos", "data/manifest.csv", "shard.tar", "empty.tar"]}


@pytest.fixture(scope="module")
def reference(inputs, tiny_internvl, tmp_path_factory) -> Path:
    """The local engine's table for the same inputs."""
    out = tmp_path_factory.mktemp("ray-reference") / "local.parquet"
    cwd = os.getcwd()
    os.chdir(inputs["root"])
    try:
        status = main(["score", *inputs["args"], "-m", str(tiny_internvl), "-o", str(out), "--no-progress"])
    finally:
        os.chdir(cwd)
    assert status == N_FAILED
    return out


def assert_same_rows(got_path: Path, want_path: Path) -> None:
    got, want = read_scores(got_path), read_scores(want_path)
    assert got.column_names == want.column_names
    got_rows, want_rows = got.to_pylist(), want.to_pylist()
    assert [r["path"] for r in got_rows] == [r["path"] for r in want_rows]  # every input once, in input order
    for g, w in zip(got_rows, want_rows):
        for name, value in w.items():
            if is_score_column(name) and value is not None:
                assert g[name] == pytest.approx(value, abs=1e-6), (w["path"], name)
            else:
                assert g[name] == value, (w["path"], name)


def score_in_process(inputs, model, out: Path, monkeypatch) -> object:
    monkeypatch.chdir(inputs["root"])
    plan = InputPlan(inputs["args"])
    return score_to_shards(str(model), plan, out, batch_size=2, options=OPTIONS, progress=False,
                           provenance={"inputs": plan.inputs})


@pytest.mark.timeout(120)
def test_ray_rows_equal_local_rows_and_bad_images_are_error_rows(
    cluster, inputs, tiny_internvl, reference, tmp_path, monkeypatch
):
    out = tmp_path / "scores.parquet"
    summary = score_in_process(inputs, tiny_internvl, out, monkeypatch)
    assert (summary.rows, summary.failed, summary.duplicates) == (18, N_FAILED, 1)
    assert_same_rows(out, reference)
    rows = {r["path"]: r for r in read_scores(out).to_pylist()}
    errors = {path: row["error"] for path, row in rows.items() if row["error"]}
    assert sorted(errors) == sorted([
        "photos/broken/zero.jpg", "photos/broken/truncated.jpg", "photos/broken/text.jpg", "photos/broken/huge.png",
        "data/missing.jpg", "data/not-an-image.jpg",
    ])
    assert "truncated" in errors["photos/broken/truncated.jpg"] and "No such file" in errors["data/missing.jpg"]
    assert all(rows[p]["score"] is None and rows[p]["dim_overall"] is None for p in errors)
    # one part per shard (4 inputs each; the tars are a shard each, the empty one an empty part), whole files
    parts = sorted(p.name for p in out.iterdir())
    assert parts == [f"part-{i:06d}.parquet" for i in range(len(parts))] and len(parts) == 6
    assert pq.read_metadata(out / parts[-1]).num_rows == 0
    provenance = read_provenance(out)
    assert provenance["rows"] == 18 and provenance["failed"] == N_FAILED and provenance["engine"]["name"] == "ray"
    assert provenance["weights_sha256"] == read_provenance(reference)["weights_sha256"]
    assert provenance["mode"] == "full" and provenance["dtype"] == "float32"
    assert b"beholder.provenance" in pq.read_schema(out / parts[0]).metadata  # each part describes itself
    # the same command again: complete, nothing rescored, Ray not even started
    status = main(["score", *inputs["args"], "-m", str(tiny_internvl), "-o", str(out), "--engine", "ray"])
    assert status == N_FAILED and [p.name for p in sorted(out.iterdir())] == parts


@pytest.mark.timeout(120)
def test_actor_killed_mid_run_still_scores_every_input_once(
    cluster, inputs, tiny_internvl, reference, tmp_path, monkeypatch
):
    killed = tmp_path / "killed"

    class DiesOnSecondBatch(ScoreBatch):
        """The scoring actor dies (ray.kill) in the middle of its second batch, once; Ray restarts it."""

        calls = 0

        def __call__(self, batch):
            self.calls += 1
            if self.calls == 2 and not killed.exists():
                killed.touch()
                ray.kill(ray.get_runtime_context().current_actor, no_restart=False)
                time.sleep(60)
            return super().__call__(batch)

    monkeypatch.setattr(engine, "ScoreBatch", DiesOnSecondBatch)
    out = tmp_path / "scores.parquet"
    summary = score_in_process(inputs, tiny_internvl, out, monkeypatch)
    assert killed.exists()  # the actor did die
    assert (summary.rows, summary.failed) == (18, N_FAILED)
    assert_same_rows(out, reference)


@pytest.mark.timeout(120)
def test_map_batches_pipeline_as_in_the_readme(cluster, inputs, tiny_internvl, reference):
    """The README's example, on images given as bytes (with `path` as their key) instead of S3."""
    files = sorted((inputs["root"] / "photos").glob("img*"))
    images = ray.data.from_items([{"path": f"photos/{f.name}", "bytes": f.read_bytes()} for f in files])
    model = str(tiny_internvl)
    scores = images.map_batches(
        prepare_batch, fn_kwargs={"model": model}, batch_size=4, batch_format="pyarrow"
    ).map_batches(
        ScoreBatch, fn_constructor_kwargs={"model": model}, batch_size=8, batch_format="pyarrow", num_cpus=0.5,
        compute=ray.data.ActorPoolStrategy(size=1),
    )
    got = {row["path"]: row for row in scores.take_all()}
    want = {row["path"]: row for row in read_scores(reference).to_pylist()}
    assert sorted(got) == [f"photos/{f.name}" for f in files]
    for path, row in got.items():
        assert row["error"] is None and row["level"] == want[path]["level"]
        for name in ("score", "dim_facial_brightness", "head_metavoter"):
            assert row[name] == pytest.approx(want[path][name], abs=1e-6)


def spawn(*args, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [SRC, os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen([sys.executable, "-m", "beholder", *map(str, args)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_killed_driver_resumes_without_rescoring_or_duplicates(
    cluster, inputs, tiny_internvl, reference, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "scores.parquet"
    command = [*inputs["args"], "-m", tiny_internvl, "-o", out, "--engine", "ray", "--address", cluster,
               "--cpus-per-actor", "0.5", "--shard-size", "2", "--batch-size", "1", "--no-progress"]
    first = spawn("score", *command, cwd=inputs["root"])
    try:
        deadline = time.monotonic() + 120
        while not any(out.glob("part-*.parquet")) and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=30)
    finally:
        first.kill()
    assert first.returncode == -signal.SIGKILL  # killed, not finished
    kept = {p.name: p.stat().st_mtime_ns for p in out.glob("part-*.parquet")}
    assert 0 < len(kept) < 10  # 10 shards: some finished, not all

    monkeypatch.chdir(inputs["root"])  # the rerun: this process, already connected to the same Ray
    assert main(["score", *map(str, command)]) == N_FAILED
    assert "18 rows, 6 failed" in capsys.readouterr().err
    assert {name: Path(out, name).stat().st_mtime_ns for name in kept} == kept  # finished shards never rewritten
    assert not (out / "_beholder").exists() and not list(out.glob(".*"))
    assert_same_rows(out, reference)


def test_stages_map_path_and_bytes_batches_to_score_rows(inputs, tiny_internvl):
    """The map_batches stages called as Ray calls them, without Ray: raw rows, prepared rows, bytes or paths."""
    root = inputs["root"]
    files = [str(root / "photos" / name) for name in ("img0001.png", "img0002.webp", "broken/truncated.jpg")]
    batch = pa.table({
        "path": files + ["in-memory.jpg"],
        "bytes": [None, None, None, encode(7)],
        "score": [1, 2, 3, 4],  # a column of the user's: carried, renamed as beholder score renames it
    })
    scorer = ScoreBatch(str(tiny_internvl), batch_size=2)
    raw = scorer(batch)
    carried = prepare_batch(batch, model=str(tiny_internvl))
    # views travel as uint8, one byte per pixel value, normalised by the actor
    sizes = [None if s is None else math.prod(s) for s in carried[SHAPE].to_pylist()]
    assert carried[DTYPE].to_pylist() == ["uint8", "uint8", None, "uint8"]
    assert [None if p is None else len(p) for p in carried[PIXELS].to_pylist()] == sizes
    prepared = scorer(carried)
    assert raw.equals(prepared)  # decoding in the actor or in a CPU task gives the same rows
    reference = beholder.load(tiny_internvl).score([*files, encode(7)], full=True)
    rows = raw.to_pylist()
    assert raw.column_names[:4] == ["path", "score", "level", "error"] and raw.column_names[-1] == "input_score"
    assert [r["path"] for r in rows] == files + ["in-memory.jpg"]
    assert [r["input_score"] for r in rows] == [1, 2, 3, 4]
    for row, want in zip(rows, reference):
        assert row["error"] == want.error
        if want.ok:
            assert row["score"] == pytest.approx(want.score, abs=1e-6)
            assert row["dim_overall"] == pytest.approx(want.dimensions["overall"], abs=1e-6)
    assert "truncated" in rows[2]["error"] and rows[2]["score"] is None and rows[2]["head_lm"] is None


def test_output_folder_refuses_other_settings_and_foreign_files(tmp_path):
    out = tmp_path / "scores.parquet"
    with ShardedOutput(out) as first:
        assert first.start({"mode": "full"}) is None
        first.save_plan({"mode": "full"}, {"shards": []})
        with pytest.raises(OutputConflict, match="another beholder run"):
            ShardedOutput(out).start({"mode": "full"})
    with pytest.raises(OutputConflict, match=r"other settings \(differ: mode\)"):
        ShardedOutput(out).start({"mode": "fast"})
    with ShardedOutput(out) as again:
        assert again.start({"mode": "full"}) == {"shards": []}  # same settings: the stored plan
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_bytes(b"")
    with pytest.raises(OutputConflict, match="not beholder shards"):
        ShardedOutput(tmp_path / "photos").start({})


def test_a_shard_short_of_rows_is_a_message_to_rerun_not_a_crash(tmp_path):
    """Rows Ray never returned: the run stops with a BeholderError (a message and 101), its other shards kept."""
    with ShardedOutput(tmp_path / "scores.parquet") as out:
        collector = engine._Collector(out, pa.schema([]), {}, [Shard(index=0, rows=3)], progress=False)
        with pytest.raises(BeholderError, match="shard 0: 0 of 3 rows came back; run the same command again"):
            collector.close()


def test_engine_ray_usage_errors_and_missing_extra(inputs, tiny_internvl, tmp_path, monkeypatch, capsys):
    args = ["score", str(inputs["root"] / "photos"), "-m", str(tiny_internvl), "--engine", "ray"]
    assert main(args) == 2 and "needs -o OUT" in capsys.readouterr().err
    assert main([*args, "-o", str(tmp_path / "x.jsonl")]) == 2 and "folder of Parquet" in capsys.readouterr().err
    for name in [m for m in sys.modules if m == "ray" or m.startswith(("ray.", "beholder.distributed"))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    assert main([*args, "-o", str(tmp_path / "out")]) == 101
    assert "pip install 'beholder[ray]'" in capsys.readouterr().err


def test_a_plan_of_a_key_subset_keeps_full_run_keys_down_to_tar_members(inputs, tmp_path, monkeypatch):
    """The plan of a subset (a cascade's survivors): only those files, only the listed members of a tar (a member it
    lacks an error row, in the listed count), no shard for a tar with none; keys as a full plan gives them."""
    monkeypatch.chdir(inputs["root"])
    plan = InputPlan(inputs["args"])
    keys = {"photos/img0001.png", "photos/img0004.png", "data/extra.png", "shard.tar/s2.webp", "shard.tar/gone.jpg",
            "not/an/input.jpg"}
    subset = make_plan(plan, tmp_path / "subset", shard_size=2, keys=keys)
    assert [(s.rows, s.tar, s.subset) for s in subset.shards] == [(2, None, False), (1, None, False),
                                                                   (2, "shard.tar", True)]  # empty.tar: no shard
    rows = pa.concat_tables(expand_shards(pa.concat_tables(shard_units(subset.shards, tmp_path / "subset")), chunk=1),
                            promote_options="permissive")
    got = {r["path"]: (r[SHARD], r[ROW], r[ROWS], r["error"]) for r in rows.to_pylist()}
    assert got == {
        "photos/img0001.png": (0, 0, 2, None), "photos/img0004.png": (0, 1, 2, None), "data/extra.png": (1, 0, 1, None),
        "shard.tar/s2.webp": (2, 0, 2, None),  # archive order first, then what the tar lacks
        "shard.tar/gone.jpg": (2, 1, 2, "InputError: shard.tar has no image member gone.jpg"),
    }
    full = make_plan(plan, tmp_path / "full", shard_size=2)
    every = pa.concat_tables(expand_shards(pa.concat_tables(shard_units(full.shards, tmp_path / "full"))),
                             promote_options="permissive")
    assert set(got) - {"shard.tar/gone.jpg"} < set(every["path"].to_pylist())
    assert keys_digest(keys) == keys_digest(sorted(keys)) != keys_digest(keys - {"not/an/input.jpg"})
