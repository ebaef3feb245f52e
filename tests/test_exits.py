"""One exit-status table for every command (README "Exit status"), driven through `python -m beholder`.

Each documented user error runs as its own process, all at once to keep the suite fast, and must exit with
its documented status and a message, never a traceback: 2 invalid arguments, 101 could not run or finish.
SIGTERM, a closed stdout and a full disk are real signals, pipes and file-size limits.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from image_files import write_photos

from beholder.cli import main
from beholder.cli.exits import EXIT_FATAL, Terminated, run_command
from beholder.io import read_scores

SRC = str(Path(__file__).resolve().parents[1] / "src")
ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join(filter(None, [SRC, os.environ.get("PYTHONPATH")])),
    "OMP_NUM_THREADS": "1",
}
MISSING_EXTRA = "import sys, runpy; sys.modules[{module!r}] = None; sys.argv = ['beholder', *sys.argv[1:]]; " \
                "runpy.run_module('beholder', run_name='__main__')"


def start(*args: object, cwd: Path | None = None, missing: str | None = None, **kwargs) -> subprocess.Popen:
    command = ["-c", MISSING_EXTRA.format(module=missing)] if missing else ["-m", "beholder"]
    return subprocess.Popen(
        [sys.executable, *command, *map(str, args)],
        cwd=cwd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs,
    )


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_internvl) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("exits")
    [image] = write_photos(root / "images", 1)
    corrupt = root / "corrupt-model"
    shutil.copytree(tiny_internvl, corrupt)
    with open(corrupt / "heads.safetensors", "r+b") as f:
        f.write(b"\xff" * 16)  # the header length now claims exabytes
    (root / "scores.csv").write_text(f"path,score,level,error\n{image},0.5,fair,\n{image},0.7,good,\n")
    (root / "gone.csv").write_text(f"path,score,level,error\n{root}/nowhere.jpg,0.5,fair,\n")
    (root / "corrupt.parquet").write_bytes(b"PAR1 not really")
    (root / "bad.yaml").write_text("sources: [unclosed\n")
    (root / "labels.csv").write_text("image,score\nimages/img0000.jpg,1\n")
    (root / "build.yaml").write_text("sources:\n  - {name: a, labels: labels.csv}\n")
    (root / "build-gone.yaml").write_text("sources:\n  - {name: a, labels: nowhere.csv}\n")
    (root / "build-fraction.yaml").write_text("test_fraction: 2\nsources:\n  - {name: a, labels: labels.csv}\n")
    (root / "train.yaml").write_text(f"model: {tiny_internvl}\ntrain: nowhere.jsonl\noutput: run\n")
    return {"root": root, "image": image, "model": tiny_internvl, "corrupt": corrupt}


# (name, argv with {placeholders} from `files`, expected status, text the message must contain)
CASES = [
    ("score-unknown-option", "score {image} -m {model} --bogus", 2, "unrecognized arguments"),
    ("score-batch-size-0", "score {image} -m {model} --batch-size 0", 2, "--batch-size"),
    ("score-unknown-format", "score {image} -m {model} -o {root}/out.txt", 2, "unknown table format '.txt'"),
    ("score-missing-manifest", "score {root}/nope.csv -m {model}", 101, "manifest not found"),
    ("score-glob-matches-nothing", "score {root}/none/*.jpg -m {model}", 101, "matches no file"),
    ("score-missing-model", "score {image} -m {root}/no-model", 101, "cannot load model"),
    ("score-corrupt-weights", "score {image} -m {corrupt}", 101, "header"),
    ("select-missing-table", "select {root}/nope.parquet --top-k 1", 101, "nope.parquet: no such file"),
    ("select-unreadable-table", "select {root}/corrupt.parquet --top-k 1", 101, "cannot read it as a parquet"),
    ("select-no-criteria", "select {root}/scores.csv", 2, "at least one of --min"),
    ("select-bad-top-k", "select {root}/scores.csv --top-k 0", 2, "top_k must be at least 1"),
    ("select-no-such-group", "select {root}/scores.csv --top-k 1 --group-by nope", 2, "no column 'nope'"),
    ("select-missing-image", "select {root}/gone.csv --top-k 1 --copy-to {root}/best", 101, "1 selected image(s) not"),
    ("review-missing-key-file", "review {root}/scores.csv --port 0 --api-key-file {root}/nope.key", 2, "nope.key"),
    ("compare-missing-table", "compare {root}/scores.csv {root}/nope.jsonl", 101, "nope.jsonl: no such file"),
    ("compare-cannot-pair", "compare {root}/scores.csv {root}/scores.csv --paired", 2, "cannot pair"),
    ("evaluate-nothing-to-measure", "evaluate --benchmark {root}/b.csv", 2, "give --model or --predictions"),
    ("evaluate-missing-benchmark", "evaluate --benchmark {root}/b.csv --predictions {root}/scores.csv", 101, "b.csv"),
    ("data-missing-config", "data build {root}/nope.yaml", 2, "no such config file"),
    ("data-malformed-yaml", "data build {root}/bad.yaml", 2, "not valid YAML"),
    ("data-bad-list-override", "data build {root}/build.yaml --set sources.3.single_face=true", 2, "has 1 item"),
    ("data-bad-field-value", "data build {root}/build-fraction.yaml", 2, "test_fraction"),
    ("data-missing-labels", "data build {root}/build-gone.yaml", 101, "nowhere.csv: no such file"),
    ("train-malformed-yaml", "train {root}/bad.yaml", 2, "not valid YAML"),
    ("train-nan-learning-rate", "train {root}/train.yaml --set stage1.lr=.nan", 2, "stage1.lr: expected a number"),
    ("train-zero-batch", "train {root}/train.yaml --set stage1.batch_size=0", 2, "stage1.batch_size: must be greater"),
    ("train-negative-epochs", "train {root}/train.yaml --set stage2.epochs=-1", 2, "stage2.epochs: must be greater"),
    ("train-missing-rows", "train {root}/train.yaml", 101, "nowhere.jsonl: No such file"),
]
MISSING_EXTRAS = [  # (module hidden, argv, extra the message names)
    ("yaml", "data build {root}/build.yaml", "train"),
    ("peft", "train {root}/train.yaml", "train"),
]


@pytest.fixture(scope="module")
def outcomes(files) -> dict[str, subprocess.CompletedProcess]:
    """Every case at once: most never load torch, and the ones that do overlap."""
    running = {name: start(*argv.format(**files).split()) for name, argv, *_ in CASES}
    running.update({f"missing-{module}": start(*argv.format(**files).split(), missing=module)
                    for module, argv, _ in MISSING_EXTRAS})
    done = {}
    for name, process in running.items():
        stdout, stderr = process.communicate(timeout=120)
        done[name] = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    return done


@pytest.mark.parametrize(("name", "status", "message"), [(n, s, m) for n, _, s, m in CASES], ids=[c[0] for c in CASES])
def test_documented_error_has_its_status_and_a_message_not_a_traceback(outcomes, name, status, message):
    result = outcomes[name]
    assert (result.returncode, message in result.stderr, "Traceback" in result.stderr) == (status, True, False), (
        result.stderr
    )


@pytest.mark.parametrize(("module", "extra"), [(m, e) for m, _, e in MISSING_EXTRAS])
def test_missing_optional_dependency_names_the_extra_to_install(outcomes, module, extra):
    result = outcomes[f"missing-{module}"]
    assert result.returncode == EXIT_FATAL and "Traceback" not in result.stderr
    assert f"needs {module}: pip install 'beholder[{extra}]'" in result.stderr


def test_interrupt_closed_stdout_and_bugs_map_to_101(capsys):
    import argparse

    def command(exc: BaseException):
        def func(args):
            raise exc

        return argparse.Namespace(func=func, command_name="x", interrupt_hint="run it again")

    assert run_command(command(KeyboardInterrupt())) == EXIT_FATAL
    assert capsys.readouterr().err == "beholder x: interrupted; run it again\n"
    assert run_command(command(Terminated())) == EXIT_FATAL
    assert "terminated (SIGTERM)" in capsys.readouterr().err
    assert run_command(command(ZeroDivisionError("bug"))) == EXIT_FATAL  # a bug keeps its traceback
    assert "Traceback" in capsys.readouterr().err


def test_closed_stdout_ends_quietly(files):
    process = start("compare", files["root"] / "scores.csv", files["root"] / "scores.csv", "--json", "--unpaired")
    process.stdout.close()  # the reader is gone before the first line (`| head -0`)
    stderr = process.stderr.read()
    assert process.wait(timeout=60) == EXIT_FATAL and stderr == ""


def test_full_disk_is_a_message_and_101(files, tmp_path):
    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))  # writes past 1000 bytes fail: EFBIG

    process = start("score", files["image"], "-m", files["model"], "-o", tmp_path / "out.parquet",
                    preexec_fn=small_files)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == EXIT_FATAL and "File too large" in stderr and "Traceback" not in stderr


def test_sigterm_saves_rows_says_so_and_the_run_resumes(tmp_path, files, capsys):
    photos = write_photos(tmp_path / "many", 200)
    out = tmp_path / "scores.jsonl"
    args = ["score", tmp_path / "many", "-m", files["model"], "-o", out, "--batch-size", "1", "--decode-workers", "1",
            "--checkpoint-seconds", "3600"]  # nothing saved on the way: only the stop saves rows
    process = start(*args)
    progress: list[str] = []
    reader = threading.Thread(target=lambda: progress.extend(iter(lambda: process.stderr.read(1), "")))
    reader.start()
    deadline = time.monotonic() + 60
    while max(map(int, re.findall(r"(\d+)/200", "".join(progress))), default=0) < 10:  # the progress bar
        assert time.monotonic() < deadline and process.poll() is None, "".join(progress)
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == EXIT_FATAL
    reader.join()
    stderr = "".join(progress)
    assert "terminated (SIGTERM); the rows so far are saved" in stderr and "Traceback" not in stderr
    saved = read_scores(next(Path(f"{out}.partial").glob("chunk-*.parquet")))
    assert len(saved) >= 10
    assert main(list(map(str, args))) == 0  # the same command again, here in-process
    assert f"{len(saved)} already done by an earlier run" in capsys.readouterr().err
    assert [json.loads(line)["path"] for line in out.read_text().splitlines()] == [str(p) for p in photos]
