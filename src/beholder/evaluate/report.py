"""Measure one model's predictions against a benchmark, and write the reports of one or more such measures.

The report is a plain dict (JSON-ready): what was measured (model, benchmark, scales, coverage), the overall
metrics with bootstrap intervals, the per-dimension MAE table when both sides have 12-dimension scores, per
category the bias (mean signed error of [0, 1]-normalised scores) and SRCC, and per category the images where the
model and the ground truth disagree most. `Evaluation` keeps the normalised
pairs next to it, which the plots need and the JSON does not carry.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from beholder import jsonsafe, metrics
from beholder.evaluate.benchmarks import Benchmark, BenchmarkItem
from beholder.evaluate.disagreements import DEFAULT_PER_CATEGORY, largest_disagreements
from beholder.evaluate.scales import Scale
from beholder.results import ScoreResult
from beholder.standard import DIMENSIONS

UNCATEGORISED = "(none)"
SCALE_NOTE = (
    "Correlations use raw scores. MSE/RMSE/MAE, bias and rating levels use both sides normalised to [0, 1] "
    "by their stated scales: (x - lo) / (hi - lo). 12-dimension scores are on [0, 1] on both sides."
)
FORMATS: tuple[str, ...] = ("json", "md", "html")


@dataclass(frozen=True)
class Evaluation:
    """One model measured on one benchmark."""

    name: str
    report: dict[str, Any]
    pred01: np.ndarray  # predictions of the scored items, normalised to [0, 1]
    gt01: np.ndarray  # their ground truth, normalised to [0, 1]
    categories: list[str]  # their categories (UNCATEGORISED when the benchmark gives none)


def evaluate(
    benchmark: Benchmark,
    results: Iterable[ScoreResult],
    *,
    name: str,
    pred_scale: Scale,
    provenance: dict[str, Any] | None = None,
    bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    disagreements: int = DEFAULT_PER_CATEGORY,
) -> Evaluation:
    """Pair `results` with the benchmark's items and measure them.

    Items without a prediction and predictions that failed (an error row) are left out and counted under
    `coverage`; predictions outside `pred_scale` are counted under `scales` and warned about, since they
    usually mean the stated scale is wrong. `disagreements`: how many of the images where model and ground truth
    disagree most the report lists per category (0: none).
    """
    match = benchmark.match(results)
    scored = [(item, r) for item, r in match.pairs if r.ok and r.score is not None and math.isfinite(r.score)]
    if len(scored) < metrics.MIN_LOGISTIC_PAIRS:
        raise ValueError(
            f"{name}: only {len(scored)} of {len(benchmark.items)} benchmark images have a score "
            f"({len(match.missing)} without a prediction, {len(match.pairs) - len(scored)} failed); "
            f"need at least {metrics.MIN_LOGISTIC_PAIRS}"
        )
    pred = np.array([r.score for _, r in scored], dtype=float)
    gt = np.array([item.score for item, _ in scored])
    pred01, gt01 = pred_scale.normalise(pred), benchmark.scale.normalise(gt)
    categories = [item.category or UNCATEGORISED for item, _ in scored]
    outside = pred_scale.count_outside(pred)
    if outside:
        warnings.warn(
            f"{name}: {outside} of {len(pred)} predictions lie outside their stated scale "
            f"[{pred_scale.lo}, {pred_scale.hi}] ({pred_scale.source}); is the prediction scale right?",
            stacklevel=2,
        )
    ci = {"n_resamples": bootstrap, "confidence": confidence, "seed": seed}
    report = {
        "model": {"name": name, "provenance": provenance or {}},
        "benchmark": benchmark.describe(),
        "scales": {
            "prediction": pred_scale.to_dict(),
            "ground_truth": benchmark.scale.to_dict(),
            "predictions_outside_scale": outside,
            "note": SCALE_NOTE,
        },
        "coverage": {
            "n_items": len(benchmark.items),
            "n_scored": len(scored),
            "n_failed": len(match.pairs) - len(scored),
            "n_missing": len(match.missing),
            "n_unmatched_predictions": len(match.unmatched),
        },
        "bootstrap": ci if bootstrap else None,
        "overall": metrics.all_metrics(pred01, gt01, bootstrap=bootstrap, confidence=confidence, seed=seed),
        "dimensions": _dimensions(scored),
        "categories": _categories(pred01, gt01, categories, bootstrap, confidence, seed),
        "disagreements": largest_disagreements(
            [item.path for item, _ in scored], pred, gt, pred01, gt01, categories, disagreements
        ) if disagreements else None,
    }  # fmt: skip
    return Evaluation(name, report, pred01, gt01, categories)


def _quiet(fn: Callable[[np.ndarray, np.ndarray], float], p: np.ndarray, g: np.ndarray) -> float | None:
    """A correlation for a report cell: None when there are too few pairs, NaN (no warning) when undefined."""
    if len(p) < metrics.MIN_CORRELATION_PAIRS:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", metrics.DegenerateInputWarning)
        return fn(p, g)


def _dimensions(scored: Sequence[tuple[BenchmarkItem, ScoreResult]]) -> dict[str, dict[str, Any]] | None:
    """Per-dimension MAE (the HumanAesExpert paper's Table 3) over items where both sides have that dimension."""
    table = {}
    for key in DIMENSIONS:
        pairs = [
            (r.dimensions[key], item.dimensions[key])
            for item, r in scored
            if key in item.dimensions and key in r.dimensions and math.isfinite(r.dimensions[key])
        ]
        if pairs:
            p, g = (np.array(side, dtype=float) for side in zip(*pairs, strict=True))
            table[key] = {
                "n": len(p),
                "mae": metrics.mae(p, g),
                "rmse": metrics.rmse(p, g),
                "srcc": _quiet(metrics.srcc, p, g),
                "hae_compat_mae_is_sqrt_mae": metrics.hae_sqrt(metrics.mae(p, g)),
            }
    return table or None


def _categories(
    pred01: np.ndarray, gt01: np.ndarray, categories: list[str], bootstrap: int, confidence: float, seed: int
) -> dict[str, dict[str, Any]] | None:
    """Bias (mean signed error, with a bootstrap interval) and agreement per category."""
    names = sorted(set(categories))
    if names == [UNCATEGORISED]:
        return None
    labels = np.array(categories)
    table = {}
    for name in names:
        p, g = pred01[labels == name], gt01[labels == name]
        bias_ci = None
        if bootstrap and len(p) > 1:
            bias_ci = list(
                metrics.bootstrap_ci(
                    p, g, metrics.mean_signed_error, n_resamples=bootstrap, confidence=confidence, seed=seed
                )
            )
        table[name] = {
            "n": len(p),
            "mean_gt": float(g.mean()),
            "mean_pred": float(p.mean()),
            "bias": metrics.mean_signed_error(p, g),
            "bias_ci": bias_ci,
            "mae": metrics.mae(p, g),
            "srcc": _quiet(metrics.srcc, p, g),
            "plcc": _quiet(metrics.plcc, p, g),
        }
    return table


LEADERBOARD_COLUMNS: tuple[str, ...] = (
    "srcc",
    "plcc",
    "plcc_logistic4",
    "krcc",
    "mae",
    "rmse",
    "accuracy",
    "macro_f1",
)


def leaderboard(evaluations: Sequence[Evaluation]) -> list[dict[str, Any]]:
    """One row per model with the headline metrics, best SRCC first (undefined SRCC last)."""
    rows = [
        {"model": e.name, "n": e.report["overall"]["n"], **{k: e.report["overall"][k] for k in LEADERBOARD_COLUMNS}}
        for e in evaluations
    ]
    return sorted(rows, key=lambda row: -row["srcc"] if math.isfinite(row["srcc"]) else math.inf)


def to_json(evaluations: Sequence[Evaluation]) -> str:
    """The JSON document: the leaderboard and every report; NaN becomes null (JSON has no NaN)."""
    from beholder.version import __version__

    document = {
        "beholder_version": __version__,
        "leaderboard": leaderboard(evaluations),
        "evaluations": [e.report for e in evaluations],
    }
    return jsonsafe.dumps(document, indent=2) + "\n"
