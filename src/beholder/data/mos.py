"""Mean opinion scores: raw rater annotations -> one score per image and dimension.

HumanBeauty-50K: every dimension of every image is the mean of at least 9 raters' scores in [0, 1]. An image
with fewer ratings than the minimum on any dimension is dropped whole (a label with a missing or thin dimension
would supervise the Expert head with noise); each dimension counts its own raters, since a rater may skip one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from beholder.standard import DIMENSIONS


@dataclass(frozen=True)
class Rating:
    """One rater's scores for one image; None where the rater gave no score for a dimension."""

    image: str
    rater: str
    scores: tuple[float | None, ...]  # 12 entries in official order, already on [0, 1]


@dataclass(frozen=True)
class MOSResult:
    scores: dict[str, tuple[float, ...]]  # image -> 12 MOS values, for images with enough raters everywhere
    too_few_raters: dict[str, int]  # image -> its smallest rater count over the dimensions (dropped images)


def mean_opinion_scores(ratings: Iterable[Rating], min_raters: int) -> MOSResult:
    """Per-image, per-dimension mean of the ratings; images below `min_raters` on any dimension are dropped.

    A rater who rates the same image twice is an error: which of the two counts is not ours to guess.
    """
    if min_raters < 1:
        raise ValueError(f"min_raters must be at least 1, got {min_raters}")
    by_image: dict[str, dict[str, Sequence[float | None]]] = defaultdict(dict)
    for rating in ratings:
        if len(rating.scores) != len(DIMENSIONS):
            raise ValueError(f"{rating.image}: rater {rating.rater} gave {len(rating.scores)} scores, expected 12")
        seen = by_image[rating.image]
        if rating.rater in seen:
            raise ValueError(f"{rating.image}: rater {rating.rater!r} rated it more than once")
        seen[rating.rater] = rating.scores
    scores, too_few = {}, {}
    for image, by_rater in by_image.items():
        columns = [[s[d] for s in by_rater.values() if s[d] is not None] for d in range(len(DIMENSIONS))]
        fewest = min(len(c) for c in columns)
        if fewest < min_raters:
            too_few[image] = fewest
        else:
            scores[image] = tuple(sum(c) / len(c) for c in columns)
    return MOSResult(scores, too_few)
