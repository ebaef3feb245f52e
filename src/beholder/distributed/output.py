"""The output folder of a Ray run: Parquet shards that appear whole or not at all, and resume at shard granularity.

    OUT/part-000000.parquet      one per finished shard, in input order; written to a hidden temp name in OUT,
                                 fsync()ed, then renamed (beholder.files), so no reader or rerun sees half a shard
    OUT/_beholder/lock           flock()ed by the driver that is running: a second run on OUT is refused
    OUT/_beholder/plan.json      the settings and the shard plan, written once (atomically) before any scoring
    OUT/_beholder/plan/          what each shard holds (see beholder.distributed.plan)
    OUT.provenance.json          written when every shard is done, with the row and failure counts; then
                                 OUT/_beholder is removed. OUT with its provenance and no _beholder is complete.

A rerun after a kill (at any moment) finds the plan, skips the shards whose part exists and scores the rest.
Readers of OUT as a dataset (pyarrow, pandas, Ray, `beholder select`) skip names starting with "_" or ".".
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from filelock import FileLock, Timeout

from beholder.files import atomic_write, remove
from beholder.io.tables import TableWriter, changed_settings, provenance_path, read_provenance, write_json_atomic
from beholder.io.writers import OutputConflict, TableTotals

PART = re.compile(r"part-(\d{6})\.parquet")
STATE = "_beholder"


class ShardedOutput:
    """See the module docstring. `start` claims OUT and returns the stored plan (or None), `save_plan` stores a new
    one, `write_part` adds a finished shard, `finish` writes the provenance and retires the run's state."""

    def __init__(self, folder: str | os.PathLike, *, overwrite: bool = False):
        self.folder = Path(folder)
        self.state = self.folder / STATE
        self.plan_folder = self.state / "plan"
        self.overwrite = overwrite
        self._lock = FileLock(self.state / "lock")  # flock(): released by the OS when the holder dies

    @property
    def complete(self) -> bool:
        return not self.overwrite and provenance_path(self.folder).exists() and not self.state.exists()

    def totals(self) -> TableTotals:
        provenance = read_provenance(self.folder) or {}
        return TableTotals(provenance.get("rows", 0), provenance.get("failed", 0))

    def start(self, settings: dict[str, Any]) -> dict[str, Any] | None:
        """Take OUT for this process; the plan an interrupted run stored, or None when there is none yet.

        settings: what must match for a rerun to continue the stored plan (model, scoring mode, inputs, shard
        size); a difference is refused rather than mixing two runs in one folder."""
        if self.folder.exists() and not self.folder.is_dir():
            raise OutputConflict(f"{self.folder} is a file; --engine ray writes a folder of Parquet shards")
        self._check_foreign_files()
        self.state.mkdir(parents=True, exist_ok=True)
        self._acquire()
        if self.overwrite:
            self._clear()
        for torn in self.folder.glob(".part-*.tmp-*"):  # a part a killed run was writing: never renamed into place
            remove(torn)
        plan_file = self.state / "plan.json"
        if not self.overwrite and provenance_path(self.folder).exists() and not plan_file.exists():
            self._release()  # another run completed OUT while this one was starting
            remove(self.state)
            raise OutputConflict(f"{self.folder} is complete; --overwrite scores everything again")
        if not plan_file.exists():
            remove(self.plan_folder)  # a plan that was being written when killed
            for leftover in self._parts():
                remove(leftover)
            return None
        stored = json.loads(plan_file.read_text())
        differ = changed_settings(stored["settings"], json.loads(json.dumps(settings, default=str)))
        if differ:
            self._release()
            raise OutputConflict(
                f"{self.folder}: the interrupted run there used other settings (differ: {', '.join(differ)}); "
                "resume with the same inputs, model and options, or pass --overwrite to start again"
            )
        return stored["plan"]

    def save_plan(self, settings: dict[str, Any], plan: dict[str, Any]) -> None:
        write_json_atomic(self.state / "plan.json", {"settings": settings, "plan": plan})

    def done(self) -> set[int]:
        """Indices of the shards whose part exists."""
        return {int(PART.fullmatch(p.name).group(1)) for p in self._parts()}

    def part_schema(self) -> pa.Schema | None:
        """The schema of an existing part (all parts of a run share it), or None before the first."""
        parts = self._parts()
        return pq.read_schema(parts[0]).remove_metadata() if parts else None

    def write_part(self, index: int, table: pa.Table, provenance: dict[str, Any]) -> None:
        with atomic_write(self.folder / f"part-{index:06d}.parquet") as tmp:
            with TableWriter(tmp, table.schema, fmt="parquet", provenance=provenance) as writer:
                writer.write(table)

    def finish(self, provenance: dict[str, Any]) -> TableTotals:
        """Count the rows of every part, write OUT.provenance.json, and remove the run's state."""
        rows = failed = 0
        for part in self._parts():
            errors = pq.read_table(part, columns=["error"])["error"]
            rows += len(errors)
            failed += len(errors) - errors.null_count
        write_json_atomic(provenance_path(self.folder), {**provenance, "rows": rows, "failed": failed})
        retired = self.folder / f".{STATE}.retired-{os.getpid()}-{time.time_ns()}"
        os.replace(self.state, retired)  # atomic: a kill while deleting never leaves half a state folder
        self._release()
        remove(retired)
        return TableTotals(rows, failed)

    def close(self) -> None:
        self._release()

    def _parts(self) -> list[Path]:
        return sorted(p for p in self.folder.iterdir() if PART.fullmatch(p.name)) if self.folder.is_dir() else []

    def _check_foreign_files(self) -> None:
        """Refuse a folder holding files beholder did not write (a wrong -o must not mix or delete anything)."""
        if not self.folder.is_dir():
            return
        foreign = sorted(name for name in os.listdir(self.folder)
                         if not (PART.fullmatch(name) or name == STATE or name.startswith(".")))
        if foreign:
            raise OutputConflict(
                f"{self.folder} holds files that are not beholder shards ({', '.join(foreign[:3])}, ...): "
                "name a new or empty folder"
            )

    def _clear(self) -> None:
        """--overwrite: remove every part, leftover and stored plan of an earlier run (the lock stays)."""
        for path in self.folder.iterdir():
            if PART.fullmatch(path.name) or path.name.startswith((".part-", f".{STATE}.")):
                remove(path)
        for path in self.state.iterdir():
            if path.name != "lock":
                remove(path)
        provenance_path(self.folder).unlink(missing_ok=True)

    def _acquire(self) -> None:
        try:
            self._lock.acquire(blocking=False)
        except Timeout:
            raise OutputConflict(f"{self.folder}: another beholder run is writing it") from None

    def _release(self) -> None:
        if self._lock.is_locked:
            self._lock.release(force=True)

    def __enter__(self) -> ShardedOutput:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

