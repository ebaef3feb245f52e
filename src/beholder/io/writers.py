"""A score-table writer that survives being killed at any moment, and resumes with every input exactly once.

Layout while a run is in progress, for an output OUT:

    OUT.partial/settings.json        the model and settings the rows were made with (checked on resume)
    OUT.partial/lock                 flock()ed by the running process: a second run on OUT is refused
    OUT.partial/chunk-000001.parquet rows, in chunks of up to `chunk_rows` or `chunk_seconds` worth

Why it is exactly-once: a chunk is written to a temp name, fsync()ed, then renamed to its final name
(beholder.files), so a chunk file either exists whole or not at all (a kill leaves at most a temp file, which is
deleted on resume). Resume reads the keys of the existing chunks and the caller scores only the other inputs. The final
OUT is assembled from the chunks into a temp file, one row per input in input order (whatever order runs
wrote them in, and keeping the first row should a key ever have been written twice), fsync()ed and renamed into
place, and only then is OUT.partial retired (renamed away, then deleted). If the process dies after the
rename but before retiring, the next run finds OUT.partial, scores nothing new and assembles the identical OUT
again. OUT with no OUT.partial beside it is complete; a run that takes the lock and finds OUT completed by
another run meanwhile stops (AlreadyComplete) instead of scoring everything again.
"""

from __future__ import annotations

import fcntl
import glob
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from beholder.errors import BeholderError
from beholder.files import atomic_write
from beholder.io.keys import key_from_text, key_to_text
from beholder.io.tables import (
    TableWriter,
    changed_settings,
    conform,
    provenance_path,
    read_scores,
    rows_to_table,
    table_format,
    unify,
    write_json_atomic,
)

log = logging.getLogger(__name__)

_CHUNK = re.compile(r"chunk-(\d+)\.parquet")


class OutputConflict(BeholderError, RuntimeError):
    """OUT cannot be written: another run holds it, or its partial rows were made with other settings."""


class AlreadyComplete(BeholderError):
    """Another run completed OUT while this one was starting: there is nothing left to do."""


@dataclass(frozen=True)
class TableTotals:
    rows: int
    failed: int


