"""What a person decides while reviewing, as an append-only log that a crash cannot corrupt.

Each decision is one JSON line appended to the log and fsync'd before the page hears it was saved, so a closed
tab, a killed server or a power cut loses at most the decision in flight. Nothing is ever rewritten: undo is an
event of its own, and the state (each image's decision, each pair's pick) is a replay of the log, which is how
the next `beholder review` resumes. One process writes a log at a time (flock); a line torn by a crash mid-write
(the only damage an append can suffer) is dropped when the log is next opened.

Events, one JSON object a line, `event` saying which (KEY: an image's path as its score table writes it):

    {"event": "start",    "time": T, "mode": "review" | "ab", "sources": [...], "criteria": {...}, "version": V}
    {"event": "decision", "time": T, "path": KEY, "decision": "keep" | "reject" | "star"}
    {"event": "pick",     "time": T, "group": G, "a": KEY, "b": KEY, "pick": "A" | "B" | "tie"}
    {"event": "undo",     "time": T}      withdraws the latest decision or pick still in force
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, get_args

from beholder.errors import BeholderError, UsageError
from beholder.files import fsync

Mode = Literal["review", "ab"]
Decision = Literal["keep", "reject", "star"]
Pick = Literal["A", "B", "tie"]
DECISIONS: tuple[str, ...] = get_args(Decision)
PICKS: tuple[str, ...] = get_args(Pick)
_KIND = {"review": "decision", "ab": "pick"}  # the event a log of each mode holds


class DecisionLogError(BeholderError):
    """A log that cannot be used: another review holds it, or a line in it is not an event."""


def event_key(event: dict[str, Any]) -> tuple[str, ...]:
    """What an event decides about: an image (its path) or a pair (its group and both paths)."""
    if event["event"] == "decision":
        return (event["path"],)
    return (json.dumps(event["group"]), event["a"], event["b"])


class ReviewState:
    """The replayed state of a log: the events in force, and for each image or pair its current one."""

    def __init__(self, mode: Mode):
        self.mode = mode
        self._in_force: list[dict[str, Any]] = []  # decisions or picks not withdrawn, oldest first
        self._by_key: dict[tuple[str, ...], list[dict[str, Any]]] = {}  # each key's events in force

    def apply(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """Apply one event; an undo returns the event it withdrew (None when there was nothing to undo)."""
        kind = event.get("event")
        if kind == "start":
            if event.get("mode") != self.mode:
                held = "A/B picks" if event.get("mode") == "ab" else "review decisions"
                raise UsageError(f"this decisions file holds {held}: give another --decisions file")
            return None
        if kind == "undo":
            if not self._in_force:
                return None
            withdrawn = self._in_force.pop()
            self._by_key[event_key(withdrawn)].pop()
            return withdrawn
        if kind != _KIND[self.mode]:
            raise DecisionLogError(f"not a {_KIND[self.mode]} event: {event!r}")
        self._in_force.append(event)
        self._by_key.setdefault(event_key(event), []).append(event)
        return None

    def current(self, key: tuple[str, ...]) -> dict[str, Any] | None:
        """The event in force for an image or pair, None when undecided."""
        events = self._by_key.get(key)
        return events[-1] if events else None

    def decided(self) -> dict[tuple[str, ...], dict[str, Any]]:
        """Every decided image or pair and its event in force."""
        return {key: events[-1] for key, events in self._by_key.items() if events}

    @property
    def latest(self) -> dict[str, Any] | None:
        """The most recent event in force: where the person was."""
        return self._in_force[-1] if self._in_force else None


def read_state(path: str | os.PathLike, mode: Mode) -> ReviewState:
    """Replay a log without taking it (e.g. for `beholder select --decisions`)."""
    state = ReviewState(mode)
    for event in _events(Path(path).read_bytes(), path):
        state.apply(event)
    return state


def read_decisions(path: str | os.PathLike) -> dict[str, str]:
    """A review log's current decisions: {image key as its table writes it: keep | reject | star}."""
    return {key[0]: event["decision"] for key, event in read_state(path, "review").decided().items()}


class DecisionLog:
    """The log a running review appends to: opened (created if need be) and locked for this process, replayed,
    and marked with a start event that records what was reviewed."""

    def __init__(self, path: str | os.PathLike, mode: Mode, *, start: dict[str, Any] | None = None):
        self.path = Path(path)
        self.state = ReviewState(mode)
        self.lock = threading.RLock()  # held while the state changes; hold it to read the state from other threads
        created = not self.path.exists()
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise DecisionLogError(f"{self.path}: another beholder review is writing it") from None
            if created:
                fsync(self.path.parent)
            for event in _events(self._read_and_repair(), self.path):
                self.state.apply(event)
            self._append({"event": "start", "mode": mode, **(start or {})})
        except BaseException:
            self.close()
            raise

    def _read_and_repair(self) -> bytes:
        """The log's complete lines; a torn last line (no newline: the write a crash cut) is cut off the file."""
        data = self.path.read_bytes()
        complete = data[: data.rfind(b"\n") + 1]
        if len(complete) < len(data):
            os.ftruncate(self._fd, len(complete))
            os.fsync(self._fd)
        return complete

    def decide(self, path: str, decision: str) -> dict[str, Any]:
        """Record `decision` (keep | reject | star) for the image whose key text is `path`."""
        if decision not in DECISIONS:
            raise UsageError(f"decision must be one of {', '.join(DECISIONS)}, not {decision!r}")
        return self._record({"event": "decision", "path": path, "decision": decision})

    def pick(self, group: Any, a: str, b: str, pick: str) -> dict[str, Any]:
        """Record which image of pair (a, b) in `group` the person preferred: A, B or a tie."""
        if pick not in PICKS:
            raise UsageError(f"pick must be one of {', '.join(PICKS)}, not {pick!r}")
        return self._record({"event": "pick", "group": group, "a": a, "b": b, "pick": pick})

    def undo(self) -> dict[str, Any] | None:
        """Withdraw the latest decision or pick still in force; returns it (None when there is none)."""
        with self.lock:
            if self.state.latest is None:
                return None
            event = self._append({"event": "undo"})
            return self.state.apply(event)

    def _record(self, event: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            event = self._append(event)
            self.state.apply(event)
            return event

    def _append(self, event: dict[str, Any]) -> dict[str, Any]:
        """Write one event as one line with one write(), and make it durable before returning."""
        event = {"event": event["event"], "time": _now(), **event}
        line = json.dumps(event, ensure_ascii=False).encode("utf-8", "backslashreplace") + b"\n"
        os.write(self._fd, line)
        os.fsync(self._fd)
        return event

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # releases the flock
            self._fd = -1

    def __enter__(self) -> DecisionLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _events(data: bytes, path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    for number, line in enumerate(data.decode("utf-8", "surrogateescape").splitlines(), 1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DecisionLogError(f"{path}:{number}: not a JSON event: {exc}") from None
        if not isinstance(event, dict) or "event" not in event:
            raise DecisionLogError(f"{path}:{number}: not an event (no 'event' field)")
        yield event


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")

