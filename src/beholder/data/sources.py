"""Labelled sources: how each is read, and how its scores come onto the [0, 1] standard.

Three kinds of source:
  overall   one raw score per image on the source's own scale (e.g. SCUT-FBP 1-5, AVA 1-10); min-max
            normalised on its own after filtering (HumanAesExpert Eq. 1: y = (x - min x) / (max x - min x)).
  raters    raw annotations, one row per (image, rater) with a column per dimension on a fixed rating scale;
            mapped linearly to [0, 1], then averaged into per-dimension MOS with a minimum rater count.
  official  an official HumanBeauty label jsonl; its scores are already on the standard and kept as they are,
            and so is each row's own source (HumanBeauty-58K mixes six datasets in one file), so the split stays
            per original dataset.
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple

from beholder.data.mos import Rating, mean_opinion_scores
from beholder.data.rows import Label
from beholder.io import read_jsonl
from beholder.standard import DIMENSIONS

IMAGE_COLUMNS = ("image", "path")  # the image column of a label table, when image_column does not name it


@dataclass(frozen=True)
class SourceConfig:
    name: str  # written into every label of the source; normalisation and the split are per source
    labels: str  # the label table (.csv, .jsonl or .parquet); for kind "official", an official label .jsonl
    kind: Literal["overall", "raters", "official"] = "overall"  # see the module docstring
    images: str = ""  # folder the table's image paths are relative to ("" = the label table's folder)
    image_column: str = ""  # column holding the image path (kinds overall and raters); "": `image` or `path`
    score_column: str = "score"  # kind overall: the raw score column, any scale
    rater_column: str = "rater"  # kind raters: the column identifying the rater
    columns: dict[str, str] = field(default_factory=dict)  # kind raters: dimension key -> column, where they differ
    scale: tuple[float, float] = (0.0, 1.0)  # kind raters: the rating scale's (lowest, highest) value
    single_face: bool = False  # keep only images in which the face detector finds exactly one face


class Item(NamedTuple):
    image: str  # path
    scores: tuple[float, ...]  # (raw score,) of an overall source, else 12 or 1 values in [0, 1]
    source: str  # the source its label carries: the config's name, or an official row's own


@dataclass
class RawSource:
    """A source as read: images with scores not yet normalised, and why rows were dropped."""

    config: SourceConfig
    items: list[Item]
    dropped: Counter = field(default_factory=Counter)  # reason -> rows or images dropped


def read_source(config: SourceConfig, root: Path, min_raters: int) -> RawSource:
    """Read one source; paths in `config` are relative to `root` (the build config's folder)."""
    table = root / config.labels
    images = root / config.images if config.images else table.parent
    if config.kind == "official":
        rows = read_jsonl(table)
        labels = [Label.from_official({**row, "source": row.get("source") or config.name}, images) for row in rows]
        return RawSource(config, [Item(label.image, label.scores, label.source) for label in labels])
    rows, config = _table_rows(table, config)
    if config.kind == "overall":
        return RawSource(config, _overall_items(rows, config, images))
    return _rater_source(rows, config, images, min_raters)


def _table_rows(table: Path, config: SourceConfig) -> tuple[list[dict], SourceConfig]:
    """The table's rows, and the config with its image column named (an empty one: `image` or `path`)."""
    from beholder.io import read_table

    images = [config.image_column] if config.image_column else list(IMAGE_COLUMNS)
    data = read_table(table, string_columns=images + ([config.rater_column] if config.kind == "raters" else []))
    columns = data.column_names
    if not config.image_column:
        found = [name for name in IMAGE_COLUMNS if name in columns]
        if len(found) != 1:
            raise ValueError(
                f"{table}: source {config.name!r} needs one image column, `image` or `path` "
                f"(columns: {', '.join(columns)}); name it with image_column"
            )
        config = dataclasses.replace(config, image_column=found[0])
    rows = data.to_pylist()
    needed = {config.image_column} | (
        {config.score_column} if config.kind == "overall" else {config.rater_column, *_dimension_columns(config)}
    )
    missing = sorted(needed - set(columns))
    if missing:
        raise ValueError(f"{table}: source {config.name!r} has no column(s) {missing}")
    return rows, config


def _dimension_columns(config: SourceConfig) -> list[str]:
    unknown = sorted(set(config.columns) - set(DIMENSIONS))
    if unknown:
        raise ValueError(f"source {config.name!r}: columns maps unknown dimensions {unknown}")
    return [config.columns.get(key, key) for key in DIMENSIONS]


def _overall_items(rows: list[dict], config: SourceConfig, images: Path) -> list[Item]:
    items, seen = [], set()
    for row in rows:
        image, score = row[config.image_column], row[config.score_column]
        if image in seen:
            raise ValueError(f"source {config.name!r}: image {image!r} has more than one score row")
        if score is None:
            raise ValueError(f"source {config.name!r}: image {image!r} has no score")
        seen.add(image)
        items.append(Item(os.path.join(images, image), (float(score),), config.name))
    return items


def _rater_source(rows: list[dict], config: SourceConfig, images: Path, min_raters: int) -> RawSource:
    lo, hi = config.scale
    if hi <= lo:
        raise ValueError(f"source {config.name!r}: scale must be (lowest, highest), got {config.scale}")
    columns = _dimension_columns(config)

    def unit(value: float | None, image: str) -> float | None:
        if value is None:
            return None
        if not lo <= value <= hi:
            raise ValueError(f"source {config.name!r}: {image!r} has a rating {value} outside the scale {config.scale}")
        return (value - lo) / (hi - lo)

    ratings = [
        Rating(row[config.image_column], str(row[config.rater_column]),
               tuple(unit(row[c], row[config.image_column]) for c in columns))
        for row in rows
    ]
    result = mean_opinion_scores(ratings, min_raters)
    items = [Item(os.path.join(images, image), scores, config.name) for image, scores in result.scores.items()]
    return RawSource(config, items, Counter({"too_few_raters": len(result.too_few_raters)}))


def min_max(values: list[float]) -> list[float]:
    """Eq. 1: (x - min) / (max - min). A source whose scores are all equal carries no ranking: an error."""
    lo, hi = min(values), max(values)
    if hi == lo:
        raise ValueError(f"cannot min-max normalise: every score is {lo}")
    return [(v - lo) / (hi - lo) for v in values]


def to_labels(source: RawSource) -> list[Label]:
    """Labels on the standard: overall sources min-max normalised over the rows that are left."""
    items = source.items
    if source.config.kind != "overall" or not items:
        return [Label(item.image, item.source, item.scores) for item in items]
    normalised = min_max([item.scores[0] for item in items])
    return [Label(item.image, item.source, (score,)) for item, score in zip(items, normalised)]
