"""Prometheus metrics: the HTTP series every beholder web app has, and the scoring service's own.

Each app gets a registry of its own (not prometheus-client's global one), so several apps can live in one
process. Names follow Prometheus conventions: `beholder_` prefix, `_total` on counters, base units (seconds).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

NAMESPACE = "beholder"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
# Kinds of error the `errors_total` counter is labelled with, by HTTP status of a refused request.
ERROR_KINDS = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
    413: "too_large", 415: "unsupported_media_type", 500: "internal", 503: "overloaded", 504: "timeout",
}


class HttpMetrics:
    """Requests by route and status, latency by route, errors by kind, on a registry of this app's own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        common = dict(namespace=NAMESPACE, registry=self.registry)
        self.requests = Counter("http_requests", "HTTP requests answered", ["route", "status"], **common)
        self.latency = Histogram(
            "http_request_duration_seconds", "time to answer a request", ["route"], buckets=LATENCY_BUCKETS,
            **common,
        )
        self.errors = Counter("errors", "errors, by kind (refused requests and failed images)", ["kind"], **common)

    def observe(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(route, str(status)).inc()
        self.latency.labels(route).observe(seconds)
        if status >= 400:
            self.errors.labels(ERROR_KINDS.get(status, f"http_{status}")).inc()

    def response(self) -> Response:
        """The exposition page for GET /metrics."""
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


class MetricsMiddleware:
    """Times every HTTP request and records it under its route template (unmatched paths share one label)."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client sees if the app fails before answering

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")  # set by the router on the (shared) scope when a route matched
            self.metrics.observe(getattr(route, "path", "unmatched"), status, time.perf_counter() - started)


class ScoringMetrics:
    """The scoring service's series: model batches, queue depth, images answered and images that failed."""

    def __init__(self, http: HttpMetrics, queued: Callable[[], float], admitted: Callable[[], float]):
        common = dict(namespace=NAMESPACE, registry=http.registry)
        self.errors = http.errors
        self.batch_size = Histogram(
            "batch_size", "images per model call", buckets=BATCH_SIZE_BUCKETS, **common
        )
        self.batch_seconds = Histogram(
            "batch_duration_seconds", "time of one model call", buckets=LATENCY_BUCKETS, **common
        )
        self.images = Counter("images", "images the model answered, by task: full | fast | annotate", ["task"],
                              **common)
        Gauge("queue_depth", "images waiting for the model", **common).set_function(queued)
        Gauge("images_in_progress", "images admitted and not yet answered", **common).set_function(admitted)

    def batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)

    def image_failed(self, stage: str) -> None:
        """An image answered with an error row; stage: "decode" or "model"."""
        self.errors.labels(f"image_{stage}").inc()
