"""What is under review: rows of score tables chosen by `select`'s criteria, each image known by a row id.

The page never names a file: it asks for row 17's thumbnail, and only the session knows where row 17's image is
(a file, or a member of a tar shard). Row ids number the selected rows in review order (group, then score
descending, then path), so the same table and criteria give the same ids; decisions are kept by path, so they
survive a change of criteria too.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any

import pyarrow as pa

from beholder.curate import Selection, select
from beholder.io import Located, key_from_text, locate, paths_base, read_provenance, read_scores
from beholder.results import DIM_PREFIX, HEAD_PREFIX, SCORE_PREFIX
from beholder.review.decisions import Mode, ReviewState
from beholder.standard import DIMENSIONS, DISPLAY_NAMES, LEVELS

@dataclass(frozen=True)
class Criteria:
    """Which rows of a score table are reviewed: `beholder select`'s criteria (none: every scored row)."""

    group_by: str | None = None  # one grid (A/B: one set of pairs) per value of this column, e.g. prompt
    top_k: int | None = None  # the K best rows of each group
    top_fraction: float | None = None  # the best fraction of each group (rounded up)
    min_score: float | None = None  # rows whose `by` value is at least this
    max_score: float | None = None  # ... and at most this
    by: str = "score"  # the column rows are ranked on

    def apply(self, table: pa.Table) -> Selection:
        return select(table, **asdict(self))


@dataclass(frozen=True)
class ScoreTable:
    """A score table as `beholder score` (or `beholder evaluate`) wrote it, and where its relative paths start."""

    source: str  # the file
    table: pa.Table
    provenance: dict[str, Any]
    base: str  # the folder relative paths are relative to

    @classmethod
    def read(cls, path: str | os.PathLike, group_by: str | None = None) -> ScoreTable:
        provenance = read_provenance(path) or {}
        table = read_scores(path, string_columns=[group_by] if group_by else [])
        return cls(os.fspath(path), table, provenance, paths_base(path, provenance))

    @property
    def scale(self) -> list[float] | None:
        return self.provenance.get("scale")


class ReviewRows:
    """The selected rows of one score table, in review order, with their images."""

    def __init__(self, scores: ScoreTable, criteria: Criteria, first_id: int = 0):
        self.scores = scores
        self.criteria = criteria
        self.selection = criteria.apply(scores.table)
        self.table = self.selection.table
        self.first_id = first_id  # the row id of this table's first row
        self.paths: list[str] = self.table["path"].to_pylist()  # keys as the table writes them

    def __len__(self) -> int:
        return len(self.table)

    @property
    def ids(self) -> range:
        return range(self.first_id, self.first_id + len(self))

    def locate(self, index: int) -> Located:
        return locate(key_from_text(self.paths[index]), self.scores.base)

    def row(self, index: int) -> dict[str, Any]:
        """Every column of a row, JSON-ready (NaN as None, values JSON has no type for as text)."""
        return {name: json_value(value) for name, value in self.table.slice(index, 1).to_pylist()[0].items()}

    def column(self, name: str) -> list[Any]:
        return self.table[name].to_pylist() if name in self.table.column_names else [None] * len(self)

    @cached_property
    def groups(self) -> list[Any]:
        """Each row's group value (None without --group-by)."""
        return self.column(self.criteria.group_by) if self.criteria.group_by else [None] * len(self)


class Session:
    """The images under review, each by a row id, across one score table (review) or two (A/B)."""

    mode: Mode

    def __init__(self, tables: Sequence[ScoreTable], criteria: Criteria):
        self.criteria = criteria
        self.sets: list[ReviewRows] = []
        for scores in tables:
            self.sets.append(ReviewRows(scores, criteria, sum(len(s) for s in self.sets)))
        self.n_images = sum(len(s) for s in self.sets)

    def _where(self, row_id: int) -> tuple[ReviewRows, int]:
        for rows in self.sets:
            if row_id in rows.ids:
                return rows, row_id - rows.first_id
        raise KeyError(row_id)

    def image(self, row_id: int) -> Located:
        """Where row `row_id`'s image is; KeyError for an id that is not under review."""
        rows, index = self._where(row_id)
        return rows.locate(index)

    def images(self) -> list[Located]:
        return [rows.locate(i) for rows in self.sets for i in range(len(rows))]

    def row(self, row_id: int) -> dict[str, Any]:
        rows, index = self._where(row_id)
        return rows.row(index)

    def start_event(self) -> dict[str, Any]:
        """What a decisions log records about the session it belongs to."""
        from beholder.version import __version__

        criteria = {k: v for k, v in asdict(self.criteria).items() if v is not None}
        return {"sources": [rows.scores.source for rows in self.sets], "criteria": criteria, "version": __version__}


