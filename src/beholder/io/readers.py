"""Turn command-line INPUTs into a stream of items to score.

An INPUT is an image file, a folder (searched recursively), a glob, a manifest (.csv/.jsonl/.parquet with a
path column; its other columns are carried into the output) or a WebDataset tar shard. Inputs are checked
up front (a missing manifest or a manifest without its path column is an error raised before any model
loads) and then streamed lazily, so millions of images never sit in memory at once. A missing or bad image
file is not an error here: it becomes an item that fails, with a clear message, when it is decoded. In a
folder, only regular files are images (a FIFO named x.jpg is an error item, never opened); files that are not
images are skipped and counted (`InputPlan.skipped`).

A key names its image unambiguously: a file path, or `SHARD/MEMBER` for a tar member, where a member name
that occurs again in the same shard gets `#2`, `#3`, ... (`locate` finds either again).
"""

from __future__ import annotations

import copy
import glob
import os
import stat
import tarfile
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from beholder.errors import BeholderError
from beholder.io.keys import key_from_text, key_to_text
from beholder.io.tables import FORMATS, TableError, read_table
from beholder.results import BASE_COLUMNS, DIM_PREFIX, HEAD_PREFIX, SCORE_PREFIX

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".avif", ".jp2", ".ppm",
     ".pgm"}
)
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz")
# A tar member is read into memory before decoding; one larger than this is refused rather than risk memory.
DEFAULT_MAX_MEMBER_BYTES = 256 * 1024 * 1024
# Carried manifest columns that would clash with score columns are renamed with this prefix.
CARRIED_PREFIX = "input_"


class InputError(BeholderError, ValueError):
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
    """`shards/a.tar/0001.jpg` -> ("shards/a.tar", "0001.jpg") when `shards/a.tar` is a file (a tar shard), or
    None: a plain path, including one inside a folder that is only named like a shard."""
    lowered = key.lower()
    for suffix in TAR_SUFFIXES:
        start = 0
        while (cut := lowered.find(suffix + "/", start)) >= 0:
            end = cut + len(suffix)
            if os.path.isfile(key[:end]):
                return key[:end], key[end + 1 :]
            start = end
    return None


@dataclass(frozen=True)
class Located:
    """Where a key's image is: a file, or a member of a tar shard."""

    path: str  # the image file, or the shard
    member: str | None = None  # the member's key within the shard (None for a file)


def locate(key: str, base: str | os.PathLike = "") -> Located:
    """The image a key names; a relative key is taken relative to `base`. A file at the key's path wins over a
    tar member of the same name."""
    path = os.path.join(base, key)
    if os.path.lexists(path):
        return Located(path)
    parts = split_tar_key(path)
    return Located(*parts) if parts else Located(path)


def carried_names(names: Sequence[str]) -> dict[str, str]:
    """Manifest column name -> name in the output: prefixed with `input_` when it would clash with a score
    column, again while that name is another column of the manifest (`score` and `input_score` both survive)."""
    renamed = {}
    for name in names:
        out = name
        while out in BASE_COLUMNS or out.startswith((DIM_PREFIX, HEAD_PREFIX, SCORE_PREFIX)) or (out != name and out in names):
            out = CARRIED_PREFIX + out
        renamed[name] = out
    return renamed


def describe_skipped(skipped: Mapping[str, int]) -> str | None:
    """"3 files that are not images (.heic 2, .svg 1)", or None when nothing was skipped."""
    if not skipped:
        return None
    by_count = sorted(skipped.items(), key=lambda item: (-item[1], item[0]))
    kinds = ", ".join(f"{suffix or '(no extension)'} {n}" for suffix, n in by_count)
    return f"{sum(skipped.values())} file(s) that are not images beholder reads ({kinds})"


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
        self.base = os.getcwd()  # what relative keys are relative to
        self.skipped: Counter[str] = Counter()  # file suffix -> files in folders skipped by items(): not images
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
        except (OSError, TableError) as exc:
            raise InputError(f"{path}: cannot read manifest: {exc}") from exc
        if self.path_column not in table.column_names and len(table):  # (an empty jsonl file has no columns)
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
        self.skipped.clear()
        for source in self._sources:
            if source.kind == "file":
                yield Item(source.path, source.path)
            elif source.kind == "folder":
                yield from _walk(source.path, self.skipped)
            elif source.kind == "manifest":
                yield from _manifest_items(source.manifest)
            else:
                yield from _tar_items(source.path, self.max_member_bytes)