class ResumableWriter:
    """Collects score rows for OUT (.jsonl/.csv/.parquet) crash-safely; see the module docstring.

    Use: `if writer.complete: ...` (nothing to do), else `done = writer.start(settings)`, `write(rows)` for
    each new row, and `finish(keys, provenance)` once every input has a row. `close()` (or the context
    manager) saves buffered rows and releases the lock when a run stops early.

    retry_failed: a finished OUT with error rows is not complete: the next run keeps its other rows and does the
        failed inputs again (the caller makes sure OUT was made with the same settings).
    """

    def __init__(
        self,
        output: str | os.PathLike,
        *,
        overwrite: bool = False,
        retry_failed: bool = False,
        chunk_rows: int = 1000,
        chunk_seconds: float = 30.0,
    ):
        self.output = Path(output)
        self.format = table_format(self.output)
        self.partial = Path(f"{self.output}.partial")
        self.overwrite = overwrite
        self.retry_failed = retry_failed
        self.chunk_rows = chunk_rows
        self.chunk_seconds = chunk_seconds
        self._buffer: list[dict[str, Any]] = []
        self._last_flush = time.monotonic()
        self._next_chunk = 1
        self._lock: int | None = None

    @property
    def complete(self) -> bool:
        """OUT exists and no run on it was interrupted: a rerun has nothing to do."""
        finished = not self.overwrite and self.output.exists() and not self.partial.exists()
        return finished and not (self.retry_failed and self.totals().failed)

    def totals(self) -> TableTotals:
        """Rows and failed rows in the finished OUT."""
        errors = read_scores(self.output, columns=["error"])["error"]
        return TableTotals(len(errors), len(errors) - errors.null_count)

    def start(self, settings: dict[str, Any]) -> set[str]:
        """Take OUT for this process and return the keys already written by an interrupted run.

        settings: what makes rows comparable (model, weights, preprocessing, scoring mode). Resuming rows
        made with different settings would silently mix two models in one table, so it is refused.
        """
        self.output.parent.mkdir(parents=True, exist_ok=True)
        self._remove_retired()
        if self.overwrite and self.partial.exists():
            self._acquire()
            self._retire()
        self._acquire()
        try:
            if not self.overwrite and self.output.exists() and not (self.partial / "settings.json").exists():
                self._reopen_output()
            self._check_settings(settings)
        except BeholderError:
            self._release()
            raise
        # What a killed run left half-written: a chunk (its rows were never counted) or an assembled OUT.
        torn_chunks = self.partial.glob(".chunk-*.tmp-*")
        torn_outputs = self.output.parent.glob(glob.escape(f".{self.output.name}.tmp-") + "*")
        for leftover in [*torn_chunks, *torn_outputs]:
            leftover.unlink()
        chunks = self._chunks()
        if chunks:
            self._next_chunk = int(_CHUNK.fullmatch(chunks[-1].name).group(1)) + 1
        return {
            key_from_text(key) for chunk in chunks for key in pq.read_table(chunk, columns=["path"])["path"].to_pylist()
        }

    def _reopen_output(self) -> None:
        """OUT is finished and this run holds a fresh OUT.partial: carry on from OUT's rows without errors when
        retrying failed rows, else stop: another run completed OUT after this one checked `complete`."""
        if not (self.retry_failed and self.totals().failed):
            self._retire()
            raise AlreadyComplete(f"{self.output} was completed by another run; --overwrite does it again")
        table = read_scores(self.output)
        with atomic_write(self.partial / "chunk-000000.parquet") as tmp:
            pq.write_table(table.filter(pc.is_null(table["error"])), tmp)

    def write(self, rows: Iterable[dict[str, Any]]) -> None:
        self._buffer.extend(rows)
        due = time.monotonic() - self._last_flush >= self.chunk_seconds
        if len(self._buffer) >= self.chunk_rows or (due and self._buffer):
            self.flush()

    def flush(self) -> None:
        """Make every buffered row durable as one new chunk."""
        if not self._buffer:
            return
        with atomic_write(self.partial / f"chunk-{self._next_chunk:06d}.parquet") as tmp:
            pq.write_table(rows_to_table(self._buffer), tmp)
        self._next_chunk += 1
        self._buffer.clear()
        self._last_flush = time.monotonic()

    def finish(self, keys: Sequence[str] | None, provenance: dict[str, Any]) -> TableTotals:
        """Assemble OUT from the chunks, atomically: one row per key of `keys`, in that order (None: every key
        written, in the order written).

        Rows left by an interrupted run for inputs that are no longer given are dropped, so OUT always has
        exactly one row per input of the run that finished it.
        """
        self.flush()
        chunks = self._chunks()
        schema = unify([pq.read_schema(c) for c in chunks]) if chunks else pa.schema([("path", pa.string())])
        rows = failed = 0
        with atomic_write(self.output) as tmp:
            with TableWriter(tmp, schema, fmt=self.format, provenance=provenance) as out:
                for table in _in_input_order(chunks, keys, self.output):
                    out.write(table)
                    rows += len(table)
                    failed += len(table) - table["error"].null_count
            write_json_atomic(provenance_path(self.output), {**provenance, "rows": rows, "failed": failed})
        totals = TableTotals(rows, failed)
        self._retire()
        return totals

    def close(self) -> None:
        """Save buffered rows and release OUT (after finish() there is nothing left to save)."""
        if self._lock is not None:
            try:
                if self.partial.exists():
                    self.flush()
            finally:
                self._release()

    def __enter__(self) -> ResumableWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _chunks(self) -> list[Path]:
        return sorted(p for p in self.partial.iterdir() if _CHUNK.fullmatch(p.name))

    def _acquire(self) -> None:
        """Create OUT.partial if needed and lock it. A run that finishes retires (renames away) its partial: a
        lock taken on a retired partial is dropped and taken again on the current one."""
        if self._lock is not None:
            return
        for _ in range(3):
            self.partial.mkdir(exist_ok=True)
            lock = self.partial / "lock"
            try:
                fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
            except FileNotFoundError:  # retired between mkdir and open
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise OutputConflict(f"{self.output}: another beholder run is writing it") from None
            try:
                current = os.stat(lock).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                current = False
            if current:
                self._lock = fd
                return
            os.close(fd)
        raise OutputConflict(f"{self.output}: other beholder runs keep finishing it; try again")

    def _release(self) -> None:
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def _check_settings(self, settings: dict[str, Any]) -> None:
        path = self.partial / "settings.json"
        settings = json.loads(json.dumps(settings, default=str))  # compare as it reads back (tuples -> lists)
        if not path.exists():
            write_json_atomic(path, settings)
            return
        changed = changed_settings(json.loads(path.read_text()), settings)
        if changed:
            raise OutputConflict(
                f"{self.output}: the interrupted run in {self.partial} used other settings "
                f"(differ: {', '.join(changed)}); resume with the same model and options, "
                "or pass --overwrite to start again"
            )

    def _retire(self) -> None:
        """Remove OUT.partial: rename first (atomic), so a kill mid-delete never leaves a half partial."""
        retired = self.partial.with_name(f".{self.partial.name}.retired-{os.getpid()}-{time.time_ns()}")
        os.replace(self.partial, retired)
        self._release()
        shutil.rmtree(retired)

    def _remove_retired(self) -> None:
        for retired in self.partial.parent.glob(glob.escape(f".{self.partial.name}.retired-") + "*"):
            shutil.rmtree(retired, ignore_errors=True)


