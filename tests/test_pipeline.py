"""The decode -> batch -> write pipeline, driven by a scripted scorer so each behaviour is exact."""

from __future__ import annotations

import threading
import time

import pytest

from beholder.images import ImageError
from beholder.io import Item, OutputConflict, ResumableWriter, read_scores
from beholder.pipeline import MemorySink, ModelFailure, score_inputs
from beholder.results import ScoreResult


class ScriptedScorer:
    """Scores an item by its number; `bad_decode` / `bad_model` keys fail at that stage. Tracks how many
    decoded images are alive (prepared, not yet scored) to check the pipeline's memory bound."""

    has_full = True
    scale = (0.0, 1.0)
    source = "scripted"
    provenance = {"model": "scripted", "weights_sha256": "0" * 64, "device": "cpu"}

    def __init__(self, bad_decode=(), bad_model=(), decode_seconds=0.0):
        self.bad_decode, self.bad_model, self.decode_seconds = set(bad_decode), set(bad_model), decode_seconds
        self.alive = self.peak_alive = 0
        self.batches: list[int] = []
        self._lock = threading.Lock()

    def full_scoring(self, full):
        return self.has_full if full is None else full

    def prepare(self, source, path=None):
        time.sleep(self.decode_seconds)
        if path in self.bad_decode:
            raise ImageError(f"cannot decode image: {path} is corrupt")
        with self._lock:
            self.alive += 1
            self.peak_alive = max(self.peak_alive, self.alive)
        return path

    def score_prepared(self, prepared, *, full=True, batch_size=None):
        with self._lock:
            self.alive -= len(prepared)
        self.batches.append(len(prepared))
        return [
            ScoreResult(p, error="RuntimeError: CUDA out of memory")
            if p in self.bad_model
            else ScoreResult(p, score=int(p[3:]) / 1000, level="bad", dimensions={"looks": 0.5} if full else {})
            for p in prepared
        ]


def items(n: int, **columns) -> list[Item]:
    return [Item(f"img{i}", f"img{i}", columns) for i in range(n)]


def test_rows_keep_input_order_with_failures_in_place_and_duplicates_once():
    scorer = ScriptedScorer(bad_decode={"img2"}, bad_model={"img5"})
    sink = MemorySink()
    given = items(10, prompt="p") + items(3)  # the last three repeat earlier keys
    summary = score_inputs(scorer, given, sink, batch_size=4, decode_workers=3, progress=False)
    assert [r["path"] for r in sink.rows] == [f"img{i}" for i in range(10)]
    assert sink.rows[2]["error"] == "ImageError: cannot decode image: img2 is corrupt"
    assert sink.rows[5]["error"] == "RuntimeError: CUDA out of memory"
    assert sink.rows[7] == {
        "path": "img7",
        "score": 0.007,
        "level": "bad",
        "error": None,
        "dim_looks": 0.5,
        "prompt": "p",
    }
    assert (summary.rows, summary.failed, summary.scored, summary.duplicates) == (10, 2, 10, 3)
    assert sink.provenance["mode"] == "full" and sink.provenance["model"] == "scripted"


def test_decoded_images_waiting_for_the_model_stay_bounded():
    scorer = ScriptedScorer()
    score_inputs(
        scorer, items(200), MemorySink(), batch_size=4, decode_workers=4, prefetch=8, window=12, progress=False
    )
    assert scorer.peak_alive <= 8 + 12  # decoded ahead, plus the window gathered for the model
    assert sum(scorer.batches) == 200 and max(scorer.batches) == 12  # the scripted scorer takes a window whole


def test_fast_mode():
    scorer = ScriptedScorer()
    sink = MemorySink()
    score_inputs(scorer, items(2), sink, full=False, progress=False)
    assert "dim_looks" not in sink.rows[0] and sink.provenance["mode"] == "fast"


def test_systemic_model_failure_stops_the_run_and_keeps_failed_images_for_resume(tmp_path):
    out = tmp_path / "out.parquet"
    failing = ScriptedScorer(bad_model={f"img{i}" for i in range(6, 30)})
    with ResumableWriter(out) as writer, pytest.raises(ModelFailure, match="failed on 8 images in a row"):
        score_inputs(failing, items(30), writer, batch_size=2, progress=False, max_consecutive_model_failures=8)
    healthy = ScriptedScorer()
    with ResumableWriter(out) as writer:
        summary = score_inputs(healthy, items(30), writer, batch_size=2, progress=False)
    assert (summary.resumed, summary.scored, summary.failed) == (6, 24, 0)  # the failed streak was not kept
    assert read_scores(out)["path"].to_pylist() == [f"img{i}" for i in range(30)]


def test_item_errors_from_the_reader_become_rows():
    sink = MemorySink()
    given = [Item("shard.tar", None, error="InputError: corrupt tar shard after 0 image(s): boom")]
    summary = score_inputs(ScriptedScorer(), given, sink, progress=False)
    assert sink.rows == [
        {
            "path": "shard.tar",
            "score": None,
            "level": None,
            "error": "InputError: corrupt tar shard after 0 image(s): boom",
        }
    ]
    assert summary.failed == 1


def test_resume_accepts_another_device_or_model_path_but_not_other_weights(tmp_path):
    out = tmp_path / "out.csv"
    first = ScriptedScorer(bad_model={f"img{i}" for i in range(3, 10)})
    with ResumableWriter(out) as writer, pytest.raises(ModelFailure):
        score_inputs(first, items(10), writer, batch_size=1, progress=False, max_consecutive_model_failures=2)
    moved = ScriptedScorer()
    moved.provenance = {**ScriptedScorer.provenance, "device": "cuda:0", "source": "/elsewhere/same-model"}
    other = ScriptedScorer()
    other.provenance = {**ScriptedScorer.provenance, "weights_sha256": "1" * 64}
    with ResumableWriter(out) as writer, pytest.raises(OutputConflict, match=r"differ: scorer.weights_sha256"):
        score_inputs(other, items(10), writer, progress=False)
    with ResumableWriter(out) as writer:
        summary = score_inputs(moved, items(10), writer, progress=False)
    assert (summary.resumed, summary.scored, summary.rows) == (3, 7, 10)
