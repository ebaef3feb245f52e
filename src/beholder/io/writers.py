"""A score-table writer that survives being killed at any moment, and resumes with every input exactly once.

Layout while a run is in progress, for an output OUT:

    OUT.partial/settings.json        the model and settings the rows were made with (checked on resume)
    OUT.partial/lock                 flock()ed by the running process: a second run on OUT is refused
    OUT.partial/chunk-000001.parquet rows, in chunks of up to `chunk_rows` or `chunk_seconds` worth

Why it is exactly-once: a chunk is written to a temp name, fsync()ed, then renamed to its final name
(beholder.files), so a chunk file either exists whole or not at all (a kill leaves at most a temp file, which is
deleted on resume). Resume reads the keys of the existing chunks and the caller scores only the other inputs; the
caller never hands the same key to the writer twice within a run. The final OUT is assembled from the chunks
into a temp file, fsync()ed and renamed into place, and only then is OUT.partial retired (renamed away, then
deleted). If the process dies after the rename but before retiring, the next run finds OUT.partial, scores
nothing new and assembles the identical OUT again. OUT with no OUT.partial beside it is complete.
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
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from beholder.files import atomic_write
from beholder.io.tables import (
    TableWriter,
    provenance_path,
    read_scores,
    rows_to_table,
    table_format,
    unify,
    write_json_atomic,
)

log = logging.getLogger(__name__)

_CHUNK = re.compile(r"chunk-(\d+)\.parquet")


class OutputConflict(RuntimeError):
    """OUT cannot be written: another run holds it, or its partial rows were made with other settings."""


@dataclass(frozen=True)
class TableTotals:
    rows: int
    failed: int


class ResumableWriter:
    """Collects score rows for OUT (.jsonl/.csv/.parquet) crash-safely; see the module docstring.

    Use: `if writer.complete: ...` (nothing to do), else `done = writer.start(settings)`, `write(rows)` for
    each new row, and `finish(keys, provenance)` once every input has a row. `close()` (or the context
    manager) saves buffered rows and releases the lock when a run stops early.
    """

    def __init__(
        self,
        output: str | os.PathLike,
        *,
        overwrite: bool = False,
        chunk_rows: int = 1000,
        chunk_seconds: float = 30.0,
    ):
        self.output = Path(output)
        self.format = table_format(self.output)
        self.partial = Path(f"{self.output}.partial")
        self.overwrite = overwrite
        self.chunk_rows = chunk_rows
        self.chunk_seconds = chunk_seconds
        self._buffer: list[dict[str, Any]] = []
        self._last_flush = time.monotonic()
        self._next_chunk = 1
        self._lock: int | None = None

    @property
    def complete(self) -> bool:
        """OUT exists and no run on it was interrupted: a rerun has nothing to do."""
        return not self.overwrite and self.output.exists() and not self.partial.exists()

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
        self.partial.mkdir(exist_ok=True)
        self._acquire()
        try:
            self._check_settings(settings)
        except OutputConflict:
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
        return {key for chunk in chunks for key in pq.read_table(chunk, columns=["path"])["path"].to_pylist()}

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

    def finish(self, keys: set[str] | None, provenance: dict[str, Any]) -> TableTotals:
        """Assemble OUT from the chunks, atomically, keeping only rows whose key is in `keys` (None: all).

        Rows left by an interrupted run for inputs that are no longer given are dropped, so OUT always has
        exactly one row per input of the run that finished it.
        """
        self.flush()
        chunks = self._chunks()
        schema = unify([pq.read_schema(c) for c in chunks]) if chunks else pa.schema([("path", pa.string())])
        wanted = pa.array(sorted(keys), pa.string()) if keys is not None else None
        rows = failed = dropped = 0
        with atomic_write(self.output) as tmp:
            with TableWriter(tmp, schema, fmt=self.format, provenance=provenance) as out:
                for chunk in chunks:
                    table = pq.read_table(chunk)
                    if wanted is not None:
                        kept = table.filter(pc.is_in(table["path"], value_set=wanted))
                        dropped += len(table) - len(kept)
                        table = kept
                    out.write(table)
                    rows += len(table)
                    failed += len(table) - table["error"].null_count
            write_json_atomic(provenance_path(self.output), {**provenance, "rows": rows, "failed": failed})
        if dropped:
            log.warning("%s: dropped %d row(s) of an earlier run for inputs not given this time", self.output, dropped)
        totals = TableTotals(rows, failed)
        self._retire()
        return totals

    def close(self) -> None:
        """Save buffered rows and release OUT (after finish() there is nothing left to save)."""
        if self._lock is not None:
            if self.partial.exists():
                self.flush()
            self._release()

    def __enter__(self) -> ResumableWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _chunks(self) -> list[Path]:
        return sorted(p for p in self.partial.iterdir() if _CHUNK.fullmatch(p.name))

    def _acquire(self) -> None:
        if self._lock is not None:
            return
        fd = os.open(self.partial / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputConflict(f"{self.output}: another beholder run is writing it") from None
        self._lock = fd

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
        stored, current = _flatten(json.loads(path.read_text())), _flatten(settings)
        changed = sorted(k for k in stored.keys() | current.keys() if stored.get(k) != current.get(k))
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


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
