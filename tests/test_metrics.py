"""beholder.metrics against scipy / scikit-learn, hand-computed cases, and the input policy's edge cases."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from scipy import optimize, stats
from sklearn import metrics as skm

from beholder import metrics
from beholder.standard import LEVELS, level_index, score_to_level

# A small case worked out by hand: rank differences (-1, 1, -1, 1, 0), two discordant pairs of ten.
HAND_PRED = [1.0, 2.0, 3.0, 4.0, 5.0]
HAND_GT = [2.0, 1.0, 4.0, 3.0, 5.0]


def noisy_pairs(n: int, seed: int, noise: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    gt = rng.random(n)
    return np.clip(gt + rng.normal(0, noise, n), 0, 1), gt


# ---- correlations ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("decimals", [None, 1])  # 1 decimal: heavy ties on both sides
def test_correlations_match_scipy(seed: int, decimals: int | None) -> None:
    pred, gt = noisy_pairs(200, seed, noise=0.5)
    if decimals is not None:
        pred, gt = pred.round(decimals), gt.round(decimals)
    assert metrics.srcc(pred, gt) == pytest.approx(stats.spearmanr(pred, gt).statistic, abs=1e-12)
    assert metrics.krcc(pred, gt) == pytest.approx(stats.kendalltau(pred, gt, variant="b").statistic, abs=1e-12)
    assert metrics.plcc(pred, gt) == pytest.approx(stats.pearsonr(pred, gt).statistic, abs=1e-12)


def test_correlations_hand_computed() -> None:
    assert metrics.srcc(HAND_PRED, HAND_GT) == pytest.approx(1 - 6 * 4 / (5 * (25 - 1)))  # 0.8
    assert metrics.krcc(HAND_PRED, HAND_GT) == pytest.approx((8 - 2) / 10)  # 0.6
    assert metrics.plcc(HAND_PRED, HAND_GT) == pytest.approx(8 / 10)  # Σdxdy / sqrt(Σdx² Σdy²)


def test_kendall_is_tau_b_with_ties() -> None:
    pred, gt = [1, 1, 2, 3], [1, 2, 2, 3]
    # concordant 4, discordant 0; ties only in pred: 1 pair, only in gt: 1 pair -> tau-b = 4 / sqrt(5 * 5)
    assert metrics.krcc(pred, gt) == pytest.approx(4 / 5)


def test_correlations_are_scale_free() -> None:
    pred, gt = noisy_pairs(100, 0)
    for fn in (metrics.srcc, metrics.krcc, metrics.plcc, metrics.plcc_logistic4):
        assert fn(pred * 100, gt * 9 + 1) == pytest.approx(fn(pred, gt), abs=1e-6)


@pytest.mark.parametrize("fn", [metrics.srcc, metrics.krcc, metrics.plcc])
def test_constant_input_gives_nan_with_warning(fn) -> None:
    with pytest.warns(metrics.DegenerateInputWarning, match="pred is constant"):
        assert math.isnan(fn([0.5, 0.5, 0.5, 0.5], [0.1, 0.2, 0.3, 0.4]))
    with pytest.warns(metrics.DegenerateInputWarning, match="gt is constant"):
        assert math.isnan(fn([0.1, 0.2, 0.3, 0.4], [0.7, 0.7, 0.7, 0.7]))


# ---- input policy ------------------------------------------------------------------------------------------

ALL_PAIRWISE = [
    metrics.srcc,
    metrics.krcc,
    metrics.plcc,
    metrics.plcc_logistic4,
    metrics.mse,
    metrics.rmse,
    metrics.mae,
    metrics.mean_signed_error,
    metrics.level_metrics,
    metrics.confusion_matrix,
    metrics.hae_compat,
    metrics.all_metrics,
]


@pytest.mark.parametrize("fn", ALL_PAIRWISE)
def test_length_mismatch_is_an_error(fn) -> None:
    with pytest.raises(ValueError, match="length mismatch: 6 predictions vs 5"):
        fn([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], [0.1, 0.2, 0.3, 0.4, 0.5])


@pytest.mark.parametrize("fn", ALL_PAIRWISE)
@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_values_are_an_error(fn, bad: float) -> None:
    with pytest.raises(ValueError, match="1 of 6 pairs have a non-finite value"):
        fn([0.1, 0.2, bad, 0.4, 0.5, 0.6], [0.1, 0.3, 0.2, 0.4, 0.6, 0.5])


def test_two_dimensional_input_is_an_error() -> None:
    with pytest.raises(ValueError, match="must be 1-D"):
        metrics.mae([[0.1, 0.2]], [[0.1, 0.2]])


@pytest.mark.parametrize(
    ("fn", "needed"),
    [(metrics.srcc, 3), (metrics.krcc, 3), (metrics.plcc, 3), (metrics.plcc_logistic4, 5), (metrics.mae, 1)],
)
def test_too_few_pairs_is_an_error(fn, needed: int) -> None:
    values = [0.1, 0.5, 0.2, 0.9, 0.3][: needed - 1]
    with pytest.raises(ValueError, match=f"need at least {needed} pairs, got {needed - 1}"):
        fn(values, values[::-1])


def test_nan_policy_omit_drops_and_counts() -> None:
    pred, gt = noisy_pairs(50, 1)
    pred_nan, gt_nan = pred.copy(), gt.copy()
    pred_nan[[3, 7]] = np.nan
    gt_nan[11] = np.nan
    result = metrics.all_metrics(pred_nan, gt_nan, nan_policy="omit")
    keep = np.ones(50, bool)
    keep[[3, 7, 11]] = False
    assert result["n"] == 47 and result["n_dropped"] == 3
    assert result["srcc"] == pytest.approx(metrics.srcc(pred[keep], gt[keep]))
    with pytest.raises(ValueError, match="non-finite"):
        metrics.all_metrics(pred_nan, gt_nan)
    with pytest.raises(ValueError, match="nan_policy"):
        metrics.all_metrics(pred, gt, nan_policy="ignore")


# ---- errors ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(3))
def test_error_metrics_match_sklearn(seed: int) -> None:
    pred, gt = noisy_pairs(300, seed)
    assert metrics.mse(pred, gt) == pytest.approx(skm.mean_squared_error(gt, pred))
    assert metrics.rmse(pred, gt) == pytest.approx(math.sqrt(skm.mean_squared_error(gt, pred)))
    assert metrics.mae(pred, gt) == pytest.approx(skm.mean_absolute_error(gt, pred))


def test_error_metrics_hand_computed() -> None:
    # errors pred - gt = (-1, 1, -1, 1, 0)
    assert metrics.mae(HAND_PRED, HAND_GT) == pytest.approx(0.8)
    assert metrics.mse(HAND_PRED, HAND_GT) == pytest.approx(0.8)
    assert metrics.rmse(HAND_PRED, HAND_GT) == pytest.approx(math.sqrt(0.8))
    assert metrics.mean_signed_error(HAND_PRED, HAND_GT) == pytest.approx(0.0)
    assert metrics.mean_signed_error([0.6, 0.8], [0.5, 0.5]) == pytest.approx(0.2)  # over-scoring is positive


def test_hae_compat_columns_say_what_they_compute() -> None:
    pred, gt = [0.9, 0.7, 0.5, 0.3, 0.1], [0.1, 0.4, 0.5, 0.6, 0.8]  # strongly negative correlation
    compat = metrics.hae_compat(pred, gt)
    assert compat["hae_compat_mse_is_rmse"] == math.sqrt(metrics.mse(pred, gt) + 1e-8)
    assert compat["hae_compat_mae_is_sqrt_mae"] == math.sqrt(metrics.mae(pred, gt) + 1e-8)
    exact = metrics.hae_compat(gt, gt)  # the official epsilon inside the square roots: a perfect score is 1e-4
    assert exact["hae_compat_mse_is_rmse"] == exact["hae_compat_mae_is_sqrt_mae"] == pytest.approx(1e-4, rel=1e-12)
    assert metrics.plcc(pred, gt) < 0
    assert compat["hae_compat_plcc_is_abs_plcc"] == pytest.approx(-metrics.plcc(pred, gt))
    assert compat["hae_compat_srcc_is_abs_srcc"] == pytest.approx(1.0)
    assert compat["hae_compat_krcc_is_abs_krcc"] == pytest.approx(1.0)


# ---- logistic fit ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [1.0, 100.0])  # VQEG start in pred's own units: any native scale fits
@pytest.mark.parametrize("direction", [1, -1])
def test_logistic_fit_recovers_a_known_curve(scale: float, direction: int) -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, 400)
    upper, lower = (9.0, 2.0)[::direction]  # a sigmoid between 2 and 9, rising or (direction -1) falling
    gt = metrics.logistic4(x, upper, lower, 0.5, 0.08) + rng.normal(0, 0.05, len(x))
    fit = metrics.fit_logistic4(x * scale, gt)
    assert fit.method == "logistic4"
    b1, b2, b3, b4 = fit.params
    assert (b1, b2, b3 / scale, abs(b4) / scale) == pytest.approx((upper, lower, 0.5, 0.08), rel=0.05)
    assert metrics.plcc_logistic4(x * scale, gt) > abs(metrics.plcc(x, gt)) > 0.8
    assert metrics.plcc_logistic4(x * scale, gt) == pytest.approx(0.999, abs=1e-3)


def test_logistic_fit_falls_back_to_a_line_when_the_optimiser_fails(monkeypatch) -> None:
    pred, gt = noisy_pairs(100, 3)

    def fail(*args, **kwargs):
        raise RuntimeError("Optimal parameters not found")

    monkeypatch.setattr(optimize, "curve_fit", fail)
    fit = metrics.fit_logistic4(pred, gt)
    assert fit.method == "linear"
    assert fit.params == pytest.approx(tuple(np.polyfit(pred, gt, 1)))
    assert metrics.plcc_logistic4(pred, gt) == pytest.approx(metrics.plcc(pred, gt))
    assert metrics.all_metrics(pred, gt)["logistic4_method"] == "linear"


def test_logistic_fit_of_constant_predictions_is_flat() -> None:
    fit = metrics.fit_logistic4([0.5] * 6, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    assert fit.method == "linear" and fit.params == pytest.approx((0.0, 0.35))
    with pytest.warns(metrics.DegenerateInputWarning):
        assert math.isnan(metrics.plcc_logistic4([0.5] * 6, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]))


# ---- rating levels -----------------------------------------------------------------------------------------


def test_levels_use_the_standard_lower_bound_inclusive_rule() -> None:
    scores = [-0.3, 0.0, 0.1999, 0.2, 0.3999, 0.4, 0.6, 0.7999, 0.8, 1.0, 1.4]
    expected = [0, 0, 0, 1, 1, 2, 3, 3, 4, 4, 4]
    assert metrics.to_levels(scores).tolist() == expected
    assert [level_index(score_to_level(s)) for s in scores] == expected


@pytest.mark.parametrize("seed", range(4))
def test_level_metrics_match_sklearn(seed: int) -> None:
    pred, gt = noisy_pairs(250, seed, noise=0.25)
    if seed == 3:  # a model that never predicts the extreme levels
        pred = np.clip(pred, 0.25, 0.75)
    result = metrics.level_metrics(pred, gt)
    p, g = metrics.to_levels(pred), metrics.to_levels(gt)
    precision, recall, f1, _ = skm.precision_recall_fscore_support(g, p, average="macro", zero_division=0)
    assert result["accuracy"] == pytest.approx(skm.accuracy_score(g, p))
    assert result["macro_precision"] == pytest.approx(precision)
    assert result["macro_recall"] == pytest.approx(recall)
    assert result["macro_f1"] == pytest.approx(f1)
    assert result["confusion_matrix"] == skm.confusion_matrix(g, p, labels=range(len(LEVELS))).tolist()


def test_level_metrics_hand_computed() -> None:
    # gt levels: bad, poor, fair, good, bad; predicted: bad, poor, fair, good, excellent
    result = metrics.level_metrics([0.1, 0.3, 0.5, 0.7, 0.9], [0.1, 0.3, 0.5, 0.7, 0.1])
    assert result["accuracy"] == pytest.approx(4 / 5)
    # per level (bad, poor, fair, good, excellent): precision 1,1,1,1,0; recall 1/2,1,1,1,0 (excellent: no
    # true items but predicted once, so it counts, with 0)
    assert result["macro_precision"] == pytest.approx(4 / 5)
    assert result["macro_recall"] == pytest.approx(3.5 / 5)
    assert result["macro_f1"] == pytest.approx((2 / 3 + 3) / 5)
    assert result["confusion_matrix"][0] == [1, 0, 0, 0, 1]


# ---- bootstrap and the all-in-one ----------------------------------------------------------------------------


def test_bootstrap_is_seeded_and_brackets_the_estimate() -> None:
    pred, gt = noisy_pairs(300, 5)
    ci = metrics.bootstrap_ci(pred, gt, metrics.srcc, n_resamples=300, seed=1)
    assert ci == metrics.bootstrap_ci(pred, gt, metrics.srcc, n_resamples=300, seed=1)
    assert ci != metrics.bootstrap_ci(pred, gt, metrics.srcc, n_resamples=300, seed=2)
    assert ci[0] < metrics.srcc(pred, gt) < ci[1]
    narrower = metrics.bootstrap_ci(pred, gt, metrics.srcc, n_resamples=300, confidence=0.5, seed=1)
    assert ci[0] < narrower[0] < narrower[1] < ci[1]


def test_bootstrap_agrees_with_scipy_percentile_bootstrap() -> None:
    pred, gt = noisy_pairs(400, 6)
    ours = metrics.bootstrap_ci(pred, gt, metrics.mae, n_resamples=2000, seed=0)
    theirs = stats.bootstrap(
        (pred, gt), metrics.mae, paired=True, vectorized=False, n_resamples=2000, method="percentile", rng=0
    ).confidence_interval
    assert ours == pytest.approx((theirs.low, theirs.high), abs=0.004)


def test_bootstrap_of_an_undefined_metric_is_nan() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the per-resample warnings are absorbed
        lo, hi = metrics.bootstrap_ci([0.5] * 10, np.linspace(0, 1, 10), metrics.srcc, n_resamples=20)
    assert math.isnan(lo) and math.isnan(hi)
    with pytest.raises(ValueError, match="confidence"):
        metrics.bootstrap_ci([0.1, 0.2], [0.1, 0.2], metrics.mae, confidence=95)


def test_all_metrics_is_consistent_and_json_ready() -> None:
    pred, gt = noisy_pairs(120, 7)
    result = metrics.all_metrics(pred, gt, bootstrap=100, seed=3)
    for name, fn in metrics.METRICS.items():
        assert result[name] == pytest.approx(fn(pred, gt)), name
    assert result["n"] == 120 and result["logistic4_method"] == "logistic4"
    assert set(result["ci"]) == set(metrics.BOOTSTRAP_METRICS)
    for name, (lo, hi) in result["ci"].items():
        assert lo <= result[name] <= hi, name
    assert result["hae_compat_mae_is_sqrt_mae"] == pytest.approx(math.sqrt(result["mae"]))
    assert sum(map(sum, result["confusion_matrix"])) == 120
    json.dumps(result, allow_nan=False)
