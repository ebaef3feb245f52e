"""Benchmark readers: label files in three layouts -> one `Benchmark` of images with ground-truth scores.

Layouts:

- ``humanbeauty``: the HumanBeauty label jsonl (58K overall-only rows and 50K 12-dimension rows), rows
  ``{image_name, source, score, text_level?, is_expert}`` where ``score`` is a float or the 12 scores in
  official order. Scale 0–1; the category is ``source``.
- ``eria``: ERIA-1K style, a JSON list of objects with an image and its ground-truth score, optionally a
  category. Scale 1–10 (its scores span about 2.0–9.67).
- ``table``: a generic CSV / JSONL / Parquet table with an image and a score column, optionally a category
  and ``dim_<key>`` columns (the score-table schema, so a predictions file can serve as a benchmark). Scale
  0–1 unless stated.

The eria and table layouts accept a few common spellings for each field (`IMAGE_KEYS`, `SCORE_KEYS`,
`CATEGORY_KEYS`): published label files differ only in these names. Ground truth outside its stated scale is
an error, since it means the scale is wrong and every normalised metric would be too.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from beholder.evaluate.scales import UNIT, Scale
from beholder.io import read_jsonl, read_table
from beholder.results import DIM_PREFIX, ScoreResult
from beholder.standard import DIMENSIONS, scores_from_official

LAYOUTS: tuple[str, ...] = ("humanbeauty", "eria", "table")
DEFAULT_SCALES: dict[str, tuple[float, float]] = {"humanbeauty": UNIT, "eria": (1.0, 10.0), "table": UNIT}
IMAGE_KEYS: tuple[str, ...] = ("path", "image", "image_path", "image_name", "img", "file_name", "filename")
SCORE_KEYS: tuple[str, ...] = ("score", "gt_score", "gt", "mos", "label")
CATEGORY_KEYS: tuple[str, ...] = ("category", "source", "type")
TABLE_SUFFIXES: tuple[str, ...] = (".csv", ".jsonl", ".parquet")


@dataclass(frozen=True)
class BenchmarkItem:
    name: str  # the image as the label file writes it
    path: str  # the file it resolves to: `name` under the image root, unless `name` is absolute
    score: float  # ground truth on the benchmark's scale
    category: str | None = None
    dimensions: Mapping[str, float] = field(default_factory=dict)  # 12-dimension ground truth in [0, 1]


@dataclass(frozen=True)
class Match:
    """Benchmark items paired with the predictions for them, and what did not pair up."""

    pairs: list[tuple[BenchmarkItem, ScoreResult]]
    missing: list[BenchmarkItem]  # items with no prediction
    unmatched: list[str | None]  # prediction paths that name no item


@dataclass(frozen=True)
class Benchmark:
    name: str
    layout: str
    source: str  # the label file
    scale: Scale
    items: tuple[BenchmarkItem, ...]

    @property
    def has_dimensions(self) -> bool:
        return any(item.dimensions for item in self.items)

    @property
    def paths(self) -> list[str]:
        return [item.path for item in self.items]

    def describe(self) -> dict[str, Any]:
        categories = Counter(item.category for item in self.items if item.category is not None)
        return {
            "name": self.name,
            "layout": self.layout,
            "source": self.source,
            "n_items": len(self.items),
            "n_with_dimensions": sum(1 for item in self.items if item.dimensions),
            "categories": dict(sorted(categories.items())),
            "scale": self.scale.to_dict(),
        }

    def match(self, results: Iterable[ScoreResult]) -> Match:
        """Pair predictions with items by path: exact, then as absolute paths, then by unique file name.

        A predictions file written by scoring this benchmark pairs exactly; one made elsewhere (other working
        directory, other image root) pairs as long as its file names are unique.
        """
        index: dict[str, int] = {}
        for i, item in enumerate(self.items):
            for key in (item.path, item.name, os.path.abspath(item.path)):
                index.setdefault(key, i)
        basenames = Counter(os.path.basename(item.path) for item in self.items)
        for i, item in enumerate(self.items):
            if basenames[os.path.basename(item.path)] == 1:
                index.setdefault(os.path.basename(item.path), i)
        found: dict[int, ScoreResult] = {}
        unmatched: list[str | None] = []
        for result in results:
            key = result.path or ""
            i = next((index[k] for k in (key, os.path.abspath(key), os.path.basename(key)) if k in index), None)
            if i is None:
                unmatched.append(result.path)
            elif i in found:
                raise ValueError(f"two predictions for benchmark image {self.items[i].path!r}")
            else:
                found[i] = result
        pairs = [(item, found[i]) for i, item in enumerate(self.items) if i in found]
        missing = [item for i, item in enumerate(self.items) if i not in found]
        return Match(pairs, missing, unmatched)


def load_benchmark(
    path: str | os.PathLike[str],
    *,
    layout: str = "auto",
    image_root: str | os.PathLike[str] | None = None,
    scale: Scale | None = None,
) -> Benchmark:
    """Read a benchmark label file. `layout="auto"` picks by content (see `detect_layout`).

    Image names resolve against `image_root` (default: the label file's folder). `scale` overrides the
    layout's default ground-truth scale.
    """
    path = Path(path)
    layout = detect_layout(path) if layout == "auto" else layout
    if layout not in LAYOUTS:
        raise ValueError(f"unknown benchmark layout {layout!r}; expected one of {LAYOUTS}")
    rows = read_rows(path)
    if not rows:
        raise ValueError(f"{path}: no rows")
    root = Path(image_root) if image_root is not None else path.parent
    parse = _humanbeauty_item if layout == "humanbeauty" else _generic_item
    items = []
    for i, row in enumerate(rows):
        try:
            items.append(parse(row, root))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: row {i + 1}: {exc}") from None
    scale = scale or Scale(*DEFAULT_SCALES[layout], source=f"default for the {layout} layout")
    _check_in_scale(path, items, scale)
    return Benchmark(path.stem, layout, str(path), scale, tuple(items))


def detect_layout(path: Path) -> str:
    """humanbeauty for a jsonl whose first row has image_name and is_expert; eria for a .json; else table."""
    suffix = path.suffix.lower()
    if suffix == ".json":
        return "eria"
    if suffix not in TABLE_SUFFIXES:
        raise ValueError(f"{path}: cannot tell the layout from {suffix!r}; expected .json, .jsonl, .csv or .parquet")
    if suffix == ".jsonl":
        with path.open(encoding="utf-8") as f:
            first = next((line for line in f if line.strip()), "{}")
        if {"image_name", "is_expert"} <= json.loads(first).keys():
            return "humanbeauty"
    return "table"


def read_rows(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Rows of a label file as dicts: a .json list, .jsonl lines, or a .csv/.parquet table.

    JSON is parsed as written (HumanBeauty's score column mixes floats and lists, which no columnar reader
    types); tables go through `beholder.io.read_table`, which keeps image and category columns as strings.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
            raise ValueError(f"{path}: expected a JSON list of objects")
        return data
    if suffix == ".jsonl":
        return list(read_jsonl(path))
    if suffix in (".csv", ".parquet"):
        return read_table(path, string_columns=IMAGE_KEYS + CATEGORY_KEYS).to_pylist()
    raise ValueError(f"{path}: unsupported table format {suffix!r}; expected .json, .jsonl, .csv or .parquet")


def _humanbeauty_item(row: Mapping[str, Any], root: Path) -> BenchmarkItem:
    """A label row; a 12-score list counts as 12-dimension ground truth only on expert rows, because the
    official tooling pads overall-only rows to [0] * 11 + [score] with is_expert 0."""
    name, score = row["image_name"], row["score"]
    dims: dict[str, float] = {}
    if isinstance(score, Sequence) and not isinstance(score, str):
        values = scores_from_official(score)
        score = values["overall"]
        dims = values if row.get("is_expert", 1) else {}
    return BenchmarkItem(name, _resolve(root, name), _finite(score, "score"), _category(row.get("source")), dims)


def _generic_item(row: Mapping[str, Any], root: Path) -> BenchmarkItem:
    name = _pick(row, IMAGE_KEYS, "image")
    score = _finite(_pick(row, SCORE_KEYS, "score"), "score")
    category = _category(next((row[k] for k in CATEGORY_KEYS if row.get(k) is not None), None))
    dims = {k: _finite(row[DIM_PREFIX + k], DIM_PREFIX + k) for k in DIMENSIONS if row.get(DIM_PREFIX + k) is not None}
    return BenchmarkItem(str(name), _resolve(root, str(name)), score, category, dims)


def _pick(row: Mapping[str, Any], keys: Sequence[str], what: str) -> Any:
    for key in keys:
        if row.get(key) is not None:
            return row[key]
    raise KeyError(f"no {what} field; expected one of {list(keys)}, found {sorted(row)}")


def _finite(value: Any, what: str) -> float:
    number = float(value)
    if not np.isfinite(number):
        raise ValueError(f"{what} is {value!r}, not a finite number")
    return number


def _category(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _resolve(root: Path, name: str) -> str:
    return name if os.path.isabs(name) else str(root / name)


def _check_in_scale(path: Path, items: Sequence[BenchmarkItem], scale: Scale) -> None:
    outside = scale.count_outside(np.array([item.score for item in items]))
    if outside:
        raise ValueError(
            f"{path}: {outside} ground-truth scores lie outside the stated scale [{scale.lo}, {scale.hi}] "
            f"({scale.source}); state the right one with --gt-scale lo,hi"
        )
    dims = np.array([v for item in items for v in item.dimensions.values()])
    outside = Scale(*UNIT, source="the 12-dimension standard").count_outside(dims)
    if outside:
        raise ValueError(f"{path}: {outside} dimension scores lie outside [0, 1], the 12-dimension standard's scale")
