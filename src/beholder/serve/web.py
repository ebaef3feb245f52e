"""The web stack every beholder app is built on (the scoring API here, the review page later).

`create_web_app` gives a FastAPI app with, outermost first: request metrics, the body size limit, CORS (only
for the origins asked for), then the routes: `GET /healthz` (the process answers), `GET /readyz` (ready to
work, not draining), `GET /metrics` (Prometheus, behind the API key) and the OpenAPI docs at `/docs`. Invalid
parameters and bodies are 400s, like every other malformed request. The caller adds its own routers, behind
`guard` where they need the key.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse, Response

from beholder.serve.limits import BodyLimitMiddleware
from beholder.serve.metrics import HttpMetrics, MetricsMiddleware


def create_web_app(
    *,
    title: str,
    version: str,
    metrics: HttpMetrics,
    guard: Callable[..., Awaitable[None]],
    max_request_bytes: int,
    ready: Callable[[], bool] = lambda: True,
    cors_origins: Sequence[str] = (),
    lifespan: Any = None,
    description: str = "",
) -> FastAPI:
    """guard: the dependency protecting /metrics (see security.require_api_key); ready: whether /readyz says
    yes (a draining app, `app.state.draining = True`, never does)."""
    app = FastAPI(title=title, version=version, description=description, lifespan=lifespan, redoc_url=None)
    app.state.draining = False

    @app.get("/healthz", tags=["service"], summary="the process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["service"], summary="ready for work (loaded, warmed up, not shutting down)")
    async def readyz() -> JSONResponse:
        if app.state.draining:
            return JSONResponse({"status": "draining"}, 503)
        return JSONResponse({"status": "ready"}) if ready() else JSONResponse({"status": "starting"}, 503)

    @app.get("/metrics", tags=["service"], summary="Prometheus metrics", dependencies=[Depends(guard)])
    async def prometheus() -> Response:
        return metrics.response()

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()]
        return JSONResponse({"detail": errors}, 400)

    if cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=list(cors_origins), allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_request_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # added last: outermost, so it sees every answer
    return app
