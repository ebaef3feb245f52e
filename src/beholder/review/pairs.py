"""A/B review: two score tables (two models, two LoRAs) whose images for the same group (prompt) are shown side by
side, and the person picks the better one or a tie.

Pairs are made within each group present in both tables, rank by rank: A's best image against B's best, second
against second, and so on (each table's rows selected and ordered by the same criteria). Which model is on the
left is decided per pair by a hash of the pair, so it looks random to the person (no side is always A) yet is the
same every time the pair is shown. The page is blind: it shows neither paths nor scores nor model names.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal

import pyarrow as pa

from beholder.errors import UsageError
from beholder.review.decisions import Mode, ReviewState, event_key
from beholder.review.session import Criteria, ScoreTable, Session, json_value

Side = Literal["left", "right", "tie"]


@dataclass(frozen=True)
class Pair:
    id: int
    group: Any  # the group value (e.g. the prompt)
    a: int  # row id of A's image
    b: int  # row id of B's image
    a_path: str  # keys as the tables write them
    b_path: str
    a_left: bool  # whether A's image is shown on the left

    @property
    def key(self) -> tuple[str, ...]:
        """The key of this pair's pick events (see decisions.event_key)."""
        return (json.dumps(self.group), self.a_path, self.b_path)

    def side(self, pick: str) -> Side:
        """Where the picked image was shown: A or B -> left or right."""
        if pick == "tie":
            return "tie"
        return "left" if (pick == "A") == self.a_left else "right"

    def pick(self, side: str) -> str:
        """The pick (A, B or tie) the person made by choosing `side`."""
        if side not in ("left", "right", "tie"):
            raise UsageError(f"side must be left, right or tie, not {side!r}")
        if side == "tie":
            return "tie"
        return "A" if (side == "left") == self.a_left else "B"


class PairSession(Session):
    mode: Mode = "ab"

    def __init__(self, a: ScoreTable, b: ScoreTable, criteria: Criteria):
        if criteria.group_by is None:
            raise UsageError("an A/B review pairs images of the same group: give --group-by (e.g. prompt)")
        super().__init__([a, b], criteria)
        self.a, self.b = self.sets
        self.pairs = _pair(self.a.groups, self.b.groups, self.a.first_id, self.b.first_id, self.a.paths, self.b.paths)
        self.unpaired = (len(self.a) - len(self.pairs), len(self.b) - len(self.pairs))
        self._pair_of_key = {pair.key: pair for pair in self.pairs}
        self._by = (self.a.column(criteria.by), self.b.column(criteria.by))

    def scores(self, pair: Pair) -> tuple[float | None, float | None]:
        """What the scorer says of the pair's two images: their values of the ranking column (`--by`)."""
        return self._by[0][pair.a - self.a.first_id], self._by[1][pair.b - self.b.first_id]

    def picks(self, state: ReviewState) -> dict[int, dict[str, Any]]:
        """Pair id -> its pick event in force, for every pair judged."""
        decided = state.decided()
        return {pair.id: decided[pair.key] for pair in self.pairs if pair.key in decided}

    def describe(self, event: dict[str, Any], state: ReviewState) -> dict[str, Any]:
        """The pair a pick event was about, and the side picked now (e.g. after an undo)."""
        pair = self._pair_of_key[event_key(event)]
        now = state.current(pair.key)
        return {"pair": pair.id, "side": pair.side(now["pick"]) if now else None}

    def decisions_table(self, state: ReviewState) -> pa.Table:
        """One row per pair: the group, both images (`path_a`, `path_b`, keyed like the score tables) and their
        scores, the pick (A, B, tie; null: not judged) and when it was made."""
        picks = self.picks(state)
        by = self.criteria.by
        scores = [self.scores(p) for p in self.pairs]
        return pa.table({
            self.criteria.group_by: [p.group for p in self.pairs],
            "path_a": [p.a_path for p in self.pairs],
            "path_b": [p.b_path for p in self.pairs],
            f"{by}_a": [a for a, _ in scores],
            f"{by}_b": [b for _, b in scores],
            "pick": pa.array([picks[p.id]["pick"] if p.id in picks else None for p in self.pairs], pa.string()),
            "decided_at": pa.array([picks[p.id]["time"] if p.id in picks else None for p in self.pairs], pa.string()),
        })  # fmt: skip

    def page(self, state: ReviewState) -> dict[str, Any]:
        groups = list(dict.fromkeys(pair.group for pair in self.pairs))
        group_index = {g: i for i, g in enumerate(groups)}
        latest = state.latest
        resume = self._pair_of_key.get(event_key(latest)) if latest else None
        return {
            "mode": self.mode,
            "groupBy": self.criteria.group_by,
            "groups": [json_value(g) for g in groups],
            "pairs": [
                {"id": p.id, "group": group_index[p.group], "left": p.a if p.a_left else p.b,
                 "right": p.b if p.a_left else p.a}
                for p in self.pairs
            ],
            "picks": {i: self.pairs[i].side(event["pick"]) for i, event in self.picks(state).items()},
            "resume": resume.id if resume else None,
        }


def _pair(
    groups_a: list[Any], groups_b: list[Any], first_a: int, first_b: int, paths_a: list[str], paths_b: list[str]
) -> list[Pair]:
    """Rank-by-rank pairs within each group both tables have, in A's group order."""
    rows_b = _rows_by_group(groups_b)
    pairs = []
    for group, rows_a in _rows_by_group(groups_a).items():
        for i, j in zip(rows_a, rows_b.get(group, [])):
            a_path, b_path = paths_a[i], paths_b[j]
            value = json_value(group)  # as a decisions log holds it
            digest = hashlib.sha256(json.dumps([value, a_path, b_path]).encode()).digest()
            pairs.append(Pair(len(pairs), value, first_a + i, first_b + j, a_path, b_path, bool(digest[0] & 1)))
    return pairs


def _rows_by_group(groups: list[Any]) -> dict[Any, list[int]]:
    """Group value -> the positions of its rows, groups in order of first appearance."""
    rows: dict[Any, list[int]] = {}
    for i, group in enumerate(groups):
        rows.setdefault(group, []).append(i)
    return rows
