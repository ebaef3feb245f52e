"""ServeConfig: the network, batching and limit settings of `beholder serve` (the model and access control,
an API key and an allowed root, are objects of their own)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal, get_args

LOOPBACK = "127.0.0.1"
LogLevel = Literal["critical", "error", "warning", "info", "debug"]
LOG_LEVELS: tuple[str, ...] = get_args(LogLevel)


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps a server to this machine."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


@dataclass(frozen=True)
class ServeConfig:
    host: str = LOOPBACK  # interface to bind; anything but loopback exposes the service to the network
    port: int = 8000  # TCP port; 0 picks a free one (the address is printed when the server listens)
    max_batch: int = 8  # most images per model call, gathered across requests
    # A partial batch goes to the model once its oldest image has waited this long. 0: whatever is queued when the
    # model is free (batches still form under load, from images arriving while it runs); more trades latency
    # for fuller batches when a model call costs little more for many images than for one (BENCHMARKS.md).
    max_wait_ms: float = 0.0
    decode_workers: int = 2  # threads decoding and preprocessing uploaded images
    max_queue: int = 256  # most images admitted (decoding, waiting or in the model); beyond: 503 + Retry-After
    max_images: int = 64  # most images in one request (413 beyond)
    max_request_bytes: int = 64 * 2**20  # most bytes in one request body (413 beyond)
    request_timeout: float = 60.0  # seconds a request may take before it is answered 504; a client may ask less
    max_connections: int = 512  # most concurrent connections; beyond, the server answers 503 at once
    full: bool | None = None  # default scoring mode of a request: None = full when the model has the heads
    cors_origins: tuple[str, ...] = ()  # browser origins allowed to call the API; none = CORS off
    log_level: LogLevel = "info"  # uvicorn's log level
    access_log: bool = False  # one log line per request

    def __post_init__(self) -> None:
        positive = {
            "max_batch": self.max_batch, "decode_workers": self.decode_workers, "max_queue": self.max_queue,
            "max_images": self.max_images, "max_request_bytes": self.max_request_bytes,
            "request_timeout": self.request_timeout, "max_connections": self.max_connections,
        }
        for name, value in positive.items():
            if value <= 0:
                raise ValueError(f"{name} must be positive, not {value}")
        if self.max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be at least 0, not {self.max_wait_ms}")
        if self.max_images > self.max_queue:
            raise ValueError(f"max_images ({self.max_images}) cannot exceed max_queue ({self.max_queue})")
        if not 0 <= self.port < 65536:
            raise ValueError(f"port must be in 0..65535, not {self.port}")
