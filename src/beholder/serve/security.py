"""Access control shared by beholder's web apps: an API key, and the one folder whose files requests may name.

The key is read from a file (never a command-line argument, which other users can see in the process list)
and compared in constant time. Paths are resolved with every symlink followed before they are checked, so
neither `..` nor a symlink inside the root can reach a file outside it. (The check and the read are two
steps: the root must not be writable by whoever the server is protecting itself from.)
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi import Depends, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer


class ApiKey:
    def __init__(self, key: str):
        if not key:
            raise ValueError("the API key is empty")
        if any(c.isspace() for c in key):
            raise ValueError("the API key holds whitespace (the key file must hold the key alone)")
        self._key = key.encode()

    @classmethod
    def from_file(cls, path: str | Path) -> ApiKey:
        """The file's text, surrounding whitespace removed."""
        return cls(Path(path).read_text(encoding="utf-8").strip())

    def matches(self, given: str) -> bool:
        return hmac.compare_digest(given.encode(), self._key)


def require_api_key(key: ApiKey | None) -> Callable[..., Awaitable[None]]:
    """A FastAPI dependency: 401 unless the request carries `Authorization: Bearer KEY` (no-op without a key)."""
    if key is None:

        async def open_access() -> None:
            return None

        return open_access

    bearer = HTTPBearer(auto_error=False, description="the server's API key (--api-key-file)")

    async def check(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if credentials is None or not key.matches(credentials.credentials):
            raise HTTPException(401, "missing or wrong API key", headers={"WWW-Authenticate": "Bearer"})

    return check


class PathForbidden(PermissionError):
    """A path a request may not name: paths are off, or it resolves outside the allowed root."""


class AllowedRoot:
    """The folder requests may read files from by path; `None` as the root refuses every path."""

    def __init__(self, root: str | Path | None):
        self.root = Path(root).resolve(strict=True) if root is not None else None
        if self.root is not None and not self.root.is_dir():
            raise NotADirectoryError(f"--allow-root {root} is not a folder")

    def resolve(self, name: str) -> Path:
        """The real path of `name` (relative to the root, or absolute), if it lies inside the root.

        Every symlink is followed first, so a link pointing out of the root is refused like `../`. The file
        need not exist: a missing file inside the root is the caller's "cannot open" error, not a refusal."""
        if self.root is None:
            raise PathForbidden("this server reads no paths (it was started without --allow-root): upload the image")
        if not name or "\x00" in name:
            raise PathForbidden(f"invalid path {name!r}")
        try:
            resolved = (self.root / name).resolve(strict=False)  # an absolute `name` replaces the root here
        except (OSError, RuntimeError) as exc:  # a symlink loop
            raise PathForbidden(f"cannot resolve path {name!r}: {exc}") from exc
        if not resolved.is_relative_to(self.root):
            raise PathForbidden(f"path {name!r} is outside the folder this server may read")
        return resolved
