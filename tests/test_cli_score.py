"""`beholder score`, `select` and `compare` driven as a user drives them: as subprocesses, on real files.

The inputs mix a folder of real JPEG/PNG/WebP images with broken files (zero-byte, truncated, text named
.jpg, a decompression bomb), a CSV manifest with a missing file, a folder posing as an image and carried
columns, and a WebDataset shard; the model is the tiny random one from beholder.testing. Parquet and CSV
outputs come from the shared `outputs` runs, JSONL from the kill -9 resume test.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from image_files import write_mixed_inputs, write_photos

from beholder.cli import main
from beholder.io import read_scores

SRC = str(Path(__file__).resolve().parents[1] / "src")
ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join(filter(None, [SRC, os.environ.get("PYTHONPATH")])),
    "OMP_NUM_THREADS": "1",
}
N_FAILED = 6  # zero, truncated, text, huge, missing, folder-as-image


def beholder(*args: str, cwd: Path | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "beholder", *map(str, args)],
        cwd=cwd,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    process = beholder(*args, cwd=cwd)
    stdout, stderr = process.communicate(timeout=120)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("inputs")
    files = write_mixed_inputs(root)
    return {**files, "args": [root / "photos", files["manifest"], files["shard"]]}


@pytest.fixture(scope="module")
def outputs(inputs, tiny_internvl, tmp_path_factory) -> dict:
    """The same inputs scored into Parquet and CSV by two concurrent runs, one a process of its own and one in
    this process (which saves a second start of torch); the resume test writes JSONL."""
    out = tmp_path_factory.mktemp("out")
    paths = {fmt: out / f"scores.{fmt}" for fmt in ("parquet", "csv")}
    args = [*inputs["args"], "-m", tiny_internvl, "--batch-size", "4"]
    process = beholder("score", *args, "-o", paths["parquet"])
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        status = main(["score", *map(str, args), "-o", str(paths["csv"])])
    results = {"csv": (status, stderr.getvalue()), "parquet": (process.wait(timeout=120), process.stderr.read())}
    return {"paths": paths, "results": results}


def test_outputs_have_one_row_per_input_and_errors_in_place(inputs, outputs):
    root = inputs["root"]
    expected_keys = (
        [str(p.relative_to(root)) for p in sorted(inputs["broken"].values())]  # broken/ sorts before img*
        + [str(p.relative_to(root)) for p in inputs["photos"]]
        + ["data/extra.png", "data/missing.jpg", "data/not-an-image.jpg"]
        + ["shard.tar/s1.jpg", "shard.tar/s2.webp"]
    )
    tables = {}
    for fmt, path in outputs["paths"].items():
        status, stderr = outputs["results"][fmt]
        assert status == N_FAILED, stderr  # the exit status says how many failed
        assert f"{len(expected_keys)} rows, {N_FAILED} failed" in stderr
        tables[fmt] = read_scores(path)
    parquet = tables["parquet"]
    rows = {os.path.relpath(r["path"], root): r for r in parquet.to_pylist()}
    assert sorted(rows) == sorted(expected_keys)
    assert len(parquet) == len(expected_keys)
    errors = {k: r["error"] for k, r in rows.items() if r["error"]}
    assert sorted(errors) == sorted(
        [
            "photos/broken/zero.jpg",
            "photos/broken/truncated.jpg",
            "photos/broken/text.jpg",
            "photos/broken/huge.png",
            "data/missing.jpg",
            "data/not-an-image.jpg",
        ]
    )
    assert "truncated" in errors["photos/broken/truncated.jpg"]
    assert "too large" in errors["photos/broken/huge.png"]
    assert "No such file" in errors["data/missing.jpg"]
    good = rows["photos/img0001.png"]
    assert 0 <= good["head_lm"] <= 1 and good["level"] in ("bad", "poor", "fair", "good", "excellent")
    assert good["score"] is not None and good["error"] is None
    # flat schema: base columns, 12 dimensions, heads, then carried manifest columns (score -> input_score)
    assert parquet.column_names[:4] == ["path", "score", "level", "error"]
    assert sum(c.startswith("dim_") for c in parquet.column_names) == 12
    assert parquet.column_names[-2:] == ["prompt", "input_score"]
    assert rows["data/extra.png"]["prompt"] == "a cat" and rows["data/extra.png"]["input_score"] == 4
    assert tables["csv"].column_names == parquet.column_names
    assert tables["csv"].to_pylist() == parquet.to_pylist()  # same rows, same values, whatever the format


def test_provenance_travels_with_every_output(outputs, tiny_internvl):
    for path in outputs["paths"].values():
        provenance = json.loads(Path(f"{path}.provenance.json").read_text())
        assert provenance["source"] == str(tiny_internvl) and len(provenance["weights_sha256"]) == 64
        assert provenance["preprocess"]["mode"] == "tiles" and provenance["beholder_version"]
        assert provenance["mode"] == "full" and provenance["rows"] == 18 and provenance["failed"] == N_FAILED
    embedded = json.loads(pq.read_schema(outputs["paths"]["parquet"]).metadata[b"beholder.provenance"])
    assert embedded["weights_sha256"] == provenance["weights_sha256"]


def test_rerun_on_a_finished_output_does_nothing(inputs, outputs, capsys):
    path = outputs["paths"]["csv"]
    before = path.read_bytes()
    assert main(["score", *map(str, inputs["args"]), "-m", "never/loaded", "-o", str(path)]) == N_FAILED
    assert "is complete (18 rows, 6 failed)" in capsys.readouterr().err
    assert path.read_bytes() == before


def wait_for(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_resume_after_kill_9_scores_every_input_exactly_once(tmp_path, tiny_internvl):
    photos = write_photos(tmp_path / "many", 150)
    out = tmp_path / "scores.jsonl"
    partial = Path(f"{out}.partial")
    args = [
        "score",
        tmp_path / "many",
        "-m",
        tiny_internvl,
        "-o",
        out,
        "--batch-size",
        "1",
        "--checkpoint-seconds",
        "0",
        "--decode-workers",
        "1",
    ]

    def chunks() -> int:
        return len(list(partial.glob("chunk-*.parquet"))) if partial.exists() else 0

    for wanted in (3, 25):  # kill mid-run twice: once early, once in the resumed run
        process = beholder(*args)
        wait_for(lambda wanted=wanted: chunks() >= wanted)
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert not out.exists(), "the run finished before it could be killed"
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):  # the last run in this process: one start of torch fewer
        assert main(list(map(str, args))) == 0
    assert "already done by an earlier run" in stderr.getvalue()
    rows = [json.loads(line) for line in out.read_text().splitlines()]  # every line whole JSON: no torn rows
    assert [r["path"] for r in rows] == [str(p) for p in photos]  # each input once, in input order
    assert not partial.exists()
    assert json.loads(Path(f"{out}.provenance.json").read_text())["rows"] == len(photos)
    import beholder as library  # the resumed rows equal an uninterrupted scoring

    reference = library.load(tiny_internvl).score([str(p) for p in photos[::30]])
    assert [r["score"] for r in rows[::30]] == pytest.approx([r.score for r in reference], abs=1e-5)


def test_select_writes_rows_and_copies_images(outputs, inputs, tmp_path):
    best = tmp_path / "best"
    result = run(
        "select",
        outputs["paths"]["parquet"],
        "--top-k",
        "1",
        "--group-by",
        "prompt",
        "-o",
        tmp_path / "best.jsonl",
        "--copy-to",
        best,
    )
    assert result.returncode == 0, result.stderr
    kept = read_scores(tmp_path / "best.jsonl").to_pylist()
    # groups: no prompt (folder + shard images), "a cat" (manifest); "a dog" has only error rows
    assert [r["prompt"] for r in kept] == [None, "a cat"]
    assert "kept 2 of 12 scored rows (6 rows without a score left out)" in result.stderr
    # each group in its own subfolder; rows without a group value in _none
    copied = {(p.parent.name, p.name) for p in best.glob("*/*")}
    assert copied == {(r["prompt"] or "_none", os.path.basename(r["path"])) for r in kept}
    provenance = json.loads((tmp_path / "best.jsonl.provenance.json").read_text())
    assert provenance["selection"]["top_k"] == 1 and provenance["weights_sha256"]


def test_select_prints_kept_paths_without_output(outputs, capsys):
    assert main(["select", str(outputs["paths"]["csv"]), "--top-fraction", "0.25"]) == 0
    printed = capsys.readouterr().out.split()
    assert len(printed) == 3  # ceil(0.25 * 12)
    table = read_scores(outputs["paths"]["csv"])
    best = max((r for r in table.to_pylist() if r["score"] is not None), key=lambda r: r["score"])
    assert printed[0] == best["path"]


def test_compare_two_outputs(outputs, capsys):
    result = run("compare", outputs["paths"]["parquet"], outputs["paths"]["csv"])
    assert result.returncode == 0, result.stderr
    assert "paired on 'path': 12 images scored in both; Wilcoxon signed-rank test" in result.stdout
    assert "dim_facial_brightness" in result.stdout and "95% CI" in result.stdout
    assert "winner: none" in result.stdout  # the same scores in two formats
    assert (
        main(["compare", str(outputs["paths"]["parquet"]), str(outputs["paths"]["csv"]), "--unpaired", "--json"]) == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["paired"] is False and report["metrics"][0]["test"] == "mann-whitney"
    assert report["metrics"][0]["a"]["n"] == 12 and report["excluded_a"] == 6 and report["winner"] is None


def test_single_image_prints_a_readable_card(inputs, tiny_internvl, capsys):
    assert main(["score", str(inputs["photos"][0]), "-m", str(tiny_internvl), "--no-progress"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == str(inputs["photos"][0]) and lines[1].split()[0] == "score"
    assert lines[3].split() == ["dimension", "score", "level"] and len(lines) == 4 + 12
    assert lines[4].startswith("  Facial Brightness") and lines[-1].startswith("  Comprehensive Aesthetic Score")


def test_help_reads_well(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    top = capsys.readouterr().out
    for command in ("score", "select", "compare"):
        assert f"    {command} " in top
        with pytest.raises(SystemExit) as exit_:
            main([command, "--help"])
        assert exit_.value.code == 0
        text = capsys.readouterr().out
        assert "examples:" in text and f"usage: beholder {command}" in text


def test_usage_problems_fail_before_loading_a_model(tmp_path, capsys):
    assert main(["score", str(tmp_path / "gone.csv"), "-m", "no/model", "-o", str(tmp_path / "o.csv")]) == 101
    assert "manifest not found" in capsys.readouterr().err
    assert main(["score", str(tmp_path), "-m", "x", "-o", str(tmp_path / "o.txt")]) == 2
    assert "unknown table format '.txt'" in capsys.readouterr().err
    assert main(["select", str(tmp_path / "s.csv")]) == 2
    assert "at least one of --min" in capsys.readouterr().err
