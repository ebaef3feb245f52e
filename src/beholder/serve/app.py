"""The scoring API on the shared web stack: POST /v1/score, POST /v1/annotate, GET /v1/model.

Images come as multipart files or JSON (base64 data, or paths under --allow-root); options come in the query
string. A response holds one row per image, in order, in the flat schema of `beholder score` tables (path,
score, level, error, dim_<key>, head_<name>), with the model's name, scale and the scoring mode beside them.
"""

from __future__ import annotations

import asyncio
import dataclasses
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request

from beholder.scoring import Scorer
from beholder.serve.batching import Overloaded
from beholder.serve.config import ServeConfig
from beholder.serve.inputs import OPENAPI_BODY, read_images
from beholder.serve.metrics import HttpMetrics
from beholder.serve.security import AllowedRoot, ApiKey, require_api_key
from beholder.serve.service import ScoringService
from beholder.serve.web import create_web_app
from beholder.version import __version__

DESCRIPTION = """\
Aesthetic scores for images, batched across concurrent requests. Send images as multipart files (any field
name) or as JSON `{"images": [{"data": BASE64}, {"path": "relative/to/allow-root.jpg"}]}`. Every image gets a
row; an image that cannot be decoded gets a row with `error` set."""

TIMEOUT = Query(None, gt=0, description="seconds before the request is answered 504 (at most the server's limit)")


def create_app(
    scorer: Scorer, config: ServeConfig, *, api_key: ApiKey | None = None, root: AllowedRoot | None = None
) -> FastAPI:
    """The scoring service for `scorer`. api_key: required from clients when given; root: the folder requests
    may name files in (default: none, uploads only)."""
    http_metrics = HttpMetrics()
    service = ScoringService(scorer, config, http_metrics)
    root = root or AllowedRoot(None)
    guard = require_api_key(api_key)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        service.start()
        try:
            yield
        finally:
            await asyncio.to_thread(service.stop)

    app = create_web_app(
        title="beholder",
        version=__version__,
        description=DESCRIPTION,
        metrics=http_metrics,
        guard=guard,
        max_request_bytes=config.max_request_bytes,
        ready=lambda: service.ready,
        cors_origins=config.cors_origins,
        lifespan=lifespan,
    )
    router = APIRouter(prefix="/v1", dependencies=[Depends(guard)], tags=["scoring"])

    def deadline(timeout: float | None) -> float:
        return min(timeout or config.request_timeout, config.request_timeout)

    async def run(work: Any) -> Any:
        """Await the service, turning overload and timeout into their HTTP answers."""
        try:
            return await work
        except Overloaded as exc:
            raise HTTPException(503, str(exc), headers={"Retry-After": str(exc.retry_after)}) from exc
        except asyncio.TimeoutError as exc:
            raise HTTPException(504, "the request did not finish within its time limit") from exc

    @router.post("/score", summary="score images", openapi_extra=OPENAPI_BODY)
    async def score(
        request: Request,
        full: bool | None = Query(None, description="MetaVoter + 12 dimensions; false: the one-pass score"),
        timeout: float | None = TIMEOUT,
    ) -> dict[str, Any]:
        try:
            mode = service.mode(full)
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from exc
        images = await read_images(request, max_images=config.max_images, root=root)
        results = await run(service.score(images, mode, deadline(timeout)))
        return {
            "model": scorer.config.name,
            "scale": list(scorer.scale),
            "mode": "full" if mode else "fast",
            "results": [result.to_row() for result in results],
        }

    @router.post("/annotate", summary="the 12-line text annotation of images", openapi_extra=OPENAPI_BODY)
    async def annotate(
        request: Request,
        max_new_tokens: int = Query(160, ge=1, le=1024, description="most tokens generated per image"),
        timeout: float | None = TIMEOUT,
    ) -> dict[str, Any]:
        images = await read_images(request, max_images=config.max_images, root=root)
        notes = await run(service.annotate(images, max_new_tokens, deadline(timeout)))
        return {"model": scorer.config.name, "results": [dataclasses.asdict(note) for note in notes]}

    @router.get("/model", summary="the model: name, scale, heads, preprocessing, weights, versions")
    async def model() -> dict[str, Any]:
        return await asyncio.to_thread(service.model_info)  # the first call may hash the weights

    app.include_router(router)
    return app
