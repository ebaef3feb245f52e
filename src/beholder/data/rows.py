"""Labels and training rows, and their official HumanBeauty jsonl forms (REFERENCE.md section 3).

Label row (one image):     {image_name, source, score: float | [12 floats], text_level, is_expert}
Training row (one QA pair): {query, response, history: [], images: [path], scores: [12 floats], is_expert: 0|1}
An overall-only image has scores = [0]*11 + [score] in its training row. Image paths are written relative to
the file's folder unless they are absolute, and read back resolved against it, so a dataset folder can move.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from beholder.files import atomic_write
from beholder.io.tables import TableError, read_jsonl
from beholder.standard import DIMENSIONS, score_to_level

OVERALL = DIMENSIONS.index("overall")
T = TypeVar("T")


@dataclass(frozen=True)
class Label:
    """One image's scores on the 12-dimension standard, in [0, 1]."""

    image: str  # image path: absolute, or relative to the folder of the file it is read from / written to
    source: str  # the labelled source it came from; normalisation and the train/test split are per source
    scores: tuple[float, ...]  # 12 scores in official order (expert), or just (overall,) (overall-only)

    def __post_init__(self) -> None:
        if len(self.scores) not in (1, len(DIMENSIONS)):
            raise ValueError(f"{self.image}: a label has 1 (overall) or 12 scores, not {len(self.scores)}")

    @property
    def is_expert(self) -> bool:
        return len(self.scores) == len(DIMENSIONS)

    @property
    def overall(self) -> float:
        return self.scores[-1]

    @property
    def key(self) -> str:
        """Identity for seeded choices (split, paraphrase): source and file name, the same on every machine."""
        return f"{self.source}/{os.path.basename(self.image)}"

    def to_official(self, folder: Path) -> dict[str, Any]:
        score: float | list[float] = list(self.scores) if self.is_expert else self.overall
        return {
            "image_name": _relative(self.image, folder),
            "source": self.source,
            "score": score,
            "text_level": score_to_level(self.overall),
            "is_expert": self.is_expert,
        }

    @classmethod
    def from_official(cls, row: dict[str, Any], folder: Path) -> Label:
        score = row["score"]
        scores = tuple(float(s) for s in score) if isinstance(score, list) else (float(score),)
        return cls(_resolve(row["image_name"], folder), str(row.get("source", "")), scores)


@dataclass(frozen=True)
class TrainingRow:
    """One question-answer pair about one image, with the scores its heads are supervised with."""

    query: str  # "<image>\n" + question; "" in the official files (the trainer then picks a paraphrase)
    response: str  # the answer text the LM head is trained on
    image: str  # image path (absolute, or relative to the file's folder)
    scores: tuple[float, ...]  # 12 floats, official order; overall-only rows: [0]*11 + [overall]
    is_expert: bool  # True: 12-dimension row (Expert head); False: overall-only row (regression head)

    @property
    def overall(self) -> float:
        return self.scores[OVERALL]

    def to_official(self, folder: Path) -> dict[str, Any]:
        return {
            "query": self.query,
            "response": self.response,
            "history": [],
            "images": [_relative(self.image, folder)],
            "scores": list(self.scores),
            "is_expert": int(self.is_expert),
        }

    @classmethod
    def from_official(cls, row: dict[str, Any], folder: Path) -> TrainingRow:
        images = row["images"]
        if len(images) != 1:
            raise ValueError(f"a training row has exactly one image, got {len(images)}")
        scores = tuple(float(s) for s in row["scores"])
        if len(scores) != len(DIMENSIONS):
            raise ValueError(f"{images[0]}: a training row has 12 scores, got {len(scores)}")
        return cls(row.get("query", ""), row["response"], _resolve(images[0], folder), scores, bool(row["is_expert"]))


def stable_hash(*parts: object) -> int:
    """A 64-bit hash of `parts` that, unlike hash(), is the same in every process and on every machine."""
    digest = hashlib.blake2b("\0".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _relative(path: str, folder: Path) -> str:
    """`path` relative to `folder` when it lies on the same drive, else absolute."""
    absolute = os.path.abspath(path)
    try:
        return os.path.relpath(absolute, os.path.abspath(folder))
    except ValueError:  # another drive (Windows)
        return absolute


def _resolve(path: str, folder: Path) -> str:
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(folder, path))


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict[str, Any]]) -> int:
    """Write rows atomically (a temporary file renamed over `path`): a rerun replaces, never appends."""
    count = 0
    with atomic_write(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count


def read_labels(path: str | os.PathLike) -> list[Label]:
    return _read_rows(path, Label.from_official)


def write_labels(path: str | os.PathLike, labels: Iterable[Label]) -> int:
    folder = Path(path).parent
    return write_jsonl(path, (label.to_official(folder) for label in labels))


def read_training_rows(path: str | os.PathLike) -> list[TrainingRow]:
    return _read_rows(path, TrainingRow.from_official)


def _read_rows(path: str | os.PathLike, parse: Callable[[dict[str, Any], Path], T]) -> list[T]:
    """Every row of an official jsonl file, parsed; a row that does not fit is an error naming its line."""
    folder = Path(path).parent
    rows = []
    for number, row in enumerate(read_jsonl(path), 1):
        try:
            rows.append(parse(row, folder))
        except (KeyError, TypeError, ValueError) as exc:
            what = f"no {exc}" if isinstance(exc, KeyError) else str(exc)
            raise TableError(f"{path}: row {number} is not a {parse.__qualname__.split('.')[0]} row: {what}") from None
    return rows


def write_training_rows(path: str | os.PathLike, rows: Iterable[TrainingRow]) -> int:
    folder = Path(path).parent
    return write_jsonl(path, (row.to_official(folder) for row in rows))
