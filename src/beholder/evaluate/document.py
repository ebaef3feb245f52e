"""What a human-readable report says, in order, independent of its format.

`document(evaluations)` turns reports into sections of facts and tables; the Markdown and HTML writers only
render them (HTML adds each section's figure), so the two formats never disagree about content.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from beholder.evaluate import plots
from beholder.evaluate.disagreements import disagreements_file
from beholder.evaluate.report import LEADERBOARD_COLUMNS, Evaluation, leaderboard
from beholder.standard import DIMENSIONS, DISPLAY_NAMES, LEVELS

LABELS: dict[str, str] = {
    "srcc": "SRCC",
    "krcc": "KRCC (tau-b)",
    "plcc": "PLCC (raw)",
    "plcc_logistic4": "PLCC (after 4-parameter logistic fit)",
    "mse": "MSE",
    "rmse": "RMSE",
    "mae": "MAE",
    "mean_signed_error": "Mean signed error (bias)",
    "accuracy": "5-level accuracy",
    "macro_precision": "Macro precision",
    "macro_recall": "Macro recall",
    "macro_f1": "Macro F1",
    "hae_compat_mse_is_rmse": 'HumanAesExpert "MSE" (is RMSE)',
    "hae_compat_mae_is_sqrt_mae": 'HumanAesExpert "MAE" (is sqrt of mean |error|)',
    "hae_compat_plcc_is_abs_plcc": 'HumanAesExpert "PLCC" (is |PLCC|)',
    "hae_compat_srcc_is_abs_srcc": 'HumanAesExpert "SRCC" (is |SRCC|)',
    "hae_compat_krcc_is_abs_krcc": 'HumanAesExpert "KRCC" (is |KRCC|)',
}
# Provenance entries worth a line in a model's section (the JSON report keeps all of them).
PROVENANCE_SHOWN: tuple[str, ...] = ("source", "model", "hub_id", "weights_sha256", "mode", "dtype", "created")
SHORT: dict[str, str] = {"plcc_logistic4": "PLCC (4PL)", "krcc": "KRCC", "plcc": "PLCC", "macro_f1": "F1"}
STANDARD_METRICS: tuple[str, ...] = tuple(k for k in LABELS if not k.startswith("hae_compat_"))
COMPAT_METRICS: tuple[str, ...] = tuple(k for k in LABELS if k.startswith("hae_compat_"))


@dataclass(frozen=True)
class Table:
    headers: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class Thumb:
    group: str  # the heading it is shown under (a category)
    path: str  # the image: a key as tables write it
    caption: str


@dataclass(frozen=True)
class Section:
    title: str
    depth: int  # 1 = the document, 2 = a model or a comparison, 3 = a part of one
    lines: list[str] = field(default_factory=list)  # facts, one sentence each
    table: Table | None = None
    figure: Callable[[], bytes] | None = None  # draws the section's plot as PNG (HTML only)
    figure_alt: str = ""
    gallery: list[Thumb] = field(default_factory=list)  # images, which HTML shows in place of the table


def fmt(value: Any) -> str:
    """A table cell: 4 decimals for floats, a dash for undefined (None or NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def document(evaluations: Sequence[Evaluation]) -> list[Section]:
    """Title, leaderboard, per-dimension MAE across models, then each model's own sections."""
    if not evaluations:
        raise ValueError("no evaluations to report")
    benchmarks = sorted({e.report["benchmark"]["name"] for e in evaluations})
    sections = [Section(f"Aesthetic evaluation on {', '.join(benchmarks)}", 1), leaderboard_section(evaluations)]
    bias = category_bias_section(evaluations)
    sections += [bias] if bias else []
    sections += _dimension_sections(evaluations)
    for e in evaluations:
        sections += _model_sections(e)
    return sections


def leaderboard_section(evaluations: Sequence[Evaluation]) -> Section:
    """The leaderboard as a table (also what `beholder evaluate` prints)."""
    headers = ["Model", "n"] + [SHORT.get(k, LABELS[k]) for k in LEADERBOARD_COLUMNS]
    rows = [
        [row["model"], fmt(row["n"])] + [fmt(row[k]) for k in LEADERBOARD_COLUMNS] for row in leaderboard(evaluations)
    ]
    lines = ["Sorted by SRCC. MAE/RMSE and levels on [0, 1]-normalised scores; see each model's scales below."]
    return Section("Leaderboard", 2, lines, Table(headers, rows))


def category_bias_section(evaluations: Sequence[Evaluation]) -> Section | None:
    """Every model's bias per category in one table (rows: models in leaderboard order; columns: categories), or
    None when the benchmark has no categories. Also what `beholder evaluate` prints under the leaderboard."""
    with_categories = {e.name: e.report["categories"] for e in evaluations if e.report["categories"]}
    if not with_categories:
        return None
    names = sorted({c for table in with_categories.values() for c in table})
    order = [row["model"] for row in leaderboard(evaluations) if row["model"] in with_categories]
    rows = [[model] + [fmt((with_categories[model].get(c) or {}).get("bias")) for c in names] for model in order]
    counts = {c: max((table.get(c) or {}).get("n", 0) for table in with_categories.values()) for c in names}
    headers = ["Model"] + [f"{c} (n={counts[c]})" for c in names]
    lines = ["Mean of prediction − ground truth on [0, 1] per category: positive means the model over-scores it."]
    return Section("Per-category bias, all models", 2, lines, Table(headers, rows))


def _dimension_sections(evaluations: Sequence[Evaluation]) -> list[Section]:
    """The paper's Table 3 shape: a row per model, a column per dimension; standard MAE, then the compat one."""
    with_dims = [e for e in evaluations if e.report["dimensions"]]
    if not with_dims:
        return []
    headers = ["Model"] + [DISPLAY_NAMES[k] for k in DIMENSIONS]

    def table(column: str) -> Table:
        return Table(
            headers,
            [
                [e.name] + [fmt((e.report["dimensions"].get(k) or {}).get(column)) for k in DIMENSIONS]
                for e in with_dims
            ],
        )

    maes = {e.name: {k: v["mae"] for k, v in e.report["dimensions"].items()} for e in with_dims}
    return [
        Section(
            "Per-dimension MAE",
            2,
            ["Mean absolute error per dimension, scores on [0, 1]; only images labelled with 12 dimensions count."],
            table=table("mae"),
            figure=partial(plots.dimension_mae_png, maes),
            figure_alt="MAE per dimension",
        ),
        Section(
            "Per-dimension MAE, HumanAesExpert-compatible",
            3,
            ["sqrt(mean |error|), which the HumanAesExpert paper's Table 3 labels MAE: compare with the paper here."],
            table=table("hae_compat_mae_is_sqrt_mae"),
        ),
    ]


def _model_sections(e: Evaluation) -> list[Section]:
    r = e.report
    overall, ci = r["overall"], r["overall"].get("ci", {})
    scales, cov = r["scales"], r["coverage"]
    pred, gt = scales["prediction"], scales["ground_truth"]
    lines = [
        f"Benchmark: {r['benchmark']['name']} ({r['benchmark']['layout']} layout, {r['benchmark']['source']}).",
        f"Prediction scale: {_scale(pred)} from {pred['source']}.",
        f"Ground-truth scale: {_scale(gt)} from {gt['source']}.",
        scales["note"],
        f"Coverage: {cov['n_scored']} of {cov['n_items']} images scored; {cov['n_failed']} failed, "
        f"{cov['n_missing']} without a prediction, {cov['n_unmatched_predictions']} predictions matched no image.",
    ]
    made_by = {k: r["model"]["provenance"][k] for k in PROVENANCE_SHOWN if r["model"]["provenance"].get(k)}
    if made_by:
        lines.insert(0, "Made by: " + ", ".join(f"{k} {v}" for k, v in made_by.items()) + ".")
    if scales["predictions_outside_scale"]:
        lines.append(f"Warning: {scales['predictions_outside_scale']} predictions lie outside the prediction scale.")
    if overall["logistic4_method"] != "logistic4":
        lines.append("The 4-parameter logistic fit failed; the fitted PLCC uses a least-squares line instead.")
    if r["bootstrap"]:
        b = r["bootstrap"]
        lines.append(
            f"Intervals: {b['confidence']:.0%} percentile bootstrap, {b['n_resamples']} resamples, seed {b['seed']}."
        )
    metric_rows = [[LABELS[k], fmt(overall[k]), _interval(ci.get(k))] for k in STANDARD_METRICS]
    confusion = overall["confusion_matrix"]
    sections = [
        Section(e.name, 2, lines),
        Section(
            "Overall metrics",
            3,
            table=Table(["Metric", "Value", "Interval"], metric_rows),
            figure=partial(plots.scatter_png, e.pred01, e.gt01, e.categories),
            figure_alt="predicted vs ground truth",
        ),
        Section(
            "HumanAesExpert-compatible columns",
            3,
            ["Only for comparing with numbers copied from the HumanAesExpert paper; the names say what each computes."],
            table=Table(["Column", "Value"], [[LABELS[k], fmt(overall[k])] for k in COMPAT_METRICS]),
        ),
        Section(
            "Rating-level confusion matrix",
            3,
            ["Rows: ground-truth level, columns: predicted level, from [0, 1] scores (lower bounds inclusive)."],
            table=Table(
                ["gt \\ pred", *LEVELS], [[lvl, *map(str, row)] for lvl, row in zip(LEVELS, confusion, strict=True)]
            ),
            figure=partial(plots.confusion_png, confusion),
            figure_alt="level confusion matrix",
        ),
    ]
    if r["categories"]:
        sections.append(_category_section(r["categories"]))
    if r["disagreements"]:
        sections.append(_disagreement_section(e.name, r["disagreements"]))
    return sections


def _disagreement_section(model: str, found: dict[str, list[dict[str, Any]]]) -> Section:
    rows, gallery = [], []
    for category, items in found.items():
        for d in items:
            p, g = d["prediction01"], d["ground_truth01"]
            rows.append([category, d["path"], f"{p:.3f}", f"{g:.3f}", f"{p - g:+.3f}"])
            gallery.append(Thumb(category, d["path"], f"model {p:.2f} · truth {g:.2f} ({p - g:+.2f})"))
    table = disagreements_file(model)
    lines = [
        "Per category, the images where the model and the ground truth differ most, both on [0, 1].",
        f"Review them: beholder review {table} --group-by category --by disagreement",
    ]
    return Section("Largest disagreements", 3, lines, Table(["Category", "Image", "Model", "Truth", "Difference"],
                                                           rows), gallery=gallery)  # fmt: skip


CATEGORY_COLUMNS: dict[str, str] = {
    "n": "n",
    "mean_gt": "Mean gt",
    "mean_pred": "Mean pred",
    "bias": "Bias",
    "bias_ci": "Bias interval",
    "mae": "MAE",
    "srcc": "SRCC",
    "plcc": "PLCC",
}


def _category_section(categories: dict[str, dict[str, Any]]) -> Section:
    rows = [
        [name] + [_interval(c[k]) if k.endswith("_ci") else fmt(c[k]) for k in CATEGORY_COLUMNS]
        for name, c in categories.items()
    ]
    lines = [
        "Bias is the mean of prediction − ground truth on [0, 1]: positive means the model over-scores the category.",
        "SRCC and PLCC need at least 3 images; – marks an undefined value.",
    ]
    return Section(
        "Per-category bias",
        3,
        lines,
        table=Table(["Category", *CATEGORY_COLUMNS.values()], rows),
        figure=partial(plots.bias_png, categories),
        figure_alt="bias per category",
    )


def _scale(scale: dict[str, Any]) -> str:
    return f"[{scale['lo']:g}, {scale['hi']:g}]"


def _interval(ci: Sequence[float] | None) -> str:
    return "–" if not ci or any(v is None or math.isnan(v) for v in ci) else f"[{ci[0]:.4f}, {ci[1]:.4f}]"
