"""A self-contained HTML report: the report document with its figures embedded as base64 PNG data URIs, and its
images (the largest disagreements) as JPEG thumbnails made from a reduced decode, embedded the same way.

Nothing is fetched when the page opens (no scripts, fonts, stylesheets or images by URL), so the file can be
mailed, archived or opened offline and still shows everything.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from html import escape

from beholder.evaluate.document import Section, Table, Thumb, document
from beholder.evaluate.report import Evaluation
from beholder.io import key_from_text

THUMB_BOX = 200  # pixels, the longer side of a report thumbnail

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 80em; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f3f3f3; }
figure { margin: 0.5em 0 1.5em; }
figcaption { color: #666; font-size: 0.85em; }
h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }
.gallery { display: flex; flex-wrap: wrap; gap: 0.8em; margin: 0.3em 0 1.2em; }
.gallery figure { margin: 0; max-width: 200px; }
.gallery img { display: block; max-width: 200px; max-height: 200px; border-radius: 4px; background: #eee; }
.gallery figcaption { font-variant-numeric: tabular-nums; overflow-wrap: anywhere; }
.gallery .missing { width: 200px; height: 120px; display: flex; align-items: center; justify-content: center;
  background: #f3f3f3; color: #888; border-radius: 4px; font-size: 0.85em; }
"""


def to_html(evaluations: Sequence[Evaluation]) -> str:
    sections = document(evaluations)
    body = "\n".join(_section(s) for s in sections)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{escape(sections[0].title)}</title>\n<style>{STYLE}</style>\n</head>\n"
        f"<body>\n{body}\n</body>\n</html>\n"
    )


def _section(section: Section) -> str:
    parts = [f"<h{section.depth}>{escape(section.title)}</h{section.depth}>"]
    if len(section.lines) == 1:
        parts.append(f"<p>{escape(section.lines[0])}</p>")
    elif section.lines:
        parts.append("<ul>" + "".join(f"<li>{escape(line)}</li>" for line in section.lines) + "</ul>")
    if section.gallery:
        parts.append(_gallery(section.gallery))
    elif section.table:
        parts.append(html_table(section.table))
    if section.figure:
        data = base64.b64encode(section.figure()).decode("ascii")
        alt = escape(section.figure_alt or section.title)
        parts.append(
            f'<figure><img src="data:image/png;base64,{data}" alt="{alt}"><figcaption>{alt}</figcaption></figure>'
        )
    return "\n".join(parts)


def html_table(table: Table) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in table.headers)
    rows = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in table.rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _gallery(thumbs: Sequence[Thumb]) -> str:
    """Thumbnails under a heading per group, each captioned."""
    from beholder.review.thumbnails import render

    groups: dict[str, list[str]] = {}
    for t in thumbs:
        try:
            data = base64.b64encode(render(key_from_text(t.path), THUMB_BOX)).decode("ascii")
            image = f'<img src="data:image/jpeg;base64,{data}" alt="{escape(t.path)}">'
        except (OSError, ValueError):  # gone or unreadable (ImageError): said, not drawn
            image = '<div class="missing">cannot read the image</div>'
        caption = f"{escape(t.caption)}<br><small>{escape(t.path.rsplit('/', 1)[-1])}</small>"
        groups.setdefault(t.group, []).append(f"<figure>{image}<figcaption>{caption}</figcaption></figure>")
    return "\n".join(
        f"<h4>{escape(group)}</h4><div class=\"gallery\">{''.join(figures)}</div>" for group, figures in groups.items()
    )