def _count(source: _Source) -> int:
    if source.manifest is not None:
        return len(source.manifest.table)
    return sum(1 for _ in _walk(source.path, Counter())) if source.kind == "folder" else 1


def _walk(folder: str, skipped: Counter[str]) -> Iterator[Item]:
    """Images under `folder`: its files in sorted order, then its subfolders', recursively (as os.walk goes);
    hidden files and folders are left out. An entry with an image name that is not a regular file (a FIFO, a
    socket, a broken link) is an error item: opening it could block forever. Other files count in `skipped`."""
    try:
        with os.scandir(folder) as listing:
            entries = sorted(listing, key=lambda e: e.name)
    except OSError as exc:
        yield Item(folder, None, error=f"InputError: cannot list folder: {exc.strerror or exc}")
        return
    folders = []
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir(follow_symlinks=False):
            folders.append(entry.path)
        elif not is_image_name(entry.name):
            skipped[Path(entry.name).suffix.lower()] += 1
        elif entry.is_file():
            yield Item(entry.path, entry.path)
        else:
            yield Item(entry.path, None, error=f"InputError: {_not_regular(entry.path)}")
    for sub in folders:
        yield from _walk(sub, skipped)


def _not_regular(path: str) -> str:
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return "broken symbolic link"
    kind = "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
    return f"not a regular file ({kind})"


def _manifest_items(manifest: _Manifest) -> Iterator[Item]:
    base = manifest.path.parent
    carried = [n for n in manifest.table.column_names if n != manifest.path_column]
    renamed = carried_names(carried)
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
            path = os.path.normpath(os.path.join(base, os.path.expanduser(key_from_text(str(value)))))
            yield Item(path, path, columns)


def _tar_items(shard: str, max_member_bytes: int) -> Iterator[Item]:
    """Image members of a WebDataset shard, streamed in archive order; sidecar members (.json, .txt, .cls)
    are skipped. A corrupt or truncated shard ends in one error item keyed by the shard itself."""
    done = 0
    try:
        for name, member, archive in _members(shard):
            key = f"{shard}/{name}"
            if member.size > max_member_bytes:
                message = f"ImageError: tar member is {member.size} bytes, over the {max_member_bytes} byte limit"
                yield Item(key, None, error=message)
            else:
                yield Item(key, archive.extractfile(member).read())
            done += 1
    except (tarfile.TarError, OSError, EOFError) as exc:
        yield Item(shard, None, error=f"InputError: corrupt tar shard after {done} image(s): {exc}")


def _members(shard: str, mode: str = "r|*") -> Iterator[tuple[str, tarfile.TarInfo, tarfile.TarFile]]:
    """(member key, member, open archive) for each image member, streamed: the one place member keys are made,
    so scoring and `read_tar_members` agree. A name seen before in the shard gets the first free `#2`, `#3`..."""
    used: set[str] = set()
    with tarfile.open(shard, mode=mode) as archive:
        for member in archive:
            if not member.isfile() or not is_image_name(member.name):
                continue
            key, n = member.name, 1
            while key in used:
                n += 1
                key = f"{member.name}#{n}"
            used.add(key)
            yield key, member, archive


def read_tar_members(shard: str, keys: Iterable[str]) -> Iterator[tuple[str, str, bytes]]:
    """(member key, member name, bytes) for the given member keys (the part of a key after `SHARD/`), in
    archive order, reading the shard once. A key the shard lacks is an error naming it."""
    wanted = set(keys)
    for key, member, archive in _members(shard):
        if key in wanted:
            wanted.discard(key)
            yield key, member.name, archive.extractfile(member).read()
            if not wanted:
                return
    if wanted:
        raise FileNotFoundError(f"{shard} has no image member {key_to_text(sorted(wanted)[0])}")



def tar_member_spans(shard: str) -> dict[str, tuple[int, int]] | None:
    """Member key -> (offset, size) of its bytes in an uncompressed shard, read from the headers alone (the archive
    is seeked through, not read), so members can then be read in any order; None for a compressed shard."""
    try:
        return {key: (member.offset_data, member.size) for key, member, _ in _members(shard, mode="r:")}
    except tarfile.ReadError:  # compressed (or not a tar at all: reading it member by member says so)
        return None
