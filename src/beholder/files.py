"""Writing a file or a folder so that its final path holds either the old content or the complete new one.

The content is written under a temporary name beside the final path, made durable (fsync), then renamed over the
final path in one step, and the rename itself made durable (fsync of the parent folder). A process killed
midway leaves at most a temporary ".NAME.tmp-PID", never a half-written NAME. (And two names: `file_slug`, a name
made safe to be part of a file name; `cache_root`, the folder beholder's caches live in.)
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def temporary_sibling(path: str | os.PathLike) -> Path:
    """Where `path` is written before it is published: hidden, beside it, named by the writing process."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


@contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path to write `path`'s new content to (a file, or a folder the caller creates); when the
    block ends without an error it is published over `path` (see `publish`), otherwise removed."""
    tmp = temporary_sibling(path)
    remove(tmp)  # left by a killed process that had this process's id
    try:
        yield tmp
        publish(tmp, path)
    except BaseException:
        remove(tmp)
        raise


def publish(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Make `tmp` durable and rename it to `path` in one step. A folder may replace only an absent or empty
    folder (OSError otherwise); a file replaces a file."""
    tmp, path = Path(tmp), Path(path)
    if tmp.is_dir():
        for item in tmp.rglob("*"):
            if item.is_file():
                fsync(item)
    fsync(tmp)
    os.replace(tmp, path)
    fsync(path.parent)


def fsync(path: str | os.PathLike) -> None:
    """Flush a file's or a folder's entries to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove(path: str | os.PathLike) -> None:
    """Delete a file or a folder tree if it exists."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def file_slug(name: str) -> str:
    """A file-name-safe form of a model name or path ("KwaiVGI/HumanAesExpert-1B" -> "KwaiVGI_HumanAesExpert-1B")."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_.") or "model"


def cache_root() -> Path:
    """Where beholder keeps what it can make again (converted models, thumbnails): $BEHOLDER_CACHE, or
    ~/.cache/beholder."""
    return Path(os.environ.get("BEHOLDER_CACHE") or "~/.cache/beholder").expanduser()
