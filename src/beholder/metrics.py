"""Agreement between predicted and ground-truth aesthetic scores: functions of `(pred, gt)`.

One input policy holds for every function, so a metric never silently means something else:

- `pred` and `gt` are 1-D sequences of the same length, else `ValueError`.
- Non-finite values (NaN, ±inf) raise `ValueError` with their count. `all_metrics(..., nan_policy="omit")`
  drops those pairs instead and states how many in `n_dropped`; dropping is never implicit.
- Correlations need at least `MIN_CORRELATION_PAIRS` pairs (with two, every correlation is ±1), the logistic
  fit `MIN_LOGISTIC_PAIRS` (more pairs than its four parameters), error metrics one; fewer raise `ValueError`.
- A correlation with a constant input is undefined: it is NaN and a `DegenerateInputWarning` is emitted.
  A model that gives one score to a whole category is a finding for the report, not a crash.

Correlations are scale-free. Error and level metrics compare values directly, so both sides must be on one
scale; level metrics expect [0, 1] (the 12-dimension standard's scale).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy import optimize, special, stats

from beholder.standard import LEVELS, level_index, score_to_level

MIN_CORRELATION_PAIRS = 3
MIN_LOGISTIC_PAIRS = 5
# Metrics whose bootstrap confidence intervals `all_metrics` reports: cheap enough to recompute 1000 times
# on a 15K-image test set. The logistic PLCC is left out because it refits per resample.
BOOTSTRAP_METRICS: tuple[str, ...] = ("srcc", "krcc", "plcc", "mae", "rmse", "mean_signed_error")

ArrayLike = Sequence[float] | np.ndarray


class DegenerateInputWarning(UserWarning):
    """A metric is undefined for these inputs (a constant vector) and was returned as NaN."""


def paired(pred: ArrayLike, gt: ArrayLike, *, min_pairs: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Validate `(pred, gt)` under the module's input policy and return them as float arrays."""
    p, g = np.asarray(pred, dtype=float), np.asarray(gt, dtype=float)
    if p.ndim != 1 or g.ndim != 1:
        raise ValueError(f"pred and gt must be 1-D, got shapes {p.shape} and {g.shape}")
    if len(p) != len(g):
        raise ValueError(f"length mismatch: {len(p)} predictions vs {len(g)} ground-truth scores")
    bad = ~(np.isfinite(p) & np.isfinite(g))
    if bad.any():
        raise ValueError(
            f"{int(bad.sum())} of {len(p)} pairs have a non-finite value (NaN or inf); "
            "drop them first or use all_metrics(..., nan_policy='omit')"
        )
    if len(p) < min_pairs:
        raise ValueError(f"need at least {min_pairs} pairs, got {len(p)}")
    return p, g


def _correlation(pred: ArrayLike, gt: ArrayLike, name: str, fn: Callable[..., Any]) -> float:
    p, g = paired(pred, gt, min_pairs=MIN_CORRELATION_PAIRS)
    if np.ptp(p) == 0 or np.ptp(g) == 0:
        which = "pred" if np.ptp(p) == 0 else "gt"
        warnings.warn(f"{name} is undefined: {which} is constant; returning NaN", DegenerateInputWarning, stacklevel=3)
        return math.nan
    return float(fn(p, g).statistic)


def srcc(pred: ArrayLike, gt: ArrayLike) -> float:
    """Spearman rank correlation (ties get average ranks)."""
    return _correlation(pred, gt, "SRCC", stats.spearmanr)


def krcc(pred: ArrayLike, gt: ArrayLike) -> float:
    """Kendall rank correlation, tau-b (the variant that corrects for ties)."""
    return _correlation(pred, gt, "KRCC", stats.kendalltau)


def plcc(pred: ArrayLike, gt: ArrayLike) -> float:
    """Pearson linear correlation of the raw scores."""
    return _correlation(pred, gt, "PLCC", stats.pearsonr)


def mse(pred: ArrayLike, gt: ArrayLike) -> float:
    """Mean squared error; both sides on one scale."""
    p, g = paired(pred, gt)
    return float(np.mean((p - g) ** 2))


def rmse(pred: ArrayLike, gt: ArrayLike) -> float:
    """Root mean squared error; both sides on one scale."""
    return math.sqrt(mse(pred, gt))


def mae(pred: ArrayLike, gt: ArrayLike) -> float:
    """Mean absolute error; both sides on one scale."""
    p, g = paired(pred, gt)
    return float(np.mean(np.abs(p - g)))


def mean_signed_error(pred: ArrayLike, gt: ArrayLike) -> float:
    """Mean of pred − gt: positive when the model over-scores (the bias of a category in reports)."""
    p, g = paired(pred, gt)
    return float(np.mean(p - g))


