"""Where a model and the ground truth disagree most: per category, the images with the largest |prediction − truth|
on [0, 1]-normalised scores, so a person sees at a glance what a scorer gets wrong.

The list goes into the report (JSON, and thumbnails in the HTML) and is written as a score table
(`disagreements-<model>.parquet`: `path`, `score` = the model's prediction on its scale, `level`, `gt_score`,
`category`, `difference` = prediction − truth on [0, 1], `disagreement` = its size) that `beholder review` opens:

    beholder review OUTPUT/disagreements-<model>.parquet --group-by category --by disagreement
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from beholder.files import file_slug
from beholder.io import key_from_text, key_to_text, write_table
from beholder.standard import score_to_level

DEFAULT_PER_CATEGORY = 6


def largest_disagreements(
    paths: Sequence[str],
    pred: np.ndarray,
    gt: np.ndarray,
    pred01: np.ndarray,
    gt01: np.ndarray,
    categories: Sequence[str],
    per_category: int = DEFAULT_PER_CATEGORY,
) -> dict[str, list[dict[str, Any]]]:
    """{category: its `per_category` largest disagreements, largest first (ties by path)}, each with the image's path
    (a key as tables write it), both scores on their own scales and on [0, 1], and the signed difference."""
    difference = pred01 - gt01
    labels = np.asarray(categories)
    found = {}
    for category in sorted(set(categories)):
        rows = np.flatnonzero(labels == category)
        order = sorted(rows, key=lambda i: (-abs(difference[i]), paths[i]))[:per_category]
        found[category] = [
            {
                "path": key_to_text(paths[i]),
                "prediction": float(pred[i]),
                "ground_truth": float(gt[i]),
                "prediction01": float(pred01[i]),
                "ground_truth01": float(gt01[i]),
                "difference": float(difference[i]),
            }
            for i in order
        ]
    return found


def disagreements_table(found: dict[str, list[dict[str, Any]]]) -> pa.Table:
    """The disagreements as a score table `beholder review` opens (absolute paths, so it opens from anywhere)."""
    rows = [
        {
            "path": key_to_text(os.path.abspath(key_from_text(d["path"]))),
            "score": d["prediction"],
            "level": score_to_level(min(max(d["prediction01"], 0.0), 1.0)),
            "error": None,
            "gt_score": d["ground_truth"],
            "category": category,
            "difference": d["difference"],
            "disagreement": abs(d["difference"]),
        }
        for category, items in found.items()
        for d in items
    ]
    return pa.Table.from_pylist(rows, schema=_SCHEMA)


def disagreements_file(model: str) -> str:
    """The table's file name for a model (named as its predictions file is)."""
    return f"disagreements-{file_slug(model)}.parquet"


def write_disagreements(
    found: dict[str, list[dict[str, Any]]], path: str | os.PathLike, provenance: dict[str, Any]
) -> Path:
    write_table(path, disagreements_table(found), provenance)
    return Path(path)


_SCHEMA = pa.schema([
    ("path", pa.string()), ("score", pa.float64()), ("level", pa.string()), ("error", pa.string()),
    ("gt_score", pa.float64()), ("category", pa.string()), ("difference", pa.float64()),
    ("disagreement", pa.float64()),
])  # fmt: skip
