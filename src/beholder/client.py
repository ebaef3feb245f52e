"""Call a `beholder serve` service from Python, or score through one with the local pipeline.

    from beholder.client import Client
    with Client("http://127.0.0.1:8000") as client:
        results = client.score(["a.jpg", "b.png"])   # one ScoreResult per image, in order
        print(results[0].score, client.model()["scale"])

`RemoteScorer` has the part of the Scorer interface that `beholder.pipeline` uses, so `beholder score --server
URL` and `beholder annotate --server URL` run the same pipeline (inputs, outputs, provenance, resume) with the
model on the server. Needs httpx (the `serve` extra).
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
from PIL import Image

from beholder.images import ImageError, ImageSource
from beholder.pipeline import ModelFailure
from beholder.results import Annotation, ScoreResult

_IMAGE_ERROR = "ImageError: "  # how a row says an image could not be decoded ("Type: message")
T = TypeVar("T")


class ServerError(ConnectionError):
    """The server refused or failed a request, or could not be reached. `status` is None when unreachable."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class Client:
    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        timeout: float = 300.0,
        retry_seconds: float = 120.0,
        transport: httpx.BaseTransport | None = None,
    ):
        """url: where `beholder serve` listens. api_key: sent as `Authorization: Bearer KEY`. timeout: seconds
        to wait for an answer. retry_seconds: how long to keep retrying a busy server (503, after the
        Retry-After it asks for) before giving up."""
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.retry_seconds = retry_seconds
        self._http = httpx.Client(
            base_url=self.url, headers=headers, timeout=httpx.Timeout(timeout, connect=10.0), transport=transport
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # ---- the API -----------------------------------------------------------------------------------------

    def model(self) -> dict[str, Any]:
        """Name, scale, heads, preprocessing, weights sha256, versions and provenance of the served model."""
        return self._request("GET", "/v1/model")

    def ready(self) -> bool:
        try:
            return self._http.get("/readyz").status_code == 200
        except httpx.HTTPError:
            return False

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready():
            if time.monotonic() > deadline:
                raise ServerError(f"{self.url} was not ready within {timeout:g} s")
            time.sleep(0.1)

    def score(self, images: Iterable[ImageSource], *, full: bool | None = None) -> list[ScoreResult]:
        """Score images (local paths, bytes or PIL images), uploaded in one request: one result per image, in
        order. A local file that cannot be read is a row with its error, as with `Scorer.score`."""
        return self._send(images, "/v1/score", _mode(full), ScoreResult.from_row, ScoreResult.failed)

    def score_paths(self, paths: Sequence[str], *, full: bool | None = None) -> list[ScoreResult]:
        """Score files the server reads itself, named relative to its --allow-root."""
        body = self._request("POST", "/v1/score", params=_mode(full), json={"images": [{"path": p} for p in paths]})
        return [ScoreResult.from_row(row) for row in body["results"]]

    def annotate(self, images: Iterable[ImageSource], *, max_new_tokens: int = 160) -> list[dict[str, Any]]:
        """The 12-line annotation of each image: rows of path, text, levels (dimension -> level), error."""

        def failed(path: str, exc: ImageError) -> dict[str, Any]:
            return {"path": path, "text": None, "levels": {}, "error": f"{type(exc).__name__}: {exc}"}

        return self._send(images, "/v1/annotate", {"max_new_tokens": max_new_tokens}, dict, failed)

    # ---- transport ---------------------------------------------------------------------------------------

    def _send(
        self,
        images: Iterable[ImageSource],
        endpoint: str,
        params: dict[str, Any],
        answered: Callable[[dict[str, Any]], T],
        failed: Callable[[str, ImageError], T],
    ) -> list[T]:
        """Upload the readable images in one request; rows for all of them in order, `failed` for the others."""
        uploads: list[Upload | tuple[str, ImageError]] = []
        for image in images:
            try:
                uploads.append(Upload.of(image))
            except ImageError as exc:
                uploads.append((str(image), exc))
        sendable = [u for u in uploads if isinstance(u, Upload)]
        rows = iter(self.upload(endpoint, sendable, params) if sendable else ())
        return [answered(next(rows)) if isinstance(u, Upload) else failed(*u) for u in uploads]

    def upload(self, endpoint: str, uploads: Sequence[Upload], params: dict[str, Any]) -> list[dict[str, Any]]:
        """POST files to an endpoint of the API; its result rows, each with the path of its Upload."""
        files = [("image", (os.path.basename(u.path or f"image-{i}"), u.data)) for i, u in enumerate(uploads)]
        rows = self._request("POST", endpoint, params=params, files=files)["results"]
        return [{**row, "path": u.path} for u, row in zip(uploads, rows, strict=True)]

    def _request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """The JSON answer; a busy server (503) is retried after the Retry-After it asks for."""
        give_up = time.monotonic() + self.retry_seconds
        while True:
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.HTTPError as exc:
                raise ServerError(f"{self.url}{path}: {type(exc).__name__}: {exc}") from exc
            if response.status_code == 503:
                wait = _retry_after(response)
                if time.monotonic() + wait <= give_up:
                    time.sleep(wait)
                    continue
            if response.is_success:
                return response.json()
            raise ServerError(f"{self.url}{path}: {response.status_code} {_detail(response)}", response.status_code)


@dataclass(frozen=True)
class Upload:
    """One image as sent: encoded bytes, and the path its row gets back (the file as the caller named it)."""

    path: str | None
    data: bytes

    @classmethod
    def of(cls, source: ImageSource, path: str | None = None) -> Upload:
        """A file's bytes, bytes as they are, a PIL image as PNG (lossless); ImageError for an unreadable file."""
        if isinstance(source, Image.Image):
            buffer = io.BytesIO()
            source.save(buffer, "PNG")
            return cls(path, buffer.getvalue())
        if isinstance(source, (bytes, bytearray, memoryview)):
            return cls(path, bytes(source))
        try:
            return cls(path or str(source), Path(source).read_bytes())
        except OSError as exc:
            raise ImageError(f"cannot open {source}: {exc.strerror or exc}") from exc


def _mode(full: bool | None) -> dict[str, str]:
    return {} if full is None else {"full": "true" if full else "false"}


def _retry_after(response: httpx.Response) -> float:
    value = response.headers.get("Retry-After", "1")
    return float(value) if value.replace(".", "", 1).isdigit() else 1.0


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail", response.text))
    except ValueError:
        return response.text[:500]


# ---------------------------------------------------------------------------------------------------------------
# The pipeline's scorer, remote


@dataclass(frozen=True)
class RemoteItem:
    """One image the server has answered: its row, or why the server could not answer (stops the run)."""

    path: str | None
    result: ScoreResult | Annotation | None = None
    failure: ServerError | None = None


class ServerUnavailable(ModelFailure):
    """The server stopped answering during a run: rows so far are kept and the same command resumes."""


class RemoteScorer:
    """The Scorer interface `beholder.pipeline` uses for scoring or annotating, backed by a server.

    `prepare`, which the pipeline runs in its decode threads, uploads the image and waits for its row (a score, or
    with `annotate_tokens` an annotation): the decode threads are the requests in flight, and the server batches
    them together. An image the server cannot decode raises ImageError there, as `Scorer.prepare` does locally,
    so such rows count as bad inputs, not model failures. `score_prepared` / `annotate_prepared` hand back the
    rows; if the server failed, they raise ServerUnavailable, which stops the run with the rows so far saved.
    """

    def __init__(self, client: Client, *, full: bool | None = None, annotate_tokens: int | None = None):
        """full: the scoring mode of every request (None: full when the model has the heads). annotate_tokens:
        annotate instead (the server's greedy annotation), at most this many new tokens per image."""
        info = client.model()
        self.client = client
        self.has_full: bool = info["full"]
        self.full = self.has_full if full is None else full
        self.annotates: bool = info.get("annotates", False)
        self.annotate_tokens = annotate_tokens
        if annotate_tokens is None and self.full and not self.has_full:
            raise ValueError(f"{client.url}: full scoring needs the Expert head and the MetaVoter, which model "
                             f"{info['name']!r} does not have; use fast scoring")
        if annotate_tokens is not None and not self.annotates:
            raise ValueError(f"{client.url}: model {info['name']!r} has no language model to annotate with")
        self.scale: tuple[float, float] = tuple(info["scale"])  # type: ignore[assignment]
        self.source = client.url  # how the user named the model
        self.provenance: dict[str, Any] = {**info["provenance"], "source": client.url}

    def prepare(self, source: ImageSource, path: str | None = None) -> RemoteItem:
        sent = Upload.of(source, path)  # ImageError: an unreadable file
        annotating = self.annotate_tokens is not None
        if annotating:
            endpoint, params = "/v1/annotate", {"max_new_tokens": self.annotate_tokens}
        else:
            endpoint, params = "/v1/score", _mode(self.full)
        try:
            [row] = self.client.upload(endpoint, [sent], params)
        except ServerError as exc:
            if exc.status == 413:  # this one image is over the server's size limit
                raise ImageError(f"too large for the server: {exc}") from exc
            return RemoteItem(path, failure=exc)
        result = Annotation(**row) if annotating else ScoreResult.from_row(row)
        if result.error is not None and result.error.startswith(_IMAGE_ERROR):
            raise ImageError(result.error.removeprefix(_IMAGE_ERROR))
        return RemoteItem(path, result=result)

    def full_scoring(self, full: bool | None) -> bool:
        """The scoring mode, fixed when this scorer was made (prepare already scores); asking another is an error."""
        if full is not None and full != self.full:
            raise ValueError(f"this RemoteScorer was made for {'full' if self.full else 'fast'} scoring")
        return self.full

    def batch_key(self, item: RemoteItem) -> tuple:
        return ()  # the server groups images by shape

    def score_prepared(
        self, items: Sequence[RemoteItem], *, full: bool | None = None, batch_size: int | None = None
    ) -> list[ScoreResult]:
        self.full_scoring(full)
        return self._answers(items)

    def annotate_prepared(
        self, items: Sequence[RemoteItem], *, batch_size: int | None = None, max_new_tokens: int = 160,
        do_sample: bool = False,
    ) -> list[Annotation]:
        """The annotations `prepare` fetched; other generation settings than it asked for are an error."""
        if self.annotate_tokens != max_new_tokens or do_sample:
            raise ValueError(f"this RemoteScorer annotates greedily with max_new_tokens={self.annotate_tokens}")
        return self._answers(items)

    def _answers(self, items: Sequence[RemoteItem]) -> list:
        """The rows `prepare` fetched, in order; ServerUnavailable if the server failed any of them."""
        for item in items:
            if item.failure is not None:
                raise ServerUnavailable(
                    f"{item.failure}; the rows before are saved: run the same command again to resume"
                ) from item.failure
        return [item.result for item in items]  # type: ignore[misc]
