"""Running an app under uvicorn until SIGTERM or Ctrl+C, then draining: the exit is clean when nothing was lost.

On the signal the app reports draining (/readyz 503), uvicorn stops accepting connections and waits for the
requests in flight, then the app's lifespan ends (the scoring engine answers whatever is left and stops).
"""

from __future__ import annotations

import math
import signal
import socket
from collections.abc import Callable
from types import FrameType

import uvicorn
from fastapi import FastAPI

from beholder.serve.config import ServeConfig

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def listen(host: str, port: int) -> socket.socket:
    """The server's socket, bound (port 0: a free one) before the model loads, so a taken port fails at once.

    Made with proto=IPPROTO_TCP, as uvicorn makes its own: asyncio sets TCP_NODELAY only on connections of such
    sockets, and without it a keep-alive client waits ~40 ms (delayed ACK) for every response's body."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: FastAPI, on_started: Callable[[], None]):
        super().__init__(config)
        self._app, self._on_started = app, on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self._on_started()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._app.state.draining = True
        super().handle_exit(sig, frame)


def run(app: FastAPI, config: ServeConfig, sock: socket.socket, on_started: Callable[[], None] = lambda: None) -> bool:
    """Serve `app` on `sock` until SIGTERM/SIGINT; whether it drained (False: a second Ctrl+C cut the drain)."""
    server = _Server(
        uvicorn.Config(
            app,
            log_level=config.log_level,
            access_log=config.access_log,
            limit_concurrency=config.max_connections,
            # requests in flight end within their own time limit; this bounds the drain should one not
            timeout_graceful_shutdown=math.ceil(config.request_timeout) + 5,
            server_header=False,
        ),
        app,
        on_started,
    )
    # uvicorn re-raises the signal it stopped on once it has drained, to let the previous handler act on it;
    # for a server a drained stop is the normal end, so the handlers it finds do nothing.
    previous = {sig: signal.signal(sig, _ignore) for sig in _STOP_SIGNALS}
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return not server.force_exit


def _ignore(sig: int, frame: FrameType | None) -> None:
    return None
