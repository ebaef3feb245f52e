"""ScoringService: a request's images -> decoded in a thread pool -> batched across requests -> result rows.

Decoding (`Scorer.prepare`) runs in `decode_workers` threads; prepared images go to the BatchEngine keyed by
(task, `Scorer.batch_key`), so one model call only ever holds images of one shape and one task (full or fast
scoring, or annotation with one token budget). The model runs on the engine's single thread, which also runs
the warm-up, so the model is never used by two threads at once. An image that fails anywhere becomes a row
with its error; only the request as a whole can be refused (overload) or time out.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from PIL import Image

from beholder.results import ScoreResult
from beholder.scoring import Annotation, PreparedImage, Scorer
from beholder.serve.batching import BatchEngine
from beholder.serve.config import ServeConfig
from beholder.serve.inputs import ImageInput
from beholder.serve.metrics import HttpMetrics, ScoringMetrics

log = logging.getLogger("beholder.serve")
T = TypeVar("T", ScoreResult, Annotation)


class ScoringService:
    def __init__(self, scorer: Scorer, config: ServeConfig, http_metrics: HttpMetrics):
        self.scorer, self.config = scorer, config
        self.default_full = scorer.full_scoring(config.full)
        self.metrics = ScoringMetrics(
            http_metrics, queued=lambda: self.engine.queued, admitted=lambda: self.engine.admitted
        )
        self.engine = BatchEngine(
            self._run_batch,
            max_batch=config.max_batch,
            max_wait=config.max_wait_ms / 1000,
            capacity=config.max_queue,
            on_batch=self.metrics.batch,
        )
        self._pool = ThreadPoolExecutor(config.decode_workers, thread_name_prefix="beholder-decode")
        self.ready = False  # set once the warm-up batch has run

    # ---- life cycle --------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the model thread; the warm-up batch runs on it first, then /readyz says ready."""
        self.engine.start()
        self.engine.call(self._warm_up)

    def stop(self) -> None:
        """Drain: everything admitted is answered, then the threads stop."""
        self.engine.close()
        self._pool.shutdown(wait=True)

    def _warm_up(self) -> None:
        """On the model thread: hash the weights (for /v1/model) and score one image; then ready."""
        try:
            self.scorer.provenance  # noqa: B018 (a cached property: computed here, not in a request)
            side = self.scorer.config.preprocess.image_size
            prepared = self.scorer.prepare(Image.new("RGB", (side, side), (128, 128, 128)))
            [result] = self.scorer.score_prepared([prepared], full=self.default_full)
            if not result.ok:
                raise RuntimeError(result.error)
        except Exception:
            log.exception("warm-up failed: /readyz stays 503")
            return
        self.ready = True

    # ---- what the API offers -----------------------------------------------------------------------------

    def mode(self, full: bool | None) -> bool:
        """The scoring mode of a request: full (MetaVoter + 12 dimensions) or fast; ValueError if impossible."""
        return self.scorer.full_scoring(self.default_full if full is None else full)

    def model_info(self) -> dict[str, Any]:
        provenance = {k: v for k, v in self.scorer.provenance.items() if k != "source"}  # a server-side path
        return {
            "name": self.scorer.config.name,
            "scale": list(self.scorer.scale),
            "full": self.scorer.has_full,
            "annotates": self.scorer.annotates,
            "default_mode": "full" if self.default_full else "fast",
            "heads": dataclasses.asdict(self.scorer.config.heads),
            "preprocess": provenance["preprocess"],
            "weights_sha256": provenance["weights_sha256"],
            "version": provenance["beholder_version"],
            "provenance": provenance,
        }

    async def score(self, images: Sequence[ImageInput], full: bool, timeout: float) -> list[ScoreResult]:
        """One result per image, in order. Raises Overloaded (no room) or asyncio.TimeoutError."""
        return await self._run(images, ("full" if full else "fast", None), ScoreResult, timeout)

    async def annotate(self, images: Sequence[ImageInput], max_new_tokens: int, timeout: float) -> list[Annotation]:
        """The 12-line annotation of each image (greedy), in order; batched across requests like scoring."""
        return await self._run(images, ("annotate", max_new_tokens), Annotation, timeout)

    async def _run(
        self, images: Sequence[ImageInput], task: tuple[str, Any], result: type[T], timeout: float
    ) -> list[T]:
        """Every image decoded and run through the model as `task`, within room reserved for them all and within
        `timeout` seconds (on timeout, images not yet in the model are dropped from the queue)."""
        with self.engine.admit(len(images)):
            work = (self._run_one(image, task, result) for image in images)
            return await asyncio.wait_for(asyncio.gather(*work), timeout)

    async def _run_one(self, image: ImageInput, task: tuple[str, Any], result: type[T]) -> T:
        prepared = await asyncio.get_running_loop().run_in_executor(self._pool, self._prepare, image)
        if isinstance(prepared, str):
            self.metrics.image_failed("decode")
            return result(image.name, error=prepared)
        try:
            answer = await asyncio.wrap_future(self.engine.submit((*task, self.scorer.batch_key(prepared)), prepared))
        except Exception as exc:  # the model call failed as a whole
            answer = result(image.name, error=f"{type(exc).__name__}: {exc}")
        if answer.ok:
            self.metrics.images.labels(task[0]).inc()
        else:
            self.metrics.image_failed("model")
        return answer

    def _prepare(self, image: ImageInput) -> PreparedImage | str:
        """The decoded image, or why it could not be decoded ("ErrorType: message")."""
        try:
            return self.scorer.prepare(image.read(), path=image.name)
        except Exception as exc:  # whatever stops one image from decoding is that image's row
            return f"{type(exc).__name__}: {exc}"

    # ---- on the model thread -----------------------------------------------------------------------------

    def _run_batch(self, key: Hashable, items: list[PreparedImage]) -> list[ScoreResult] | list[Annotation]:
        """One model call; key: (task, its option, batch key): ("full" | "fast", None, ...) or
        ("annotate", max_new_tokens, ...)."""
        task, option, _ = key  # type: ignore[misc]
        if task == "annotate":
            return self.scorer.annotate_prepared(items, max_new_tokens=option)
        return self.scorer.score_prepared(items, full=task == "full")
