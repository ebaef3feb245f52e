"""The shard plan of a Ray run: every input assigned to one output shard, decided once and kept for reruns.

A shard is either up to `shard_size` consecutive image files (from folders, globs and manifests, listed in a plan
file `shard-NNNNNN.parquet`), or one WebDataset tar, whose members a worker reads (the driver never reads image
bytes). Shards follow the order of the inputs. The plan is written before any scoring and a rerun reads it
instead of expanding the inputs again, so an input always lands in the same shard, even if a folder has gained
files since.

A plan can cover a subset of the inputs, given by their keys (a cascade's second stage scores only the survivors
of its first): files outside it are not planned, a tar holding none of its members is not planned, and a tar
holding some becomes a subset shard whose plan file lists those member keys; its worker reads the tar and keeps
only them. Keys stay what the full plan would give, so rows of a subset run match rows of a full run.

Rows of both kinds carry their shard, their position in it and the shard's row count, so whoever collects the
scored rows knows when a shard is complete and can drop a row that comes back twice.
"""

from __future__ import annotations

import base64
import hashlib
import os
from bisect import bisect_left
from collections.abc import Collection, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from beholder.io.keys import key_from_text, key_to_text
from beholder.io.readers import InputError, InputPlan
from beholder.io.tables import rows_to_table, unify

SHARD, ROW, ROWS = "__beholder_shard", "__beholder_row", "__beholder_rows"
SOURCE = "__beholder_source"  # absolute path of the file to open (keys stay as the user wrote them)
BYTES = "__beholder_bytes"  # a tar member's encoded image
TAR = "__beholder_tar"  # the tar of a tar shard, as given
PLAN_FILE = "__beholder_plan_file"  # the plan file of a files shard
INTERNAL_COLUMNS = (SHARD, ROW, ROWS)
_PLANNED = ("path", "error", SOURCE, *INTERNAL_COLUMNS)  # plan-file columns that are not carried from manifests


@dataclass(frozen=True)
class Shard:
    index: int
    rows: int | None = None  # input count; None for a whole tar shard until a worker has read it
    tar: str | None = None  # a tar shard's path as given (its members' keys start with it)
    tar_source: str | None = None  # ... and absolute, for workers in other working folders
    subset: bool = False  # a tar shard of only the member keys its plan file lists

    @property
    def plan_file(self) -> str:
        return f"shard-{self.index:06d}.parquet"


@dataclass(frozen=True)
class ShardPlan:
    shards: list[Shard]
    carried: pa.Schema  # the columns carried from manifests, one type each over all shards
    duplicates: int  # inputs given more than once (a repeated tar counts once), planned once

    def to_json(self) -> dict[str, Any]:
        schema = base64.b64encode(self.carried.serialize().to_pybytes()).decode()
        return {"shards": [asdict(s) for s in self.shards], "carried_schema": schema, "duplicates": self.duplicates}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ShardPlan:
        carried = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(data["carried_schema"])))
        return cls([Shard(**s) for s in data["shards"]], carried, data["duplicates"])


def make_plan(inputs: InputPlan, folder: Path, shard_size: int, keys: Collection[str] | None = None) -> ShardPlan:
    """Expand `inputs` into shards, writing the plan files into `folder`.

    keys: plan only the inputs with these keys (as `Item.key`s), in input order; keys of no input are left out,
        except keys under a planned tar, which only a worker can check: a member the tar lacks is an error row."""
    folder.mkdir(parents=True, exist_ok=True)
    wanted = None if keys is None else set(keys)
    ordered = None if keys is None else sorted(wanted)
    shards: list[Shard] = []
    schemas: list[pa.Schema] = []
    seen: set[str] = set()
    duplicates = 0
    rows: list[dict[str, Any]] = []

    def close_shard() -> None:
        if not rows:
            return
        shard = Shard(len(shards), rows=len(rows))
        positions = {SHARD: [shard.index] * len(rows), ROW: list(range(len(rows))), ROWS: [len(rows)] * len(rows)}
        table = rows_to_table(rows)
        for name, values in positions.items():
            table = table.append_column(name, pa.array(values, pa.int64()))
        pq.write_table(table, folder / shard.plan_file)
        schemas.append(table.schema)
        shards.append(shard)
        rows.clear()

    for part in inputs.parts():
        if part.shard is not None:
            close_shard()
            members = None if ordered is None else _under(ordered, part.shard)
            if members == []:
                continue
            if part.shard in seen:
                duplicates += 1
                continue
            seen.add(part.shard)
            shard = Shard(len(shards), tar=part.shard, tar_source=os.path.abspath(part.shard),
                          rows=None if members is None else len(members), subset=members is not None)
            if members is not None:
                pq.write_table(pa.table({"path": [key_to_text(key) for key in members]}), folder / shard.plan_file)
            shards.append(shard)
            continue
        for item in part.items():
            if wanted is not None and item.key not in wanted:
                continue
            if item.key in seen:
                duplicates += 1
                continue
            seen.add(item.key)
            source = os.path.abspath(item.source) if isinstance(item.source, str) else None
            rows.append({"path": item.key, SOURCE: source, "error": item.error, **item.columns})
            if len(rows) == shard_size:
                close_shard()
    close_shard()
    return ShardPlan(shards, _carried_schema(schemas), duplicates)