def _in_input_order(chunks: list[Path], keys: Sequence[str] | None, output: Path) -> Iterable[pa.Table]:
    """The rows of `chunks` as tables, ordered by the position of their key in `keys`, each key once.

    Each run writes its rows in input order, so chunks are usually ordered runs that follow one another (an
    interrupted run's, then its resume's): they stream one at a time. Only when they interleave (inputs added
    before the resume) are all rows read and sorted together."""
    position = {key_to_text(key): i for i, key in enumerate(keys)} if keys is not None else None
    seen: set[str] = set()
    dropped = 0
    parts: list[tuple[Path, list[int], list[int]]] = []  # chunk, rows kept, their positions
    for chunk in chunks:
        rows, places = [], []
        for row, key in enumerate(pq.read_table(chunk, columns=["path"])["path"].to_pylist()):
            place = len(seen) if position is None else position.get(key)
            if place is None or key in seen:
                dropped += place is None
                continue
            seen.add(key)
            rows.append(row)
            places.append(place)
        order = sorted(range(len(rows)), key=places.__getitem__)
        parts.append((chunk, [rows[i] for i in order], [places[i] for i in order]))
    if dropped:
        log.warning("%s: dropped %d row(s) of an earlier run for inputs not given this time", output, dropped)
    parts = sorted((p for p in parts if p[1]), key=lambda p: p[2][0])
    if all(a[2][-1] < b[2][0] for a, b in zip(parts, parts[1:])):
        for chunk, rows, _ in parts:
            yield pq.read_table(chunk).take(pa.array(rows, pa.int64()))
        return
    tables = [pq.read_table(chunk).take(pa.array(rows, pa.int64())) for chunk, rows, _ in parts]
    schema = unify([t.schema for t in tables])
    merged = pa.concat_tables([conform(t, schema) for t in tables])
    places = pa.array([place for _, _, ps in parts for place in ps], pa.int64())
    yield merged.take(pc.sort_indices(places))

