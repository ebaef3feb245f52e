"""Turn command-line INPUTs into a stream of items to score.

An INPUT is an image file, a folder (searched recursively), a glob, a manifest (.csv/.jsonl/.parquet with a
path column; its other columns are carried into the output) or a WebDataset tar shard. Inputs are checked
up front (a missing manifest or a manifest without its path column is a usage error, raised before any
model loads) and then streamed lazily, so millions of images never sit in memory at once. A missing or bad
image file is not an error here: it becomes an item that fails, with a clear message, when it is decoded.
"""

from __future__ import annotations

import copy
import glob
import os
import tarfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from beholder.io.tables import FORMATS, read_table
from beholder.results import BASE_COLUMNS, DIM_PREFIX, HEAD_PREFIX

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".avif", ".jp2", ".ppm", ".pgm"}
)
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz")
# A tar member is read into memory before decoding; one larger than this is refused rather than risk memory.
DEFAULT_MAX_MEMBER_BYTES = 256 * 1024 * 1024
# Carried manifest columns that would clash with score columns are renamed with this prefix.
CARRIED_PREFIX = "input_"


class InputError(ValueError):
    """An INPUT that cannot be expanded at all (missing manifest, no path column, unknown glob)."""


@dataclass(frozen=True)
class Item:
    """One image to score.

    key: its stable identity, written as the `path` column: the file path (as given, or resolved against the
        manifest's folder), or `shard.tar/member` for a tar member. Resume and de-duplication go by key.
    source: what the decoder opens: a file path, or a tar member's bytes. None when `error` is set.
    columns: columns carried from a manifest row.
    error: set when the item is known to be unusable before decoding (empty manifest path, corrupt shard).
    """

    key: str
    source: str | bytes | None
    columns: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None


