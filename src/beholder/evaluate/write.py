"""Writing an evaluation's reports as files: report.json, report.md and report.html in one folder, and each model's
largest disagreements as a table `beholder review` opens (disagreements-<model>.parquet)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from beholder.evaluate.disagreements import disagreements_file, write_disagreements
from beholder.evaluate.html import to_html
from beholder.evaluate.markdown import to_markdown
from beholder.evaluate.report import FORMATS, Evaluation, to_json


def write_reports(
    evaluations: Sequence[Evaluation], out_dir: str | os.PathLike[str], formats: Sequence[str] = FORMATS
) -> dict[str, Path]:
    """Write report.json / report.md / report.html and the disagreement tables into `out_dir`; returns {what: path}
    (what: a format, or "disagreements <model>")."""
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ValueError(f"unknown report formats {sorted(unknown)}; expected some of {FORMATS}")
    renderers = {"json": to_json, "md": to_markdown, "html": to_html}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for fmt in formats:
        path = out / f"report.{fmt}"
        path.write_text(renderers[fmt](evaluations), encoding="utf-8")
        written[fmt] = path
    for e in evaluations:
        if e.report["disagreements"]:
            scale = e.report["scales"]["prediction"]
            provenance = {
                "source": "beholder evaluate: the images where the model and the ground truth disagree most",
                "model": e.name, "benchmark": e.report["benchmark"]["source"], "scale": [scale["lo"], scale["hi"]],
                "ground_truth_scale": [e.report["scales"]["ground_truth"][k] for k in ("lo", "hi")],
            }  # fmt: skip
            table = out / disagreements_file(e.name)
            written[f"disagreements {e.name}"] = write_disagreements(e.report["disagreements"], table, provenance)
    return written

