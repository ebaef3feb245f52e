"""The review page: plain HTML, CSS and JavaScript shipped with beholder (no build step, nothing fetched from the
network), served by the review app or inlined, with its data, into one self-contained file (`--static`)."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

_FILES = resources.files("beholder.review") / "assets"
_STYLE_TAG = '<link rel="stylesheet" href="assets/review.css">'
_SCRIPT_TAG = '<script src="assets/review.js" defer></script>'
_DATA_TAG = '<script id="beholder-data" type="application/json"></script>'


@cache
def _read(name: str) -> str:
    return (_FILES / name).read_text(encoding="utf-8")


# The files GET /assets/{name} answers, and their media types: no other name is served.
ASSETS: dict[str, str] = {"review.css": "text/css; charset=utf-8", "review.js": "text/javascript; charset=utf-8"}


def asset(name: str) -> str:
    """An asset's content; KeyError for a name that is not one."""
    if name not in ASSETS:
        raise KeyError(name)
    return _read(name)


def page_html() -> str:
    """The page as the server sends it: it loads its style and script from /assets and its data from /api."""
    return _read("index.html")


def static_html(data: dict[str, Any]) -> str:
    """The page as one file: style and script inlined, and `data` (the session's page data, images as data URIs,
    every column of every row) embedded, so it opens offline and read-only."""
    html = page_html()
    for tag in (_STYLE_TAG, _SCRIPT_TAG, _DATA_TAG):
        if tag not in html:
            raise RuntimeError(f"the page template lacks {tag}")
    # "</" cannot end the script element early once escaped; JSON reads "<\/" as "</"
    payload = json.dumps(data, ensure_ascii=False, allow_nan=False).replace("</", "<\\/")
    # an inline script cannot be deferred: it goes after the data, at the end of the body
    return (
        html.replace(_STYLE_TAG, f"<style>\n{_read('review.css')}</style>")
        .replace(_SCRIPT_TAG, "")
        .replace(_DATA_TAG, f'<script id="beholder-data" type="application/json">{payload}</script>\n'
                            f"<script>\n{_read('review.js')}</script>")
    )  # fmt: skip