def is_image_name(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_EXTENSIONS


def is_tar_name(name: str) -> bool:
    return name.lower().endswith(TAR_SUFFIXES)


def split_tar_key(key: str) -> tuple[str, str] | None:
    """`shards/a.tar/0001.jpg` -> ("shards/a.tar", "0001.jpg"), or None when the key is not a tar member."""
    lowered = key.lower()
    for suffix in TAR_SUFFIXES:
        cut = lowered.find(suffix + "/")
        if cut >= 0:
            end = cut + len(suffix)
            return key[:end], key[end + 1 :]
    return None


def carried_name(name: str) -> str:
    """Manifest column name as written to the output: prefixed when it would clash with a score column."""
    clashes = name in BASE_COLUMNS or name.startswith((DIM_PREFIX, HEAD_PREFIX))
    return CARRIED_PREFIX + name if clashes else name


@dataclass(frozen=True)
class _Manifest:
    path: Path
    table: pa.Table
    path_column: str


@dataclass(frozen=True)
class _Source:
    kind: str  # "file" | "folder" | "manifest" | "tar"
    path: str
    manifest: _Manifest | None = None


class InputPlan:
    """INPUTs classified and checked; `items()` streams them, `count()` sizes the progress bar."""

    def __init__(
        self,
        inputs: Sequence[str],
        *,
        path_column: str = "path",
        max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES,
    ):
        if not inputs:
            raise InputError("no INPUT given")
        self.inputs = list(inputs)
        self.path_column = path_column
        self.max_member_bytes = max_member_bytes
        self._sources = [source for spec in self.inputs for source in self._classify(spec)]

    def _classify(self, spec: str) -> list[_Source]:
        if os.path.isdir(spec):
            return [_Source("folder", spec)]
        if os.path.lexists(spec) or not glob.has_magic(spec):
            return [self._file_source(spec)]
        matches = sorted(glob.glob(spec, recursive=True))
        if not matches:
            raise InputError(f"{spec}: the pattern matches no file")
        return [_Source("folder", m) if os.path.isdir(m) else self._file_source(m) for m in matches]

    def _file_source(self, path: str) -> _Source:
        if is_tar_name(path):
            if not os.path.isfile(path):
                raise InputError(f"{path}: tar shard not found")
            return _Source("tar", path)
        if Path(path).suffix.lower() in FORMATS:
            return _Source("manifest", path, self._load_manifest(path))
        return _Source("file", path)  # a missing image fails later, as a row with an error

    def _load_manifest(self, path: str) -> _Manifest:
        if not os.path.isfile(path):
            raise InputError(f"{path}: manifest not found")
        try:
            table = read_table(path, string_columns=[self.path_column])
        except (OSError, pa.ArrowException) as exc:
            raise InputError(f"{path}: cannot read manifest: {exc}") from exc
        if self.path_column not in table.column_names:
            raise InputError(
                f"{path}: manifest has no {self.path_column!r} column (columns: {', '.join(table.column_names)}); "
                "name the image column with --path-column"
            )
        return _Manifest(Path(path), table, self.path_column)

    def parts(self) -> list[InputPlan]:
        """One plan per expanded source (an image file, folder, manifest or tar shard), in input order; their
        items, one part after the other, are this plan's items. An engine can expand parts in different places."""
        parts = []
        for source in self._sources:
            part = copy.copy(self)
            part._sources = [source]
            parts.append(part)
        return parts

    @property
    def shard(self) -> str | None:
        """The path of the WebDataset shard this plan consists of, when it is one shard (see `parts`)."""
        only = self._sources[0] if len(self._sources) == 1 else None
        return only.path if only is not None and only.kind == "tar" else None

    def count(self) -> int | None:
        """Number of items (before de-duplication), or None when a tar shard would have to be read to know."""
        if any(s.kind == "tar" for s in self._sources):
            return None
        return sum(_count(s) for s in self._sources)

    def items(self) -> Iterator[Item]:
        """Every item, in input order; folders sorted; duplicates are left for the consumer to drop."""
        for source in self._sources:
            if source.kind == "file":
                yield Item(source.path, source.path)
            elif source.kind == "folder":
                yield from (Item(p, p) for p in _walk(source.path))
            elif source.kind == "manifest":
                yield from _manifest_items(source.manifest)
            else:
                yield from _tar_items(source.path, self.max_member_bytes)


def _count(source: _Source) -> int:
    if source.manifest is not None:
        return len(source.manifest.table)
    return sum(1 for _ in _walk(source.path)) if source.kind == "folder" else 1


def _walk(folder: str) -> Iterator[str]:
    """Image files under `folder`, recursively, in sorted order; hidden files and folders are skipped."""
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and is_image_name(name):
                yield os.path.join(root, name)


def _manifest_items(manifest: _Manifest) -> Iterator[Item]:
    base = manifest.path.parent
    carried = [n for n in manifest.table.column_names if n != manifest.path_column]
    renamed = {n: carried_name(n) for n in carried}
    row_number = 0
    for batch in manifest.table.to_batches(max_chunksize=4096):
        for row in batch.to_pylist():
            row_number += 1
            columns = {renamed[n]: row[n] for n in carried}
            value = row[manifest.path_column]
            if value is None or not str(value).strip():
                key = f"{manifest.path}#row{row_number}"
                yield Item(
                    key, None, columns, f"InputError: empty {manifest.path_column!r} in manifest row {row_number}"
                )
                continue
            path = os.path.normpath(os.path.join(base, os.path.expanduser(str(value))))
            yield Item(path, path, columns)


def _tar_items(shard: str, max_member_bytes: int) -> Iterator[Item]:
    """Image members of a WebDataset shard, streamed in archive order; sidecar members (.json, .txt, .cls)
    are skipped. A corrupt or truncated shard ends in one error item keyed by the shard itself."""
    done = 0
    try:
        with tarfile.open(shard, mode="r|*") as archive:
            for member in archive:
                if not member.isfile() or not is_image_name(member.name):
                    continue
                key = f"{shard}/{member.name}"
                if member.size > max_member_bytes:
                    message = f"ImageError: tar member is {member.size} bytes, over the {max_member_bytes} byte limit"
                    yield Item(key, None, error=message)
                else:
                    yield Item(key, archive.extractfile(member).read())
                done += 1
    except (tarfile.TarError, OSError, EOFError) as exc:
        yield Item(shard, None, error=f"InputError: corrupt tar shard after {done} image(s): {exc}")


def read_tar_member(key: str) -> bytes:
    """The bytes of the tar member named by a `shard.tar/member` key (used to copy selected images out)."""
    parts = split_tar_key(key)
    if parts is None:
        raise ValueError(f"{key} is not a tar member key")
    shard, member = parts
    with tarfile.open(shard) as archive:
        extracted = archive.extractfile(member)
        if extracted is None:
            raise ValueError(f"{key}: not a regular file in {shard}")
        return extracted.read()