def _under(ordered: list[str], tar: str) -> list[str]:
    """The keys of sorted `ordered` that name members of `tar` (`TAR/...`): those from "TAR/" up to "TAR0"."""
    return ordered[bisect_left(ordered, tar + "/") : bisect_left(ordered, tar + "0")]


def keys_digest(keys: Iterable[str] | None) -> str | None:
    """A fingerprint of a key subset, for a rerun to check it continues the same one (None: every input)."""
    if keys is None:
        return None
    return hashlib.sha256("\0".join(sorted(key_to_text(key) for key in keys)).encode()).hexdigest()


def _carried_schema(schemas: list[pa.Schema]) -> pa.Schema:
    try:
        merged = unify(schemas) if schemas else pa.schema([])
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise InputError(f"manifest columns with different types in different manifests: {exc}") from exc
    return pa.schema([f for f in merged if f.name not in _PLANNED])


def shard_units(shards: list[Shard], folder: Path) -> list[pa.Table]:
    """One single-row table per shard (a block each, so shards expand in parallel): what `expand_shards` takes."""
    return [
        pa.table({
            SHARD: pa.array([s.index], pa.int64()),
            PLAN_FILE: pa.array([str(folder / s.plan_file) if s.subset or not s.tar else None], pa.string()),
            TAR: pa.array([s.tar], pa.string()),
            SOURCE: pa.array([s.tar_source], pa.string()),
        })
        for s in shards
    ]


def expand_shards(batch: pa.Table, *, chunk: int = 64) -> Iterator[pa.Table]:
    """map_batches function: each shard row -> its input rows, `chunk` rows per table yielded.

    A files shard is its plan file. A tar shard becomes a row per image member (`path` = TAR/member, `BYTES`),
    exactly the items `beholder score` makes of the tar; a tar that cannot be read is an error row. The tar is
    read twice, first for its member count (the shard's size), then for the bytes, so memory holds `chunk`
    images at a time, not the whole tar. A subset tar shard is read once (its plan file gives its size) and keeps
    a row per listed key: the member's, or an error row when the tar lacks it or cannot be read."""
    columns = (batch[name].to_pylist() for name in (SHARD, PLAN_FILE, TAR, SOURCE))
    for shard, plan_file, tar, source in zip(*columns):
        if tar is None:
            table = pq.read_table(plan_file)
            yield from (table.slice(start, chunk) for start in range(0, len(table), chunk))
        elif plan_file is None:
            count = sum(1 for _ in _tar_items(tar, source))
            yield from _tar_tables(shard, count, _tar_items(tar, source), chunk)
        else:
            listed = [key_from_text(text) for text in pq.read_table(plan_file)["path"].to_pylist()]
            yield from _tar_tables(shard, len(listed), _listed_items(tar, source, listed), chunk)


_TarItem = tuple[str, bytes | None, str | None]  # key (as the tar was given), member bytes, error


def _tar_items(given: str, source: str) -> Iterator[_TarItem]:
    """The tar's items as `beholder score` makes them, keyed under the tar as given; one error item keyed by the
    tar itself when it cannot be read (at all, or from some member on)."""
    try:
        members = InputPlan([source])
    except InputError as exc:
        yield given, None, f"InputError: {exc}"
        return
    seen: set[str] = set()
    for item in members.items():
        key = given + item.key[len(source) :]
        if key not in seen:
            seen.add(key)
            yield key, item.source, item.error


def _listed_items(given: str, source: str, listed: list[str]) -> Iterator[_TarItem]:
    """The tar's items whose keys are `listed`, in archive order, then an error item for each listed key it lacks."""
    missing = dict.fromkeys(listed)
    failure = None
    for key, blob, error in _tar_items(given, source):
        if key in missing:
            del missing[key]
            yield key, blob, error
        elif key == given:
            failure = error  # the tar could not be read (from some member on)
    for key in missing:
        yield key, None, failure or f"InputError: {given} has no image member {key[len(given) + 1 :]}"


def _tar_tables(shard: int, count: int, items: Iterable[_TarItem], chunk: int) -> Iterator[pa.Table]:
    rows: list[tuple[int, str, bytes | None, str | None]] = []
    for position, item in enumerate(items):
        rows.append((position, *item))
        if len(rows) == chunk:
            yield _tar_table(shard, count, rows)
            rows = []
    if rows:
        yield _tar_table(shard, count, rows)


def _tar_table(shard: int, count: int, rows: list[tuple[int, str, bytes | None, str | None]]) -> pa.Table:
    positions, keys, blobs, errors = zip(*rows)
    n = len(rows)
    return pa.table({
        "path": pa.array([key_to_text(key) for key in keys], pa.string()),
        BYTES: pa.array(blobs, pa.large_binary()),
        "error": pa.array(errors, pa.string()),
        SHARD: pa.array([shard] * n, pa.int64()),
        ROW: pa.array(positions, pa.int64()),
        ROWS: pa.array([count] * n, pa.int64()),
    })
