"""Batch scoring and annotation: parallel decoding feeding batched inference, with bounded memory, into a sink.

Decoding (file read, JPEG decode, tiling, normalisation) runs in a thread pool while the model runs in the
calling thread; PIL and numpy release the GIL, so the two overlap. A fixed number of decoded images (decoded
ahead plus gathered for the next batches) exists at any time, so memory stays flat whatever the number of
inputs. Every input ends as exactly one row: a score (or an annotation), or an `error` saying why not. What
the model does with a batch is a Task: `score_inputs` and `annotate_inputs` are the same run with two tasks.
"""

from __future__ import annotations

import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from tqdm import tqdm

from beholder.errors import BeholderError, UsageError
from beholder.io.readers import Item
from beholder.io.writers import TableTotals
from beholder.results import Annotation, ScoreResult

if TYPE_CHECKING:
    from beholder.scoring import PreparedImage, Scorer

# Provenance entries that may change between an interrupted run and its resume without changing the scores:
# the device, whether the forward is fused (both change scores by float rounding only), and how the user named the
# model (a relative or absolute path to the same weights).
_VOLATILE = ("device", "fused", "source")


class ModelFailure(BeholderError, RuntimeError):
    """The model failed on many images in a row: a systemic problem (out of memory, broken weights)."""


class Sink(Protocol):
    """Where rows go. `start` returns keys already done (resume); `finish` gets every input key, in input order."""

    def start(self, settings: dict[str, Any]) -> set[str]: ...

    def write(self, rows: Iterable[dict[str, Any]]) -> None: ...

    def finish(self, keys: Sequence[str] | None, provenance: dict[str, Any]) -> TableTotals: ...


