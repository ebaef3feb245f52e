"""Model presets kept as data: the scorer families beholder runs with one model class.

  humanaesexpert  LM level head (bad..excellent = 1..5) + regression + Expert (12 dims) + MetaVoter, 0-1,
                  InternVL dynamic tiles with thumbnail
  artimuse        "token as score": expectation over 101 two-letter tokens = 0..100, one 448 squash
  qalign          5-level expectation (excellent..bad = 5..1), 1-5, padded to a square with the CLIP mean
"""

from __future__ import annotations

import dataclasses
import string

from beholder.config import HeadsConfig, LevelHeadConfig, ModelConfig, PromptConfig
from beholder.images import CLIP_MEAN, PreprocessConfig

# ArtiMuse score tokens: aa..az = 0..25, ca..cy = 26..50, da..dy = 51..75, ea..ey = 76..100 (no 'b' prefix).
ARTIMUSE_TOKENS: tuple[str, ...] = (
    tuple("a" + c for c in string.ascii_lowercase)
    + tuple("c" + c for c in string.ascii_lowercase[:25])
    + tuple("d" + c for c in string.ascii_lowercase[:25])
    + tuple("e" + c for c in string.ascii_lowercase[:25])
)
assert len(ARTIMUSE_TOKENS) == 101

_TOKEN_AS_SCORE_HEADS = HeadsConfig(
    level=LevelHeadConfig(tokens=ARTIMUSE_TOKENS, weights=tuple(float(i) for i in range(101))),
    regression=False,
    expert=None,
    metavoter=None,
    fast="level",
)

PRESETS: dict[str, ModelConfig] = {
    "humanaesexpert": ModelConfig(name="humanaesexpert", backbone="internvl", scale=(0.0, 1.0)),
    "artimuse": ModelConfig(
        name="artimuse",
        backbone="internvl",
        scale=(0.0, 100.0),
        heads=_TOKEN_AS_SCORE_HEADS,
        preprocess=PreprocessConfig(mode="squash", max_tiles=1, thumbnail=False),
        prompt=PromptConfig(
            question="Please evaluate the aesthetics of this image and give a score.",
            answer_prefix="",
            expert_question="",
        ),
    ),
    "qalign": ModelConfig(
        name="qalign",
        backbone="internvl",
        scale=(1.0, 5.0),
        heads=HeadsConfig(
            level=LevelHeadConfig(
                tokens=(" excellent", " good", " fair", " poor", " bad"), weights=(5.0, 4.0, 3.0, 2.0, 1.0)
            ),
            regression=False,
            expert=None,
            metavoter=None,
            fast="level",
        ),
        preprocess=PreprocessConfig(mode="pad", max_tiles=1, thumbnail=False, pad_fill=CLIP_MEAN),
        prompt=PromptConfig(
            system="",
            question="How would you rate the aesthetics of this image?",
            answer_prefix="The aesthetics of the image is",
            expert_question="",
        ),
    ),
}


def preset(name: str, **changes) -> ModelConfig:
    """A preset's config, with top-level fields replaced (e.g. backbone=..., preprocess=...)."""
    try:
        config = PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; known: {sorted(PRESETS)}") from None
    return dataclasses.replace(config, **changes)
