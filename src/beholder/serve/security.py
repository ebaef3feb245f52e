"""Access control shared by beholder's web apps: an API key (for API clients, or for a browser page), and the one
folder whose files requests may name.

The key is read from a file (never a command-line argument, which other users can see in the process list)
and compared in constant time. Paths are resolved with every symlink followed before they are checked, so
neither `..` nor a symlink inside the root can reach a file outside it. (The check and the read are two
steps: the root must not be writable by whoever the server is protecting itself from.)
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi import Depends, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse
from starlette.types import ASGIApp, Receive, Scope, Send


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

    @property
    def text(self) -> str:
        """The key itself (for an address that a browser on this machine opens)."""
        return self._key.decode()

    def matches(self, given: str) -> bool:
        return hmac.compare_digest(given.encode(), self._key)

    def derived(self, purpose: str) -> str:
        """A token for `purpose` that stands for the key without revealing it (HMAC-SHA256 of the purpose)."""
        return hmac.new(self._key, purpose.encode(), hashlib.sha256).hexdigest()


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


class BrowserKeyGate:
    """ASGI middleware: a page for browsers, and everything it loads, behind an API key.

    A browser is let in once by opening the page as `URL/?key=KEY`: the answer is a redirect to the same address
    without the key (so it leaves the address bar and the history) with a session cookie (HttpOnly: no script reads
    it; SameSite=Strict: no other site's page sends it; Secure under https), and every later request of the page,
    its script's calls and its images alike, carries the cookie. Scripts may send `Authorization: Bearer KEY`
    instead. Anything else is a 401; the health and readiness probes stay open."""

    OPEN_PATHS = ("/healthz", "/readyz")

    def __init__(self, app: ASGIApp, key: ApiKey):
        self.app, self.key = app, key
        # named after the key, so pages of two servers on one host (cookies ignore ports) keep their own
        self.cookie = "beholder_" + key.derived("cookie name")[:16]
        self.session = key.derived("browser session")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.OPEN_PATHS:
            return await self.app(scope, receive, send)
        request = Request(scope)
        if self._admitted(request):
            return await self.app(scope, receive, send)
        given = request.query_params.get("key")
        if given is not None and self.key.matches(given):
            rest = request.url.remove_query_params("key")
            response = RedirectResponse(rest.path + (f"?{rest.query}" if rest.query else ""), status_code=303)
            response.set_cookie(self.cookie, self.session, httponly=True, samesite="strict",
                                secure=request.url.scheme == "https")  # fmt: skip
        else:
            response = JSONResponse(
                {"detail": "this page needs its key: open the address with ?key=KEY that the server printed, or "
                           "send Authorization: Bearer KEY"},  # fmt: skip
                401, headers={"WWW-Authenticate": "Bearer"},
            )
        await response(scope, receive, send)

    def _admitted(self, request: Request) -> bool:
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and self.key.matches(credentials):
            return True
        return hmac.compare_digest(request.cookies.get(self.cookie, "").encode(), self.session.encode())


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
