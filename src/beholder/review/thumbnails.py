"""Thumbnails for people, made on the server and cached on disk.

These are for eyes, not scores, so they take every shortcut scoring must not: JPEGs are decoded at a reduced DCT
scale (Pillow's `draft`), images are turned upright (EXIF) and transparency is laid on white, then the image is
shrunk to fit a square box and saved as a JPEG. The cache is keyed by the file's path, modification time and size
(for a tar member: its shard's, and the member's key) and the box size, so an edited file gets a new thumbnail and
an unchanged one is never decoded twice. Tar members are read by seeking in an uncompressed shard (its member
index is read once from the headers), or by streaming a compressed one.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import threading
from collections.abc import Iterable
from pathlib import Path

from PIL import Image

from beholder.files import cache_root
from beholder.images import DecodeConfig, load_image
from beholder.io import Located, read_tar_members, tar_member_spans

THUMB = 384  # the grid's cards (about 220 CSS pixels wide on a 1.75x screen)
PREVIEW = 1600  # the large view
RENDITIONS: dict[str, int] = {"thumb": THUMB, "preview": PREVIEW}
FOR_PEOPLE = DecodeConfig(draft=True, exif_transpose=True, alpha="white")
_FORMAT_VERSION = b"1"  # part of every cache key: bump it when thumbnails are made differently
_QUALITY = 85


def default_thumbnail_cache() -> Path:
    """$BEHOLDER_CACHE/thumbnails, or ~/.cache/beholder/thumbnails."""
    return cache_root() / "thumbnails"


def render(source: str | bytes, box: int) -> bytes:
    """A JPEG of the image at `source` (a path or encoded bytes) shrunk to fit `box` x `box` (never enlarged)."""

    def needed(width: int, height: int) -> tuple[int, int]:
        scale = min(1.0, box / max(width, height))
        return math.ceil(width * scale), math.ceil(height * scale)

    image = load_image(source, FOR_PEOPLE, target=needed)
    image.thumbnail((box, box), Image.Resampling.LANCZOS, reducing_gap=3.0)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=_QUALITY, optimize=True)
    return out.getvalue()


class Thumbnails:
    """Thumbnails of images (files or tar members) in `box`-pixel renditions, cached in `cache_dir`."""

    def __init__(self, cache_dir: str | os.PathLike):
        self.cache_dir = Path(cache_dir)
        self._spans: dict[tuple[str, int, int], dict[str, tuple[int, int]] | None] = {}  # shard (and its stat)
        self._spans_lock = threading.Lock()

    def get(self, where: Located, box: int) -> bytes:
        """The thumbnail of `where` fitting `box`: from the cache, or made (and cached) now. Raises ImageError or
        OSError when the image cannot be read."""
        cached = self._cached_path(where, box)
        try:
            data = cached.read_bytes()
            if data:  # an empty file is what a crash mid-write can leave
                return data
        except FileNotFoundError:
            pass
        data = render(self._source(where), box)
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(f".{cached.name}.{os.getpid()}-{threading.get_ident()}")
        tmp.write_bytes(data)
        os.replace(tmp, cached)  # whole or absent, even with two makers at once
        return data

    def warm(self, images: Iterable[Located], box: int, stop: threading.Event | None = None) -> int:
        """Make the missing thumbnails of `images`, in order (for a background thread, so the grid finds them ready);
        images that cannot be read are skipped (their own request reports why). Returns how many were made."""
        made = 0
        for where in images:
            if stop is not None and stop.is_set():
                break
            try:
                if not self._cached_path(where, box).is_file():
                    self.get(where, box)
                    made += 1
            except (OSError, ValueError):  # unreadable (ImageError is a ValueError): the others go on
                continue
        return made

    def _cached_path(self, where: Located, box: int) -> Path:
        stat = os.stat(where.path)
        digest = hashlib.sha256(b"\0".join([
            _FORMAT_VERSION, os.fsencode(os.path.abspath(where.path)),
            os.fsencode(where.member or ""), str(stat.st_mtime_ns).encode(), str(stat.st_size).encode(),
            str(box).encode(),
        ])).hexdigest()  # fmt: skip
        return self.cache_dir / digest[:2] / f"{digest[2:]}.jpg"

    def _source(self, where: Located) -> str | bytes:
        """A path to decode, or a tar member's bytes."""
        if where.member is None:
            return where.path
        spans = self._member_spans(where.path)
        if spans is None:  # compressed: stream to the member
            [(_, _, data)] = read_tar_members(where.path, [where.member])
            return data
        if where.member not in spans:
            raise FileNotFoundError(f"{where.path} has no image member {where.member}")
        offset, size = spans[where.member]
        with open(where.path, "rb") as shard:
            shard.seek(offset)
            return shard.read(size)

    def _member_spans(self, shard: str) -> dict[str, tuple[int, int]] | None:
        stat = os.stat(shard)
        key = (os.path.abspath(shard), stat.st_mtime_ns, stat.st_size)
        with self._spans_lock:
            if key not in self._spans:
                self._spans[key] = tar_member_spans(shard)
            return self._spans[key]
