"""`beholder review`: a local web page where a person reviews the selected images of a score table (or picks the
better of two models' images, A/B), and every decision is saved as data.

  session.py     what is under review: rows chosen by `select`'s criteria, each image known by a row id
  pairs.py       A/B: the two tables' images of the same group, paired rank by rank, sides hidden
  decisions.py   the decisions log: append-only JSONL, fsync'd per decision, undo as an event, resume by replay
  report.py      the A/B preference report (Wilson interval, ties apart) and a review's summary; both measure
                 scorer-human agreement
  thumbnails.py  thumbnails for people: reduced decode, cached on disk by path, mtime and size; tar members too
  page.py        the page (assets/: HTML, CSS, JS shipped as package data, no build step, nothing from the network)
  app.py         the JSON API and the page on the web stack of `beholder serve`
  static.py      `--static`: the page with its data and thumbnails embedded, one read-only file

The page and its server are the `serve` extra (FastAPI); sessions, decisions, reports and exports are not.
"""

from beholder.review.decisions import DecisionLog, ReviewState, read_decisions, read_state
from beholder.review.pairs import PairSession
from beholder.review.report import (
    PreferenceReport,
    ReviewSummary,
    format_preference,
    format_summary,
    preference_report,
    review_summary,
)
from beholder.review.session import Criteria, ReviewSession, ScoreTable
from beholder.review.static import write_static
from beholder.review.thumbnails import Thumbnails, default_thumbnail_cache

__all__ = [
    "Criteria",
    "DecisionLog",
    "PairSession",
    "PreferenceReport",
    "ReviewSession",
    "ReviewState",
    "ReviewSummary",
    "ScoreTable",
    "Thumbnails",
    "default_thumbnail_cache",
    "format_preference",
    "format_summary",
    "preference_report",
    "read_decisions",
    "read_state",
    "review_summary",
    "write_static",
]
