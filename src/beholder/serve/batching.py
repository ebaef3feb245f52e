"""Dynamic batching: items from many requests, grouped by key, run by one worker thread that owns the model.

An item waits in the group of its key (items of one key can share a model call: same tile count or patch
grid, same scoring mode). The worker takes a group when it holds `max_batch` items or its oldest item has
waited `max_wait` seconds, oldest group first, and answers each item's Future. Callables submitted with `call`
(warm-up, annotation) run on the same thread between batches, so the model is only ever used by one thread.

Admission bounds memory: a request reserves room for its images before they are decoded, and is refused at
once (`Overloaded`) when the engine already holds `capacity` images. Closing drains: nothing new is admitted,
everything queued is run without waiting for fuller batches, then the worker stops.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

RunBatch = Callable[[Hashable, list[Any]], Sequence[Any]]  # (key, items) -> one result per item, in order


class Overloaded(RuntimeError):
    """No room for more images: the client should retry after `retry_after` seconds."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


@dataclass
class _Entry:
    item: Any
    future: Future
    queued_at: float  # time.monotonic() when submitted


class BatchEngine:
    def __init__(
        self,
        run_batch: RunBatch,
        *,
        max_batch: int,
        max_wait: float,
        capacity: int,
        on_batch: Callable[[int, float], None] | None = None,
        name: str = "beholder-model",
    ):
        """run_batch: called on the worker thread with one key and at most `max_batch` items of that key.
        max_wait: seconds a partial batch waits for more items. capacity: most images admitted at once.
        on_batch: told (batch size, seconds) after every model call, for metrics."""
        self._run_batch, self.max_batch, self.max_wait, self.capacity = run_batch, max_batch, max_wait, capacity
        self._on_batch = on_batch
        self._groups: dict[Hashable, deque[_Entry]] = {}  # key -> entries, oldest first
        self._calls: deque[tuple[Callable[[], Any], Future]] = deque()
        self._admitted = 0
        self._queued = 0
        self._seconds_per_image = 0.0  # moving average, for Retry-After
        self._closed = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)

    # ---- the request side ----------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    @property
    def admitted(self) -> int:
        """Images admitted and not yet answered (decoding, queued or in the model)."""
        return self._admitted

    @property
    def queued(self) -> int:
        """Items waiting for the worker."""
        return self._queued

    @contextmanager
    def admit(self, n: int) -> Iterator[None]:
        """Reserve room for n images for the duration of the block; Overloaded when there is none."""
        with self._cond:
            if self._closed:
                raise Overloaded("the server is shutting down", retry_after=1)
            if self._admitted + n > self.capacity:
                wait = max(1, round(self._admitted * self._seconds_per_image))
                raise Overloaded(f"busy: {self._admitted} images in progress (room for {self.capacity})", wait)
            self._admitted += n
        try:
            yield
        finally:
            with self._cond:
                self._admitted -= n
                self._cond.notify()  # a draining worker stops once nothing is admitted

    def submit(self, key: Hashable, item: Any) -> Future:
        """Queue one item; its Future gets run_batch's result for it. Cancelling the Future drops the item."""
        future: Future = Future()
        with self._cond:
            if not self._thread.is_alive():
                raise RuntimeError("the batch engine is not running")
            self._groups.setdefault(key, deque()).append(_Entry(item, future, time.monotonic()))
            self._queued += 1
            self._cond.notify()
        return future

    def call(self, fn: Callable[[], Any]) -> Future:
        """Run fn on the worker thread (between batches); its Future gets the return value."""
        future: Future = Future()
        with self._cond:
            self._calls.append((fn, future))
            self._cond.notify()
        return future

    def close(self, timeout: float | None = None) -> None:
        """Admit nothing more; run everything queued, and whatever admitted requests still submit, without
        waiting for fuller batches; then stop the worker."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)

    # ---- the worker ----------------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._cond:
                task = self._next()
                while task is None:
                    if self._closed and not self._groups and not self._calls and not self._admitted:
                        return
                    self._cond.wait(self._until_due())
                    task = self._next()
            task()

    def _next(self) -> Callable[[], None] | None:
        """The next task, taken off the queue (called with the lock held), or None when nothing is due yet."""
        if self._calls:
            fn, future = self._calls.popleft()
            return lambda: _resolve(future, fn)
        now = time.monotonic()
        due = [
            (entries[0].queued_at, key)
            for key, entries in self._groups.items()
            if self._closed or len(entries) >= self.max_batch or now - entries[0].queued_at >= self.max_wait
        ]
        if not due:
            return None
        _, key = min(due, key=lambda pair: pair[0])  # the group whose oldest item has waited longest
        entries = self._groups[key]
        batch: list[_Entry] = []
        while entries and len(batch) < self.max_batch:
            entry = entries.popleft()
            self._queued -= 1
            if entry.future.set_running_or_notify_cancel():  # False: its request gave up (timed out)
                batch.append(entry)
        if not entries:
            del self._groups[key]
        return lambda: self._run(key, batch)

    def _until_due(self) -> float | None:
        """Seconds until the oldest partial group is due; None (wait for a notify) when nothing is queued."""
        if not self._groups:
            return None
        oldest = min(entries[0].queued_at for entries in self._groups.values())
        return max(0.0, oldest + self.max_wait - time.monotonic())

    def _run(self, key: Hashable, batch: list[_Entry]) -> None:
        if not batch:
            return
        started = time.perf_counter()
        try:
            results = self._run_batch(key, [entry.item for entry in batch])
        except Exception as exc:  # answered on every future of the batch; the worker carries on
            for entry in batch:
                entry.future.set_exception(exc)
            return
        seconds = time.perf_counter() - started
        for entry, result in zip(batch, results, strict=True):
            entry.future.set_result(result)
        self._seconds_per_image = 0.8 * self._seconds_per_image + 0.2 * seconds / len(batch)
        if self._on_batch is not None:
            self._on_batch(len(batch), seconds)


def _resolve(future: Future, fn: Callable[[], Any]) -> None:
    if not future.set_running_or_notify_cancel():
        return
    try:
        future.set_result(fn())
    except Exception as exc:
        future.set_exception(exc)
