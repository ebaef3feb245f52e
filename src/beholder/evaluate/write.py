"""Writing an evaluation's reports as files: report.json, report.md and report.html in one folder."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from beholder.evaluate.html import to_html
from beholder.evaluate.markdown import to_markdown
from beholder.evaluate.report import FORMATS, Evaluation, to_json


def write_reports(
    evaluations: Sequence[Evaluation], out_dir: str | os.PathLike[str], formats: Sequence[str] = FORMATS
) -> dict[str, Path]:
    """Write report.json / report.md / report.html into `out_dir`; returns {format: path}."""
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
    return written
