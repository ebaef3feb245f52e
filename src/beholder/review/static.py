"""`--static`: a review as one self-contained, read-only HTML file, to share a selection without a server.

The page is the review page itself with its data embedded: the rows, every column of each, the decisions so far,
and each thumbnail as a data URI, so the file opens offline anywhere and shows exactly what the server would. An A/B
review's page stays blind as on the server: its pairs, the picks so far and the preference report.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from typing import Any

from beholder.files import atomic_write
from beholder.jsonsafe import nan_to_none
from beholder.review.decisions import ReviewState
from beholder.review.page import static_html
from beholder.review.pairs import PairSession
from beholder.review.report import preference_report
from beholder.review.session import ReviewSession
from beholder.review.thumbnails import THUMB, Thumbnails


def static_page(session: ReviewSession | PairSession, state: ReviewState, thumbnails: Thumbnails) -> tuple[str, int]:
    """(the page, how many images could not be read: their cards say so)."""
    extra: dict[str, Any]
    if isinstance(session, PairSession):  # blind: no row's columns, only the images of the pairs
        ids: Sequence[int] = sorted({row_id for pair in session.pairs for row_id in (pair.a, pair.b)})
        extra = {"report": nan_to_none(preference_report(session, state).to_dict())}
    else:
        ids = range(len(session.rows))
        extra = {"rows": {row_id: session.row(row_id) for row_id in ids}}
    images: dict[int, str] = {}
    for row_id in ids:
        try:
            jpeg = thumbnails.get(session.image(row_id), THUMB)
        except (OSError, ValueError):  # gone, or unreadable (ImageError): the card shows it cannot be read
            continue
        images[row_id] = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")
    page = static_html({"session": session.page(state), "images": images, **extra})
    return page, len(ids) - len(images)


def write_static(
    session: ReviewSession | PairSession, state: ReviewState, thumbnails: Thumbnails, out: str | os.PathLike
) -> int:
    """Write the static page to `out` (whole or not at all); returns how many images could not be read."""
    page, unreadable = static_page(session, state, thumbnails)
    with atomic_write(out) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return unreadable
