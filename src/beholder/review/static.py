"""`--static`: a review as one self-contained, read-only HTML file, to share a selection without a server.

The page is the review page itself with its data embedded: the rows, every column of each, the decisions so far,
and each thumbnail as a data URI, so the file opens offline anywhere and shows exactly what the server would.
"""

from __future__ import annotations

import base64
import os
from typing import Any

from beholder.files import atomic_write
from beholder.review.decisions import ReviewState
from beholder.review.page import static_html
from beholder.review.session import ReviewSession
from beholder.review.thumbnails import THUMB, Thumbnails


def static_page(session: ReviewSession, state: ReviewState, thumbnails: Thumbnails) -> tuple[str, int]:
    """(the page, how many images could not be read: their cards say so)."""
    images: dict[int, str] = {}
    rows: dict[int, dict[str, Any]] = {}
    for row_id in range(len(session.rows)):
        rows[row_id] = session.row(row_id)
        try:
            jpeg = thumbnails.get(session.image(row_id), THUMB)
        except (OSError, ValueError):  # gone, or unreadable (ImageError): the card shows it cannot be read
            continue
        images[row_id] = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")
    page = static_html({"session": session.page(state), "images": images, "rows": rows})
    return page, len(session.rows) - len(images)


def write_static(session: ReviewSession, state: ReviewState, thumbnails: Thumbnails, out: str | os.PathLike) -> int:
    """Write the static page to `out` (whole or not at all); returns how many images could not be read."""
    page, unreadable = static_page(session, state, thumbnails)
    with atomic_write(out) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return unreadable
