"""The 12-dimension human aesthetic standard of HumanAesExpert, kept as data.

Keys are the canonical identifiers everywhere in beholder; the tuple order is the official label order
(index 0..11) used by the released HumanBeauty label files. Scores on this standard live in [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

DIMENSIONS: tuple[str, ...] = (
    "facial_brightness",
    "facial_feature_clarity",
    "facial_skin_tone",
    "facial_structure",
    "facial_contour_clarity",
    "facial_aesthetic",
    "outfit",
    "body_shape",
    "looks",
    "environment",
    "general_appearance_aesthetic",
    "overall",
)

# Display names as they appear in the official 12-line answers ("{i}. {Name} : {level}").
DISPLAY_NAMES: dict[str, str] = {
    "facial_brightness": "Facial Brightness",
    "facial_feature_clarity": "Facial Feature Clarity",
    "facial_skin_tone": "Facial Skin Tone",
    "facial_structure": "Facial Structure",
    "facial_contour_clarity": "Facial Contour Clarity",
    "facial_aesthetic": "Facial Aesthetic Score",
    "outfit": "Outfit",
    "body_shape": "Body Shape",
    "looks": "Looks",
    "environment": "Environment",
    "general_appearance_aesthetic": "General Appearance Aesthetic Score",
    "overall": "Comprehensive Aesthetic Score",
}

FACE_LEAVES: tuple[str, ...] = DIMENSIONS[0:5]
APPEARANCE_LEAVES: tuple[str, ...] = ("outfit", "body_shape", "looks")
# The 9 leaves in the order the Expert head's first layer emits them (official index order).
LEAVES: tuple[str, ...] = FACE_LEAVES + APPEARANCE_LEAVES + ("environment",)
# parent -> children; the Expert head computes each parent from its children with a small FFN.
HIERARCHY: dict[str, tuple[str, ...]] = {
    "facial_aesthetic": FACE_LEAVES,
    "general_appearance_aesthetic": APPEARANCE_LEAVES,
    "overall": ("environment", "facial_aesthetic", "general_appearance_aesthetic"),
}

LEVELS: tuple[str, ...] = ("bad", "poor", "fair", "good", "excellent")
# Lower bounds, inclusive (official code): bad < 0.2 <= poor < 0.4 <= fair < 0.6 <= good < 0.8 <= excellent.
LEVEL_LOWER_BOUNDS: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8)


@dataclass(frozen=True)
class Dimension:
    key: str
    index: int  # position in the official label order
    name: str  # display name used in the 12-line text answers
    group: str  # "face" | "appearance" | "environment" | "root"
    children: tuple[str, ...]  # empty for leaves


def _group(key: str) -> str:
    if key in FACE_LEAVES or key == "facial_aesthetic":
        return "face"
    if key in APPEARANCE_LEAVES or key == "general_appearance_aesthetic":
        return "appearance"
    return "root" if key == "overall" else "environment"


STANDARD: tuple[Dimension, ...] = tuple(
    Dimension(key, i, DISPLAY_NAMES[key], _group(key), HIERARCHY.get(key, ())) for i, key in enumerate(DIMENSIONS)
)


def score_to_level(score: float) -> str:
    """Map a [0, 1] score to its rating level with the official lower-bound-inclusive rule; a score outside
    [0, 1] (a head's raw output can be) takes the nearest level."""
    if score != score:  # NaN has no level
        raise ValueError("cannot map NaN to a level")
    for level, lower in zip(reversed(LEVELS), reversed(LEVEL_LOWER_BOUNDS)):
        if score >= lower:
            return level
    return LEVELS[0]


def level_to_score(level: str) -> float:
    """The centre of a level's interval (bad -> 0.1 ... excellent -> 0.9)."""
    return LEVEL_LOWER_BOUNDS[level_index(level)] + 0.1


def level_index(level: str) -> int:
    """0-based index of a level word (bad=0 ... excellent=4); case and surrounding space are ignored."""
    try:
        return LEVELS.index(level.strip().lower())
    except ValueError:
        raise ValueError(f"unknown level {level!r}; expected one of {LEVELS}") from None


def scores_from_official(values: Sequence[float]) -> dict[str, float]:
    """A 12-float list in official index order -> {key: score}."""
    if len(values) != len(DIMENSIONS):
        raise ValueError(f"expected {len(DIMENSIONS)} scores in official order, got {len(values)}")
    return {key: float(v) for key, v in zip(DIMENSIONS, values)}


def scores_to_official(scores: dict[str, float]) -> list[float]:
    """{key: score} -> the 12-float list in official index order (every key required)."""
    missing = [k for k in DIMENSIONS if k not in scores]
    if missing:
        raise ValueError(f"missing dimensions: {missing}")
    return [float(scores[k]) for k in DIMENSIONS]
