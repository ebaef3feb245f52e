"""Scoring past one machine on Ray Data (extra `beholder[ray]`).

- `prepare_batch` (CPU tasks) and `ScoreBatch` (actors, one model each): map_batches stages for any Ray dataset
  with a `path` or `bytes` column, giving `beholder score`'s columns (see beholder.distributed.stages).
- `score_to_shards`: `beholder score --engine ray`, the inputs of `beholder score` into resumable Parquet shards.
"""

from beholder.distributed.engine import RayOptions, connect, score_to_shards
from beholder.distributed.preprocessor import load_preprocessor
from beholder.distributed.stages import ScoreBatch, prepare_batch

__all__ = ["RayOptions", "ScoreBatch", "connect", "load_preprocessor", "prepare_batch", "score_to_shards"]