class ReviewSession(Session):
    """One score table: the person keeps, rejects or stars each selected image."""

    mode: Mode = "review"

    def __init__(self, scores: ScoreTable, criteria: Criteria = Criteria()):
        super().__init__([scores], criteria)
        [self.rows] = self.sets
        self.row_of_path = {path: i for i, path in reversed(list(enumerate(self.rows.paths)))}

    def decisions(self, state: ReviewState) -> dict[int, dict[str, Any]]:
        """Row id -> its decision event in force, for every decided row under review."""
        decided = state.decided()
        return {
            i: decided[(path,)] for i, path in enumerate(self.rows.paths) if (path,) in decided
        }

    def describe(self, event: dict[str, Any], state: ReviewState) -> dict[str, Any]:
        """The row a decision event was about, and its decision in force now (e.g. after an undo)."""
        row_id = self.row_of_path.get(event["path"])
        now = state.current((event["path"],))
        return {"row": row_id, "decision": now["decision"] if now else None}

    def page(self, state: ReviewState) -> dict[str, Any]:
        """Everything the page needs to draw the grids: the rows (scores, level, dimensions, heads), their groups
        and the decisions so far."""
        rows = self.rows
        names = rows.table.column_names
        dims = [k for k in DIMENSIONS if DIM_PREFIX + k in names]
        heads = [n for n in names if n.startswith(HEAD_PREFIX)]
        named = [n for n in names if n.startswith(SCORE_PREFIX)]
        groups = list(dict.fromkeys(rows.groups))
        group_index = {g: i for i, g in enumerate(groups)}
        columns = {
            "score": rows.column("score"),
            "level": rows.column("level"),
            "by": rows.column(self.criteria.by),
            "dims": _columns(rows, [DIM_PREFIX + k for k in dims]),
            "heads": _columns(rows, heads),
            "named": _columns(rows, named),
        }
        data = [
            {
                "id": i,
                "path": path,
                "group": group_index[rows.groups[i]],
                "score": _round(columns["score"][i]),
                "level": columns["level"][i],
                "by": _round(columns["by"][i]),
                "dims": columns["dims"][i],
                "heads": columns["heads"][i],
                "named": columns["named"][i],
            }
            for i, path in enumerate(rows.paths)
        ]
        decisions = self.decisions(state)
        latest = state.latest
        return {
            "mode": self.mode,
            "source": rows.scores.source,
            "model": rows.scores.provenance.get("model"),
            "scale": rows.scores.scale,
            "groupBy": self.criteria.group_by,
            "by": self.criteria.by,
            "groups": [json_value(g) for g in groups],
            "levels": list(LEVELS),
            "dims": dims,
            "dimNames": {k: DISPLAY_NAMES[k] for k in dims},
            "heads": [n[len(HEAD_PREFIX) :] for n in heads],
            "named": [n[len(SCORE_PREFIX) :] for n in named],
            "rows": data,
            "decisions": {i: event["decision"] for i, event in decisions.items()},
            "resume": self.row_of_path.get(latest["path"]) if latest else None,
        }

    def decisions_table(self, state: ReviewState) -> pa.Table:
        """The rows under review, every column, with `decision` (null: undecided) and `decided_at` added: keyed by
        `path` like the score table, so it joins back to it or feeds `beholder select`."""
        decisions = self.decisions(state)
        table = self.rows.table
        for name in ("decision", "decided_at"):
            if name in table.column_names:
                table = table.drop_columns([name])
        made = [decisions.get(i) for i in range(len(self.rows))]
        return table.append_column("decision", pa.array([e and e["decision"] for e in made], pa.string())).append_column(
            "decided_at", pa.array([e and e["time"] for e in made], pa.string())
        )


def _columns(rows: ReviewRows, names: list[str]) -> list[list[float | None]]:
    """Per row, the values of `names` (rounded), or [] when there are no such columns."""
    if not names:
        return [[] for _ in range(len(rows))]
    values = [rows.column(n) for n in names]
    return [[_round(v[i]) for v in values] for i in range(len(rows))]


def _round(value: Any) -> Any:
    """A number as the page shows it (4 decimals keep the JSON small); NaN as None."""
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 4)
    return value


def json_value(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    return str(value)
