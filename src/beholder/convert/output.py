"""Where a conversion writes: a new model folder, or an empty one, filled in a temporary folder beside it and
renamed into place, so a destination is always complete."""

from __future__ import annotations

import errno
from collections.abc import Callable
from pathlib import Path

from beholder.files import atomic_write


def check_destination(dst: Path) -> None:
    """Refuse a destination that exists and is not an empty folder, before any work is done."""
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise FileExistsError(f"{dst} already exists and is not an empty folder")


def write_folder(dst: Path, fill: Callable[[Path], None]) -> Path:
    """Call `fill(folder)` on a temporary folder, then publish it as `dst` (which must be absent or empty)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_write(dst) as partial:  # replaces an empty dst folder, never a filled one
            partial.mkdir()
            fill(partial)
    except OSError as exc:
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
            raise FileExistsError(f"{dst} appeared while converting (another process?)") from exc
        raise
    return dst