def logistic4(x: np.ndarray, b1: float, b2: float, b3: float, b4: float) -> np.ndarray:
    """The VQEG 4-parameter logistic: b2 + (b1 − b2) / (1 + exp(−(x − b3) / |b4|))."""
    return b2 + (b1 - b2) * special.expit((x - b3) / abs(b4))


@dataclass(frozen=True)
class MonotonicFit:
    """A mapping from predictions onto the ground-truth scale, fitted before computing the fitted PLCC.

    `method` is "logistic4" when the 4-parameter logistic converged to a fit at least as good (in squared
    error) as a straight line, and "linear" when it did not and the least-squares line was used instead.
    """

    method: Literal["logistic4", "linear"]
    params: tuple[float, ...]  # (b1, b2, b3, b4) for logistic4, (slope, intercept) for linear

    def __call__(self, x: ArrayLike) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        if self.method == "logistic4":
            return logistic4(x, *self.params)
        slope, intercept = self.params
        return slope * x + intercept


def fit_logistic4(pred: ArrayLike, gt: ArrayLike) -> MonotonicFit:
    """Fit gt ≈ logistic4(pred) by least squares, initialised as VQEG recommends.

    Start: b1 = max(gt), b2 = min(gt) (swapped when pred and gt are negatively correlated, so the start is
    already falling), b3 = mean(pred), b4 = std(pred) / 4 (in pred's own units, so any native scale works).
    A logistic can approximate a line arbitrarily well, so a converged fit is never worse than the
    least-squares line; when the optimiser fails or ends worse than the line, the line is returned.
    """
    p, g = paired(pred, gt, min_pairs=MIN_LOGISTIC_PAIRS)
    if np.ptp(p) == 0:
        return MonotonicFit("linear", (0.0, float(np.mean(g))))
    slope, intercept = np.polyfit(p, g, 1)
    line = MonotonicFit("linear", (float(slope), float(intercept)))
    if np.ptp(g) == 0:
        return line
    hi, lo = float(np.max(g)), float(np.min(g))
    if np.corrcoef(p, g)[0, 1] < 0:
        hi, lo = lo, hi
    start = (hi, lo, float(np.mean(p)), float(np.std(p)) / 4)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optimize.OptimizeWarning)
            params, _ = optimize.curve_fit(logistic4, p, g, p0=start, maxfev=10_000)
    except (RuntimeError, ValueError, FloatingPointError):
        return line
    fit = MonotonicFit("logistic4", tuple(float(v) for v in params))
    fitted = fit(p)
    if not np.all(np.isfinite(fitted)) or np.sum((fitted - g) ** 2) > np.sum((line(p) - g) ** 2) * (1 + 1e-9):
        return line
    return fit


def plcc_logistic4(pred: ArrayLike, gt: ArrayLike) -> float:
    """PLCC after mapping pred through `fit_logistic4` (the VQEG convention for non-linear scorers)."""
    p, g = paired(pred, gt, min_pairs=MIN_LOGISTIC_PAIRS)
    return plcc(fit_logistic4(p, g)(p), g)


def to_levels(scores01: ArrayLike) -> np.ndarray:
    """Level indices (bad=0 … excellent=4) of [0, 1] scores, by `standard.score_to_level`."""
    return np.array([level_index(score_to_level(float(s))) for s in np.asarray(scores01, dtype=float)], dtype=int)


def confusion_matrix(pred01: ArrayLike, gt01: ArrayLike) -> np.ndarray:
    """5×5 counts of rating levels: rows are ground-truth levels, columns predicted (bad … excellent)."""
    p, g = paired(pred01, gt01)
    matrix = np.zeros((len(LEVELS), len(LEVELS)), dtype=int)
    np.add.at(matrix, (to_levels(g), to_levels(p)), 1)
    return matrix


