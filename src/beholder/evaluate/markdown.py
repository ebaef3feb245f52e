"""Markdown rendering of the report document (see `document`): headings, fact lines and pipe tables."""

from __future__ import annotations

from collections.abc import Sequence

from beholder.evaluate.document import Table, document
from beholder.evaluate.report import Evaluation


def to_markdown(evaluations: Sequence[Evaluation]) -> str:
    parts = []
    for section in document(evaluations):
        parts.append(f"{'#' * section.depth} {section.title}")
        if len(section.lines) == 1:
            parts.append(section.lines[0])
        elif section.lines:
            parts.append("\n".join(f"- {line}" for line in section.lines))
        if section.table:
            parts.append(markdown_table(section.table))
    return "\n\n".join(parts) + "\n"


def markdown_table(table: Table) -> str:
    """A GitHub-flavoured pipe table; pipes inside cells are escaped."""

    def row(cells: Sequence[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    return "\n".join([row(table.headers), row(["---"] * len(table.headers)), *map(row, table.rows)])
