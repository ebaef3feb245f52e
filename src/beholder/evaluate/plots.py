"""Report figures as PNG bytes, drawn with matplotlib's Agg canvas.

Figures are built on `matplotlib.figure.Figure` directly, never through pyplot, so drawing needs no display,
keeps no global state and is safe from any thread. matplotlib is imported on first use: it is an optional
dependency (the `eval` extra) needed only for the HTML report.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from beholder.errors import MissingDependency
from beholder.standard import DIMENSIONS, DISPLAY_NAMES, LEVELS

if TYPE_CHECKING:
    from matplotlib.figure import Figure

MAX_CATEGORY_COLOURS = 10  # more categories than this are drawn in one colour: a legend of 30 is noise
DPI = 100


def require_matplotlib() -> None:
    """Fail with the fix when matplotlib is missing: callers check before scoring, not after hours of it."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise MissingDependency(
            "the HTML report draws its plots with matplotlib: pip install 'beholder[eval]', or use --format json,md"
        ) from None


def _figure(width: float, height: float) -> Figure:
    require_matplotlib()
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _png(fig: Figure) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    buffer = io.BytesIO()
    FigureCanvasAgg(fig).print_png(buffer)
    return buffer.getvalue()


def scatter_png(pred01: np.ndarray, gt01: np.ndarray, categories: Sequence[str]) -> bytes:
    """Predicted vs ground truth on [0, 1], coloured by category, with the identity line and level bands."""
    fig = _figure(5.5, 5)
    ax = fig.add_subplot()
    names = sorted(set(categories))
    alpha = float(np.clip(300 / max(len(pred01), 1), 0.08, 0.8))
    if 1 < len(names) <= MAX_CATEGORY_COLOURS:
        labels = np.asarray(categories)
        for name in names:
            ax.scatter(gt01[labels == name], pred01[labels == name], s=10, alpha=alpha, label=name)
        ax.legend(fontsize=8, markerscale=1.5)
    else:
        ax.scatter(gt01, pred01, s=10, alpha=alpha)
    for bound in (0.2, 0.4, 0.6, 0.8):
        ax.axhline(bound, color="0.9", lw=0.8, zorder=0)
        ax.axvline(bound, color="0.9", lw=0.8, zorder=0)
    ax.plot([0, 1], [0, 1], color="0.4", lw=1, ls="--", label="_identity")
    ax.set(xlabel="ground truth (normalised)", ylabel="prediction (normalised)", title="Predicted vs ground truth")
    return _png(fig)


def bias_png(categories: Mapping[str, Mapping[str, Any]]) -> bytes:
    """Mean signed error per category as horizontal bars with their bootstrap intervals."""
    names = list(categories)
    bias = np.array([categories[n]["bias"] for n in names])
    fig = _figure(6, 1.2 + 0.35 * len(names))
    ax = fig.add_subplot()
    colours = ["tab:red" if b > 0 else "tab:blue" for b in bias]
    ax.barh(names, bias, color=colours)
    intervals = [categories[n]["bias_ci"] for n in names]
    if all(ci is not None for ci in intervals):
        lo, hi = np.array(intervals, dtype=float).T
        ax.errorbar(bias, names, xerr=[bias - lo, hi - bias], fmt="none", ecolor="black", capsize=3, lw=1)
    ax.axvline(0, color="black", lw=0.8)
    ax.invert_yaxis()
    ax.set(xlabel="mean(prediction − ground truth), normalised", title="Bias per category (red: over-scored)")
    return _png(fig)


def dimension_mae_png(maes: Mapping[str, Mapping[str, float]]) -> bytes:
    """MAE per dimension, one bar per model: {model: {dimension key: mae}}."""
    keys = [k for k in DIMENSIONS if any(k in per_model for per_model in maes.values())]
    fig = _figure(7, 1.2 + 0.3 * len(keys) * max(1, len(maes) / 2))
    ax = fig.add_subplot()
    height = 0.8 / len(maes)
    positions = np.arange(len(keys))
    for i, (model, per_model) in enumerate(maes.items()):
        values = [per_model.get(k, np.nan) for k in keys]
        ax.barh(positions + i * height, values, height=height, label=model)
    ax.set_yticks(positions + height * (len(maes) - 1) / 2, [DISPLAY_NAMES[k] for k in keys])
    ax.invert_yaxis()
    if len(maes) > 1:
        ax.legend(fontsize=8)
    ax.set(xlabel="MAE on [0, 1]", title="MAE per dimension")
    return _png(fig)


def confusion_png(matrix: Sequence[Sequence[int]]) -> bytes:
    """The rating-level confusion matrix, shaded by each row's share and annotated with counts."""
    counts = np.asarray(matrix, dtype=float)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    fig = _figure(5, 4.3)
    ax = fig.add_subplot()
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for (row, col), count in np.ndenumerate(counts):
        ax.text(
            col, row, f"{int(count)}", ha="center", va="center", color="white" if shares[row, col] > 0.5 else "black"
        )
    ticks = np.arange(len(LEVELS))
    ax.set_xticks(ticks, LEVELS)
    ax.set_yticks(ticks, LEVELS)
    ax.set(xlabel="predicted level", ylabel="ground-truth level", title="Rating levels (shade: row share)")
    fig.colorbar(image, ax=ax, shrink=0.8)
    return _png(fig)
