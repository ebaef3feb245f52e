"""What scoring returns: one ScoreResult per input, and its flat row form shared by every output format; and
what annotation returns: one Annotation per input, with its own flat row."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from beholder.standard import DIMENSIONS, DISPLAY_NAMES, LEVELS

DIM_PREFIX = "dim_"
HEAD_PREFIX = "head_"
SCORE_PREFIX = "score_"  # named scores of a model that gives several (UniPercept: score_iaa, score_iqa, score_ista)
STAGE1_SCORE = "stage1_score"  # a cascade's cheap-model score (beholder.cascade)
LEVEL_PREFIX = "level_"  # annotation rows: the level each dimension's line of the text gives
# Columns every score table has, in this order; score_<name>, dim_<key> and head_<name> columns follow when
# present, then any columns carried through from the input manifest.
BASE_COLUMNS: tuple[str, ...] = ("path", "score", "level", "error")


def score_column(name: str) -> str:
    """The table column a score is read from: "score", a named score ("iqa" or "score_iqa" -> "score_iqa"), or
    any other column named in full (dim_<key>, head_<name>)."""
    if name == "score" or name.startswith((SCORE_PREFIX, DIM_PREFIX, HEAD_PREFIX)):
        return name
    return SCORE_PREFIX + name


@dataclass
class ScoreResult:
    path: str | None  # where the image came from (file path, tar member, manifest value) or None
    score: float | None = None  # final score on the model's native scale (see Scorer.scale); None on error
    #                             (for a model with named scores, its first one)
    level: str | None = None  # bad | poor | fair | good | excellent, from the score normalised to [0, 1]
    dimensions: dict[str, float] = field(default_factory=dict)  # 12 named scores in [0, 1] (full scoring)
    heads: dict[str, float] = field(default_factory=dict)  # lm | regression | expert | metavoter, each in [0, 1]
    error: str | None = None  # "ErrorType: message" when the input could not be scored
    scores: dict[str, float] = field(default_factory=dict)  # named scores on the model's scale, in its order

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_row(self) -> dict[str, Any]:
        """Flat row: path, score, level, error, score_<name>, dim_<key> (official order), head_<name>."""
        row: dict[str, Any] = {"path": self.path, "score": self.score, "level": self.level, "error": self.error}
        for name, value in self.scores.items():
            row[SCORE_PREFIX + name] = value
        for key in DIMENSIONS:
            if key in self.dimensions:
                row[DIM_PREFIX + key] = self.dimensions[key]
        for name, value in self.heads.items():
            row[HEAD_PREFIX + name] = value
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> ScoreResult:
        dims = {k[len(DIM_PREFIX) :]: v for k, v in row.items() if k.startswith(DIM_PREFIX) and v is not None}
        heads = {k[len(HEAD_PREFIX) :]: v for k, v in row.items() if k.startswith(HEAD_PREFIX) and v is not None}
        scores = {k[len(SCORE_PREFIX) :]: v for k, v in row.items() if k.startswith(SCORE_PREFIX) and v is not None}
        return cls(row.get("path"), row.get("score"), row.get("level"), dims, heads, row.get("error"), scores)

    @classmethod
    def failed(cls, path: str | None, exc: BaseException) -> ScoreResult:
        return cls(path, error=f"{type(exc).__name__}: {exc}")


@dataclass
class Annotation:
    path: str | None
    text: str | None = None  # the generated 12-line answer
    levels: dict[str, str] = field(default_factory=dict)  # dimension key -> level parsed from the text
    error: str | None = None  # "ErrorType: message" when the input could not be annotated

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_row(self) -> dict[str, Any]:
        """Flat row: path, error, text, level_<key> (official order) for the lines the text has."""
        row: dict[str, Any] = {"path": self.path, "error": self.error, "text": self.text}
        row.update({LEVEL_PREFIX + key: self.levels[key] for key in DIMENSIONS if key in self.levels})
        return row

    @classmethod
    def failed(cls, path: str | None, exc: BaseException) -> Annotation:
        return cls(path, error=f"{type(exc).__name__}: {exc}")


_LINE = re.compile(r"^\s*\d+\s*\.\s*(?P<name>[^:]+?)\s*:\s*(?P<level>\w+)", re.MULTILINE)
_KEY_BY_NAME = {name.lower(): key for key, name in DISPLAY_NAMES.items()}


def parse_annotation(text: str) -> dict[str, str]:
    """'{i}. {Name} : {level}' lines -> {dimension key: level}; lines that are not of that form are skipped."""
    levels = {}
    for match in _LINE.finditer(text):
        key, level = _KEY_BY_NAME.get(match["name"].lower()), match["level"].lower()
        if key and level in LEVELS:
            levels[key] = level
    return levels
