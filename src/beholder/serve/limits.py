"""Request size limits, enforced while the body streams in, before any of it is parsed or kept."""

from __future__ import annotations

from fastapi import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# A refused body is read and thrown away up to this many times the limit before the 413 goes out: a client
# still sending when the server answers and closes would see "connection reset" instead of the 413.
DISCARD_FACTOR = 4


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int):
        super().__init__(413, f"request body larger than this server accepts ({limit} bytes)")


class BodyLimitMiddleware:
    """413 for a request whose body exceeds `max_bytes`: before the app runs when Content-Length says so, else
    as soon as the streamed bytes pass the limit (the app reading the body gets BodyTooLarge, an
    HTTPException). Nothing past the limit is kept."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            if int(declared) <= DISCARD_FACTOR * self.max_bytes:
                await self._discard(receive, 0)
            error = BodyTooLarge(self.max_bytes)
            await JSONResponse({"detail": error.detail}, 413, headers={"Connection": "close"})(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    if message.get("more_body", False):
                        await self._discard(receive, received)
                    raise BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, counted, send)

    async def _discard(self, receive: Receive, received: int) -> None:
        """Read the rest of the body without keeping it, up to DISCARD_FACTOR times the limit in all."""
        while received <= DISCARD_FACTOR * self.max_bytes:
            message = await receive()
            if message["type"] != "http.request":
                return
            received += len(message.get("body", b""))
            if not message.get("more_body", False):
                return