def level_metrics(pred01: ArrayLike, gt01: ArrayLike) -> dict[str, Any]:
    """5-level accuracy, macro precision/recall/F1 and the confusion matrix of [0, 1] scores.

    Macro averages run over the levels present in either gt or pred, and a level never predicted (or never
    true) scores 0 precision (recall): the same as scikit-learn's `precision_recall_fscore_support(
    average="macro", zero_division=0)`. Macro F1 is the mean of per-level F1, not the F1 of the macro means.
    """
    matrix = confusion_matrix(pred01, gt01)
    true_counts, pred_counts, hits = matrix.sum(axis=1), matrix.sum(axis=0), np.diag(matrix)
    present = (true_counts + pred_counts) > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(pred_counts > 0, hits / pred_counts, 0.0)
        recall = np.where(true_counts > 0, hits / true_counts, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return {
        "accuracy": float(hits.sum() / matrix.sum()),
        "macro_precision": float(precision[present].mean()),
        "macro_recall": float(recall[present].mean()),
        "macro_f1": float(f1[present].mean()),
        "confusion_matrix": matrix.tolist(),
    }


def hae_compat(pred01: ArrayLike, gt01: ArrayLike) -> dict[str, float]:
    """HumanAesExpert's published columns under names that say what they compute.

    Its "MSE" is sqrt(MSE + 1e-8) (the RMSE), its "MAE" is sqrt(mean |error| + 1e-8) and its correlations are
    absolute values. Use these only to compare with numbers copied from that paper; everywhere else use the
    standard metrics.
    """
    p, g = paired(pred01, gt01, min_pairs=MIN_CORRELATION_PAIRS)
    standard = {"mse": mse(p, g), "mae": mae(p, g), "plcc": plcc(p, g), "srcc": srcc(p, g), "krcc": krcc(p, g)}
    return _hae_columns(standard)


def hae_sqrt(value: float) -> float:
    """sqrt(value + 1e-8): the square root of HumanAesExpert's metric code, epsilon included."""
    return math.sqrt(value + 1e-8)


def _hae_columns(standard: dict[str, Any]) -> dict[str, float]:
    return {
        "hae_compat_mse_is_rmse": hae_sqrt(standard["mse"]),
        "hae_compat_mae_is_sqrt_mae": hae_sqrt(standard["mae"]),
        "hae_compat_plcc_is_abs_plcc": abs(standard["plcc"]),
        "hae_compat_srcc_is_abs_srcc": abs(standard["srcc"]),
        "hae_compat_krcc_is_abs_krcc": abs(standard["krcc"]),
    }


def bootstrap_ci(
    pred: ArrayLike,
    gt: ArrayLike,
    metric: Callable[[np.ndarray, np.ndarray], float],
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of `metric(pred, gt)` over pairs resampled with replacement.

    Seeded, so a report is reproducible. Resamples where the metric is undefined (e.g. a constant resample of
    a tiny category) are left out; when all are, the interval is (NaN, NaN).
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be positive, got {n_resamples}")
    p, g = paired(pred, gt)
    rng = np.random.default_rng(seed)
    values = np.empty(n_resamples)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateInputWarning)
        for i, idx in enumerate(rng.integers(0, len(p), size=(n_resamples, len(p)))):
            values[i] = metric(p[idx], g[idx])
    values = values[np.isfinite(values)]
    if not len(values):
        return math.nan, math.nan
    tail = (1 - confidence) / 2 * 100
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return float(lo), float(hi)


def all_metrics(
    pred01: ArrayLike,
    gt01: ArrayLike,
    *,
    nan_policy: Literal["raise", "omit"] = "raise",
    bootstrap: int = 0,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Every overall metric of [0, 1] predictions against [0, 1] ground truth, as a JSON-ready dict.

    `bootstrap` > 0 adds `ci`: {metric: [lo, hi]} for `BOOTSTRAP_METRICS` at `confidence`, seeded by `seed`.
    `nan_policy="omit"` drops pairs with a non-finite value and counts them in `n_dropped`.
    """
    if nan_policy not in ("raise", "omit"):
        raise ValueError(f"nan_policy must be 'raise' or 'omit', got {nan_policy!r}")
    p, g = np.asarray(pred01, dtype=float), np.asarray(gt01, dtype=float)
    n_dropped = 0
    if nan_policy == "omit" and p.ndim == g.ndim == 1 and len(p) == len(g):
        keep = np.isfinite(p) & np.isfinite(g)
        n_dropped = int((~keep).sum())
        p, g = p[keep], g[keep]
    p, g = paired(p, g, min_pairs=MIN_LOGISTIC_PAIRS)
    fit = fit_logistic4(p, g)
    result: dict[str, Any] = {
        "n": len(p),
        "n_dropped": n_dropped,
        "srcc": srcc(p, g),
        "krcc": krcc(p, g),
        "plcc": plcc(p, g),
        "plcc_logistic4": plcc(fit(p), g),
        "logistic4_method": fit.method,
        "mse": mse(p, g),
        "rmse": rmse(p, g),
        "mae": mae(p, g),
        "mean_signed_error": mean_signed_error(p, g),
        **level_metrics(p, g),
    }
    result.update(_hae_columns(result))
    if bootstrap:
        result["ci"] = {
            name: list(bootstrap_ci(p, g, METRICS[name], n_resamples=bootstrap, confidence=confidence, seed=seed))
            for name in BOOTSTRAP_METRICS
        }
        result["ci_confidence"] = confidence
    return result


# Name -> function, for callers that pick metrics by name (bootstrap lists, report columns).
METRICS: dict[str, Callable[[ArrayLike, ArrayLike], float]] = {
    "srcc": srcc,
    "krcc": krcc,
    "plcc": plcc,
    "plcc_logistic4": plcc_logistic4,
    "mse": mse,
    "rmse": rmse,
    "mae": mae,
    "mean_signed_error": mean_signed_error,
}