class MemorySink:
    """Keeps rows in a list: for printing a few results instead of writing a table."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.provenance: dict[str, Any] = {}

    def start(self, settings: dict[str, Any]) -> set[str]:
        return set()

    def write(self, rows: Iterable[dict[str, Any]]) -> None:
        self.rows.extend(rows)

    def finish(self, keys: Sequence[str] | None, provenance: dict[str, Any]) -> TableTotals:
        self.provenance = provenance
        return TableTotals(len(self.rows), sum(row["error"] is not None for row in self.rows))


@dataclass(frozen=True)
class RunSummary:
    rows: int  # rows in the finished output: one per distinct input
    failed: int  # rows with an error (this run and any resumed one)
    scored: int  # inputs processed by this run, scored or failed
    resumed: int  # inputs skipped because an interrupted earlier run had written them
    duplicates: int  # inputs given more than once, scored once
    elapsed: float  # seconds

    @property
    def images_per_second(self) -> float:
        return self.scored / self.elapsed if self.elapsed > 0 else 0.0


def default_decode_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


class Result(Protocol):
    """One input's outcome: a ScoreResult or an Annotation."""

    error: str | None

    @property
    def ok(self) -> bool: ...

    def to_row(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Task:
    """What the model does with decoded images, and what a row of it is."""

    name: str  # "scoring" | "annotating": what the progress bar says
    settings: dict[str, Any]  # what rows of two runs must share to go in one table (checked on resume)
    run: Callable[[Sequence[PreparedImage]], list[Result]]  # batched inference, results in input order
    result: type[ScoreResult] | type[Annotation]  # result(key, error=...) is the row of an input that failed


def run_settings(scorer: Scorer, full: bool) -> dict[str, Any]:
    """What must match for score rows of two runs to belong in one table: model, weights, preprocessing, mode."""
    return {"scorer": _scorer_settings(scorer), "mode": "full" if full else "fast"}


def _scorer_settings(scorer: Scorer) -> dict[str, Any]:
    return {k: v for k, v in scorer.provenance.items() if k not in _VOLATILE}


def scoring(scorer: Scorer, *, full: bool | None = None, batch_size: int = 8) -> Task:
    """Score: MetaVoter + 12 dimensions (full; the default when the model has those heads) or one pass."""
    full = scorer.full_scoring(full)

    def run(prepared: Sequence[PreparedImage]) -> list[Result]:
        return scorer.score_prepared(prepared, full=full, batch_size=batch_size)

    return Task("scoring", run_settings(scorer, full), run, ScoreResult)


def annotating(scorer: Scorer, *, batch_size: int = 8, sample: bool = False, max_new_tokens: int | None = None) -> Task:
    """Annotate: the 12-line text, greedy by default; `sample` uses the official settings (sampling on, up to
    1024 new tokens, the model's own generation config otherwise)."""
    if not scorer.annotates:
        raise UsageError(f"{scorer.source} is an image-embedding model: it has no language model to annotate with")
    generation = {"do_sample": sample, "max_new_tokens": max_new_tokens or (1024 if sample else 160)}

    def run(prepared: Sequence[PreparedImage]) -> list[Result]:
        return scorer.annotate_prepared(prepared, batch_size=batch_size, **generation)

    return Task("annotating", {"scorer": _scorer_settings(scorer), "mode": "annotate", "generation": generation},
                run, Annotation)


def score_inputs(scorer: Scorer, items: Iterable[Item], sink: Sink, *, full: bool | None = None,
                 batch_size: int = 8, **options: Any) -> RunSummary:
    """Score every item into `sink` and finish it (see `run_inputs` for the options)."""
    return run_inputs(scorer, items, sink, scoring(scorer, full=full, batch_size=batch_size), batch_size=batch_size,
                      **options)


def annotate_inputs(scorer: Scorer, items: Iterable[Item], sink: Sink, *, batch_size: int = 8, sample: bool = False,
                    max_new_tokens: int | None = None, **options: Any) -> RunSummary:
    """Annotate every item into `sink` and finish it (see `annotating`, and `run_inputs` for the options)."""
    task = annotating(scorer, batch_size=batch_size, sample=sample, max_new_tokens=max_new_tokens)
    return run_inputs(scorer, items, sink, task, batch_size=batch_size, **options)


def run_inputs(
    scorer: Scorer,
    items: Iterable[Item],
    sink: Sink,
    task: Task,
    *,
    batch_size: int = 8,
    decode_workers: int | None = None,
    prefetch: int | None = None,
    window: int | None = None,
    total: int | None = None,
    progress: bool = True,
    provenance: dict[str, Any] | None = None,
    max_consecutive_model_failures: int = 64,
) -> RunSummary:
    """Decode every item, run `task` on batches of them, write a row each into `sink` and finish it.

    prefetch: most images being decoded or decoded ahead of the window (default: a batch, at least 2 per
        worker).
    window: decoded images gathered before they go to the model (default: 4 batches). The scorer batches
        images of equal shape (tile count) together, so a wider window makes fuller batches when shapes vary.
        At most prefetch + window decoded images are in memory at once.
    provenance: extra entries (e.g. the INPUTs) recorded with the output beside the model's provenance and the
        task's settings.
    max_consecutive_model_failures: the run stops (rows so far saved, so it can resume) when the model fails
        on this many images in a row, instead of writing an error row for every remaining input.
    """
    workers = decode_workers or default_decode_workers()
    prefetch = prefetch or max(batch_size, 2 * workers)
    window = window or 4 * batch_size
    done = sink.start(task.settings)
    started = time.monotonic()
    bar = tqdm(
        total=total,
        initial=len(done) if total is None else min(len(done), total),
        unit="img",
        desc=task.name,
        disable=not progress,
        file=sys.stderr,
        dynamic_ncols=True,
    )
    seen: dict[str, None] = {}  # every distinct key, in input order
    skipped = {"resumed": 0, "duplicates": 0}

    def fresh(items: Iterable[Item]) -> Iterator[Item]:
        for item in items:
            if item.key in seen:
                skipped["duplicates"] += 1
                if bar.total:
                    bar.total -= 1
                continue
            seen[item.key] = None
            if item.key in done:
                skipped["resumed"] += 1
            else:
                yield item

    emitter = _Emitter(sink, bar, max_consecutive_model_failures)
    with bar, closing(decode(scorer, fresh(items), workers, prefetch)) as decoded:
        # Rows keep input order: decode failures wait in the window with the images decoded around them.
        # The window goes to the model when it holds `window` images, or when failures have made it long.
        pending: list[tuple[Item, PreparedImage | Failure]] = []
        ready = 0
        for item, prepared in decoded:
            pending.append((item, prepared))
            ready += not isinstance(prepared, Failure)
            if ready == window or len(pending) >= 2 * window:
                emitter.emit(_run_window(task, pending))
                pending, ready = [], 0
        emitter.emit(_run_window(task, pending))
        emitter.release_held()
    record = {
        **scorer.provenance,
        **{k: v for k, v in task.settings.items() if k != "scorer"},
        **(provenance or {}),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    totals = sink.finish(list(seen), record)
    elapsed = time.monotonic() - started
    return RunSummary(totals.rows, totals.failed, emitter.count, elapsed=elapsed, **skipped)


class Failure(NamedTuple):
    """An input that could not be decoded."""

    error: str  # "ErrorType: message"


def _prepare(scorer: Scorer, item: Item) -> PreparedImage | Failure:
    if item.error is not None:
        return Failure(item.error)
    try:
        return scorer.prepare(item.source, path=item.key)
    except Exception as exc:  # any failure to decode one input becomes its row, never the end of the run
        return Failure(f"{type(exc).__name__}: {exc}")


def _run_window(task: Task, window: list[tuple[Item, PreparedImage | Failure]]) -> list[tuple[Item, Result, bool]]:
    """(item, result, whether the result came from the model), in window order."""
    ready = [p for _, p in window if not isinstance(p, Failure)]
    results = iter(task.run(ready) if ready else ())
    return [
        (item, task.result(item.key, error=p.error), False) if isinstance(p, Failure) else (item, next(results), True)
        for item, p in window
    ]


def decode(
    scorer: Scorer, items: Iterable[Item], workers: int, prefetch: int
) -> Iterator[tuple[Item, PreparedImage | Failure]]:
    """(item, prepared image or failure) in input order, decoded `workers` at a time, `prefetch` ahead.

    The decoding stage of score_inputs on its own, so its throughput can be measured against the model's."""
    pool = ThreadPoolExecutor(workers, thread_name_prefix="beholder-decode")
    pending: deque[tuple[Item, Future]] = deque()
    try:
        for item in items:
            pending.append((item, pool.submit(_prepare, scorer, item)))
            if len(pending) >= prefetch:
                head, future = pending.popleft()
                yield head, future.result()
        while pending:
            head, future = pending.popleft()
            yield head, future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class _Emitter:
    """Turns results into rows for the sink, and tells isolated model failures from systemic ones.

    Once the model fails on an image, that row and every row after it are held back: when the model next
    succeeds they are written (the failures were isolated); if `limit` model failures pile up, the run stops
    without writing them, so a resume retries those images instead of keeping `limit` spurious errors.
    """

    def __init__(self, sink: Sink, bar: tqdm, limit: int):
        self.sink, self.bar, self.limit = sink, bar, limit
        self.count = 0  # rows written
        self.failed = 0  # of which errors
        self._held: list[dict[str, Any]] = []  # all failures, in input order
        self._streak = 0  # model failures among them

    def emit(self, entries: Sequence[tuple[Item, Result, bool]]) -> None:
        rows: list[dict[str, Any]] = []
        failed = 0
        for item, result, from_model in entries:
            row = _row(item, result)
            if result.ok:
                rows += self._held
                failed += len(self._held)
                self._held, self._streak = [], 0
                rows.append(row)
            elif from_model or self._held:
                self._held.append(row)
                self._streak += from_model
                if self._streak >= self.limit:
                    self._write(rows, failed)
                    raise ModelFailure(
                        f"the model failed on {self.limit} images in a row (last: {result.error}); the rows "
                        "before them are saved: fix the cause and run the same command again to resume"
                    )
            else:
                rows.append(row)
                failed += 1
        self._write(rows, failed)

    def release_held(self) -> None:
        """At the end of the run, failures still held were isolated ones after all."""
        self._write(self._held, failed=len(self._held))
        self._held, self._streak = [], 0

    def _write(self, rows: list[dict[str, Any]], failed: int) -> None:
        if not rows:
            return
        self.sink.write(rows)
        self.count += len(rows)
        self.failed += failed
        self.bar.update(len(rows))
        if failed:
            self.bar.set_postfix(failed=self.failed, refresh=False)


def _row(item: Item, result: Result) -> dict[str, Any]:
    return {**result.to_row(), "path": item.key, **item.columns}
