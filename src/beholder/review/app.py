"""The review page's server: a JSON API and the static page, on the web stack of `beholder serve`.

    GET  /                              the page (HTML, CSS and JS shipped with beholder: nothing from the network)
    GET  /api/session                   the rows (or pairs) under review and the decisions so far
    GET  /api/rows/{id}                 every column of a row (review mode; A/B is blind)
    GET  /api/images/{id}/{rendition}   a row's image as a JPEG: thumb (grid) or preview (large view)
    POST /api/decisions                 {"row": id, "decision": "keep" | "reject" | "star"}
    POST /api/picks                     {"pair": id, "side": "left" | "right" | "tie"}
    POST /api/undo                      withdraws the latest decision or pick
    GET  /api/report                    the review's summary, or the A/B preference report
    GET  /api/export.{csv|jsonl|parquet} the decisions as a table keyed by path

Images are named by row id only: no request can name a file, so the page shows the images under review and
nothing else. With a key (`--api-key-file`), nothing but the health probes answers a browser that was not let in
with it, or a client that does not send it (serve.security.BrowserKeyGate). Writes take JSON bodies only (a page
on another site cannot send one without a CORS preflight, which is refused), on a loopback address only loopback
host names are answered (no DNS rebinding), and the page's content security policy lets it load nothing from
anywhere but this server, nor be framed by another site.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, FastAPI, HTTPException
from pydantic import BaseModel
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.responses import HTMLResponse, Response

from beholder.io import write_table
from beholder.review.decisions import Decision, DecisionLog
from beholder.review.page import ASSETS, asset, page_html
from beholder.review.pairs import PairSession, Side
from beholder.review.report import preference_report, review_summary
from beholder.review.session import ReviewSession
from beholder.review.thumbnails import RENDITIONS, Thumbnails
from beholder.serve.config import is_loopback
from beholder.serve.metrics import HttpMetrics
from beholder.serve.security import ApiKey, BrowserKeyGate, require_api_key
from beholder.serve.web import create_web_app
from beholder.version import __version__

LOOPBACK_NAMES = ("127.0.0.1", "localhost")
MAX_REQUEST_BYTES = 64 * 1024  # a decision is a few dozen bytes
# The page may load its own script, style and images and talk to this server, nothing else; no site may frame it.
PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
TABLE_MEDIA = {"csv": "text/csv", "jsonl": "application/x-ndjson", "parquet": "application/vnd.apache.parquet"}


class DecisionBody(BaseModel):
    row: int
    decision: Decision


class PickBody(BaseModel):
    pair: int
    side: Side


def create_review_app(
    session: ReviewSession | PairSession,
    log: DecisionLog,
    thumbnails: Thumbnails,
    *,
    host: str = "127.0.0.1",
    key: ApiKey | None = None,
) -> FastAPI:
    """The review app for `session`, recording into `log`; `host` is the address it is served on; `key`: the page
    and its API only for browsers let in with it (BrowserKeyGate) and clients that send it."""
    app = create_web_app(
        title="beholder review",
        version=__version__,
        metrics=HttpMetrics(),
        guard=require_api_key(None),
        max_request_bytes=MAX_REQUEST_BYTES,
        description="Review images of a score table; decisions are saved as they are made.",
    )
    if key is not None:
        app.add_middleware(BrowserKeyGate, key=key)
    if is_loopback(host) and ":" not in host:  # (Starlette reads no IPv6 Host header)
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=sorted({host, *LOOPBACK_NAMES}))
    api = APIRouter(prefix="/api", tags=["review"])

    @app.get("/", include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page_html(), headers={"Cache-Control": "no-store", "Content-Security-Policy": PAGE_POLICY})

    @app.get("/assets/{name}", include_in_schema=False)
    async def assets(name: str) -> Response:
        if name not in ASSETS:
            raise HTTPException(404, "no such asset")
        return Response(asset(name), media_type=ASSETS[name], headers={"Cache-Control": "no-cache"})

    @api.get("/session", summary="the rows or pairs under review, and the decisions so far")
    def page() -> dict[str, Any]:
        with log.lock:
            return session.page(log.state)

    @api.get("/images/{row_id}/{rendition}", summary="a row's image as a JPEG", response_class=Response)
    def image(row_id: int, rendition: Literal["thumb", "preview"]) -> Response:
        try:
            where = session.image(row_id)
        except KeyError:
            raise HTTPException(404, f"no row {row_id} under review") from None
        try:
            data = thumbnails.get(where, RENDITIONS[rendition])
        except (OSError, ValueError) as exc:  # gone since it was scored, or unreadable (ImageError)
            raise HTTPException(404, f"cannot read row {row_id}'s image: {exc}") from None
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=600"})

    @api.post("/undo", summary="withdraw the latest decision or pick")
    def undo() -> dict[str, Any]:
        with log.lock:
            event = log.undo()
            return {"undone": None if event is None else session.describe(event, log.state)}

    @api.get("/report", summary="the review's summary, or the A/B preference report")
    def report() -> dict[str, Any]:
        with log.lock:
            if isinstance(session, PairSession):
                return preference_report(session, log.state).to_dict()
            return review_summary(session, log.state).to_dict()

    @api.get("/export.{fmt}", summary="the decisions as a table keyed by path")
    def export(fmt: Literal["csv", "jsonl", "parquet"]) -> Response:
        with log.lock:
            table = session.decisions_table(log.state)
        data = _table_bytes(table, fmt)
        name = f"{log.path.stem}.{fmt}"
        return Response(data, media_type=TABLE_MEDIA[fmt],
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})  # fmt: skip

    if isinstance(session, PairSession):
        _pair_routes(api, session, log)
    else:
        _review_routes(api, session, log)
    app.include_router(api)
    return app


def _review_routes(api: APIRouter, session: ReviewSession, log: DecisionLog) -> None:
    @api.get("/rows/{row_id}", summary="every column of a row")
    async def row(row_id: int) -> dict[str, Any]:
        try:
            return session.row(row_id)
        except KeyError:
            raise HTTPException(404, f"no row {row_id} under review") from None

    @api.post("/decisions", summary="record a decision on a row")
    def decide(body: DecisionBody) -> dict[str, Any]:
        if body.row not in range(len(session.rows)):
            raise HTTPException(404, f"no row {body.row} under review")
        event = log.decide(session.rows.paths[body.row], body.decision)
        return {"row": body.row, "decision": body.decision, "time": event["time"]}


def _pair_routes(api: APIRouter, session: PairSession, log: DecisionLog) -> None:
    @api.post("/picks", summary="record which side of a pair is better, or a tie")
    def pick(body: PickBody) -> dict[str, Any]:
        if body.pair not in range(len(session.pairs)):
            raise HTTPException(404, f"no pair {body.pair} under review")
        pair = session.pairs[body.pair]
        event = log.pick(pair.group, pair.a_path, pair.b_path, pair.pick(body.side))
        return {"pair": pair.id, "side": body.side, "time": event["time"]}


def _table_bytes(table: Any, fmt: str) -> bytes:
    with tempfile.TemporaryDirectory(prefix="beholder-export-") as folder:
        path = Path(folder) / f"decisions.{fmt}"
        write_table(path, table)
        return path.read_bytes()
