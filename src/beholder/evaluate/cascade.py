"""How a cascade (beholder.cascade) would do on a labelled benchmark, from both models' predictions on every image.

The cheap model's scores pick the survivors with the cascade's rule (per category when grouped); then:
  recall@K        of the K images the expensive model alone ranks highest (K = the number of survivors), the
                  fraction that survive stage 1: what the cascade keeps of what the expensive model would keep
  srcc_final      SRCC against the ground truth of the cascade's final ranking: survivors by the expensive score,
                  all above the rest, which keep the cheap model's order
  expensive_saved the fraction of benchmark images the expensive model does not score (1 - K / N); in compute,
                  that fraction of the expensive model's time (its cost per image is the same for every image of
                  one size), against the cheap model's pass over all N
Both models' own SRCCs on the same images are reported beside them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa
from scipy.stats import rankdata

from beholder import metrics
from beholder.cascade import CascadeRule
from beholder.evaluate.benchmarks import Benchmark
from beholder.evaluate.predictions import Predictions


def evaluate_cascade(
    benchmark: Benchmark,
    cheap: Predictions,
    expensive: Predictions,
    rule: CascadeRule,
    *,
    group_by_category: bool = False,
) -> dict[str, Any]:
    """The cascade's report (see module docstring) over the benchmark images both models scored."""
    by_model = [_scores(benchmark, p) for p in (cheap, expensive)]
    items = [item for item in benchmark.items if item.path in by_model[0] and item.path in by_model[1]]
    if len(items) < metrics.MIN_CORRELATION_PAIRS:
        raise ValueError(f"only {len(items)} benchmark images have scores from both models")
    paths = [item.path for item in items]
    c = np.array([by_model[0][p] for p in paths])
    e = np.array([by_model[1][p] for p in paths])
    gt = np.array([item.score for item in items])
    table = pa.table({"path": paths, "score": c, "category": [item.category for item in items]})
    kept = set(rule.apply(table, "category" if group_by_category else None).table["path"].to_pylist())
    survived = np.array([p in kept for p in paths])
    k = int(survived.sum())
    top_expensive = set(np.array(paths)[np.lexsort((paths, -e))[:k]])
    final = np.where(survived, len(paths) + rankdata(e), rankdata(c))  # every survivor above every other image
    return {
        "cheap": cheap.name,
        "expensive": expensive.name,
        "rule": str(rule),
        "group_by": "category" if group_by_category else None,
        "n": len(paths),
        "survivors": k,
        "recall_at_k": len(kept & top_expensive) / k if k else math.nan,
        "srcc_final": metrics.srcc(final, gt),
        "srcc_expensive": metrics.srcc(e, gt),
        "srcc_cheap": metrics.srcc(c, gt),
        "expensive_saved": 1 - k / len(paths),
    }


def _scores(benchmark: Benchmark, predictions: Predictions) -> dict[str, float]:
    """Benchmark image path -> finite score, for the images `predictions` scored."""
    return {
        item.path: result.score
        for item, result in benchmark.match(predictions.results).pairs
        if result.ok and result.score is not None and math.isfinite(result.score)
    }


CASCADE_COLUMNS: dict[str, str] = {
    "rule": "Rule",
    "survivors": "Survivors",
    "recall_at_k": "Recall@K",
    "srcc_final": "SRCC (cascade)",
    "srcc_expensive": "SRCC (expensive)",
    "srcc_cheap": "SRCC (cheap)",
    "expensive_saved": "Expensive saved",
}
