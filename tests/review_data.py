"""Score tables with real image files behind them, for the review tests (no model needed: the review page reads
tables, whoever scored them)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
from image_files import encode, write_shard

from beholder.io import write_table
from beholder.results import DIM_PREFIX, HEAD_PREFIX
from beholder.standard import DIMENSIONS, score_to_level

HEADS = ("lm", "regression", "expert", "metavoter")


def score_table(
    folder: Path,
    n: int,
    *,
    groups: int = 4,
    seed: int = 0,
    name: str = "scores.parquet",
    size: tuple[int, int] = (96, 64),
    shard_members: int = 0,
) -> Path:
    """`n` images in `folder` (the last `shard_members` of them as members of one tar shard) and a score table
    beside them: relative paths, a `prompt` column with `groups` values, seeded scores on [0, 1], levels, the 12
    dimensions and four heads, and one error row (which review never shows)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    files = n - shard_members
    paths = []
    for i in range(files):
        fmt = ("jpg", "png")[i % 2]
        path = folder / f"img{seed}-{i:04d}.{fmt}"
        path.write_bytes(encode(seed * 10_000 + i, fmt, size))
        paths.append(path.name)
    if shard_members:
        members = {f"m{i:04d}.jpg": encode(seed * 10_000 + files + i, "jpg", size) for i in range(shard_members)}
        write_shard(folder / "shard.tar", members)
        paths += [f"shard.tar/{member}" for member in members]
    scores = rng.uniform(0.05, 0.95, n).round(6)
    rows = [
        {
            "path": path,
            "score": float(s),
            "level": score_to_level(float(s)),
            "error": None,
            **{DIM_PREFIX + k: float(v) for k, v in zip(DIMENSIONS, rng.uniform(0, 1, len(DIMENSIONS)))},
            **{HEAD_PREFIX + h: float(v) for h, v in zip(HEADS, rng.uniform(0, 1, len(HEADS)))},
            "prompt": f"prompt {i % groups}",
        }
        for i, (path, s) in enumerate(zip(paths, scores))
    ]
    rows.append({"path": "missing.jpg", "score": None, "level": None, "error": "ImageError: x", "prompt": "prompt 0"})
    table = folder / name
    write_table(table, pa.Table.from_pylist(rows), {"model": "test", "scale": [0.0, 1.0]})
    return table
