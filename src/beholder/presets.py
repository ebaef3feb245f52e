"""Model presets kept as data: the scorer families beholder runs with one model class, and the released models.

Families:
  humanaesexpert  LM level head (bad..excellent = 1..5) + regression + Expert (12 dims) + MetaVoter, 0-1,
                  InternVL dynamic tiles with thumbnail
  artimuse        "token as score": expectation over 101 two-letter tokens = 0..100, one 448 squash
  qalign          5-level expectation (excellent..bad = 5..1), 1-5, padded to a square with the CLIP mean
Released models (a family plus a hub id, licence and the prompts of their public code): humanaesexpert-1b/-8b,
the ArtiMuse checkpoints and ernie-image-aes. They ship in InternVL's chat layout; `beholder.load(name or hub id)`
downloads and converts them once (beholder.convert).
"""

from __future__ import annotations

import dataclasses
import difflib
import string

from beholder.config import HeadsConfig, LevelHeadConfig, ModelConfig, PromptConfig
from beholder.preprocess import CLIP_MEAN, CLIP_STD, PreprocessConfig

# ArtiMuse score tokens: aa..az = 0..25, ca..cy = 26..50, da..dy = 51..75, ea..ey = 76..100 (no 'b' prefix).
ARTIMUSE_TOKENS: tuple[str, ...] = (
    tuple("a" + c for c in string.ascii_lowercase)
    + tuple("c" + c for c in string.ascii_lowercase[:25])
    + tuple("d" + c for c in string.ascii_lowercase[:25])
    + tuple("e" + c for c in string.ascii_lowercase[:25])
)
assert len(ARTIMUSE_TOKENS) == 101

# The default system message of the "internvl2_5" chat template in InternVL's public conversation.py (used by
# InternVL2.5/InternVL3, hence ArtiMuse): the model's chat/score code uses it unless config.json sets one.
INTERNVL2_5_SYSTEM = (
    "你是书生·万象，英文名是InternVL，是由上海人工智能实验室、清华大学及多家合作单位联合开发的多模态大语言模型。"
)

# ArtiMuse's scoring question, byte for byte as InternVLChatModel.score() writes it in the public ArtiMuse code
# (github.com/thunderbolt215/ArtiMuse, src/artimuse/internvl/model/internvl_chat/modeling_artimuse.py, commit
# eaef4c2). It is a triple-quoted string: it starts with a newline, keeps the 8-space indent and the trailing
# spaces of three lines, and ends with the 8 spaces before the closing quotes. sha256 44add3d4...d5d6ad.
ARTIMUSE_QUESTION = (
    "\n"
    "        Rate the aesthetics score of the image in 0-100. \n"
    "        In the output format, numbers are replaced by 2 corresponding letters, \n"
    "        and the mapping relationship is: \n"
    "        score 0 to 25: 0-aa, 1-ab, 2-ac, 3-ad, ... , 25-az,\n"
    "        score 26 to 50: 26-ca, 27-cb, 28-cc, 29-cd, ..., 50-cy,\n"
    "        score 51 to 75: 51-da, 52-db, 53-dc, 54-dd, ..., 75-dy,\n"
    "        score 76 to 100: 76-ea, 77-eb, 78-ec, 79-ed, ..., 100-ey.\n"
    "\n"
    "        The answer only outputs 2 corresponding letters.\n"
    "        "
)

# ArtiMuse's score(): the logits at the position after "<|im_start|>assistant\n", no answer text, one 448 squash.
_ARTIMUSE_PROMPT = PromptConfig(
    template="internvl2_5", system=INTERNVL2_5_SYSTEM, question=ARTIMUSE_QUESTION, answer_prefix="", expert_question=""
)


_TOKEN_AS_SCORE_HEADS = HeadsConfig(
    level=LevelHeadConfig(tokens=ARTIMUSE_TOKENS, weights=tuple(float(i) for i in range(101))),
    regression=False,
    expert=None,
    metavoter=None,
    fast="level",
)

# HumanAesExpert's heads were trained (with swift) on prompts where the image placeholder is "<img>...</img>\n" and
# the query "<image>\n" + question, so the model saw "</img>\n\n{question}". Its inference code is not public;
# scoring uses the training layout.
HUMANAESEXPERT_AFTER_IMAGE = "\n\n"

PRESETS: dict[str, ModelConfig] = {
    "humanaesexpert": ModelConfig(
        name="humanaesexpert",
        backbone="internvl",
        scale=(0.0, 1.0),
        prompt=PromptConfig(after_image=HUMANAESEXPERT_AFTER_IMAGE),
    ),
    "artimuse": ModelConfig(
        name="artimuse",
        backbone="internvl",
        scale=(0.0, 100.0),
        heads=_TOKEN_AS_SCORE_HEADS,
        preprocess=PreprocessConfig(mode="squash", max_tiles=1, thumbnail=False),
        prompt=_ARTIMUSE_PROMPT,
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
        # Q-Align's processor: expand2square with the CLIP mean (truncated: 122, 116, 104), CLIP mean / std.
        preprocess=PreprocessConfig(
            mode="pad", max_tiles=1, thumbnail=False, pad_fill=CLIP_MEAN, mean=CLIP_MEAN, std=CLIP_STD
        ),
        prompt=PromptConfig(
            system="",
            question="How would you rate the aesthetics of this image?",
            answer_prefix="The aesthetics of the image is",
            expert_question="",
        ),
    ),
}


def _release(family: str, name: str, hub_id: str, license: str, **changes) -> ModelConfig:
    return dataclasses.replace(PRESETS[family], name=name, hub_id=hub_id, license=license, **changes)


_ARTIMUSE_REPOS = {  # preset name -> hub id; the paper's checkpoints, score-finetuned on different data sets
    "artimuse-10k": "Thunderbolt215215/ArtiMuse",  # ArtiMuse-10K, the recommended paper version
    "artimuse-ava": "Thunderbolt215215/ArtiMuse_AVA",
    "artimuse-flickr-aes": "Thunderbolt215215/ArtiMuse_FLICKR-AES",
    "artimuse-para": "Thunderbolt215215/ArtiMuse_PARA",
    "artimuse-tad66k": "Thunderbolt215215/ArtiMuse_TAD66K",
}

PRESETS.update(
    {
        "humanaesexpert-1b": _release("humanaesexpert", "humanaesexpert-1b", "KwaiVGI/HumanAesExpert-1B", "MIT"),
        "humanaesexpert-8b": _release("humanaesexpert", "humanaesexpert-8b", "KwaiVGI/HumanAesExpert-8B", "MIT"),
        # The ArtiMuse code repository carries no licence file and the model cards were not checked offline.
        **{
            name: _release("artimuse", name, repo, "unknown")
            for name, repo in _ARTIMUSE_REPOS.items()
        },
        # Initialised from ArtiMuse; its model card defers setup and inference to the ArtiMuse code, whose score()
        # prompt it therefore shares.
        "ernie-image-aes": _release("artimuse", "ernie-image-aes", "baidu/ERNIE-Image-Aes", "Apache-2.0"),
    }
)

# Hub ids the same weights were published under before (HumanAesExpert's code still names HumanBeauty/...).
HUB_ALIASES: dict[str, str] = {
    "HumanBeauty/HumanAesExpert-1B": "humanaesexpert-1b",
    "HumanBeauty/HumanAesExpert-8B": "humanaesexpert-8b",
}


def find_release(name: str) -> tuple[str, ModelConfig] | None:
    """A released model by preset name or hub id (any alias, any case) -> (hub id to download, its preset).

    The hub id is the one asked for, so an alias downloads from where the user pointed; None for anything else.
    """
    if name in PRESETS:
        config = PRESETS[name]
        return (config.hub_id, config) if config.hub_id else None
    wanted = name.lower()
    for config in PRESETS.values():
        if config.hub_id and config.hub_id.lower() == wanted:
            return name, config
    for alias, preset_name in HUB_ALIASES.items():
        if alias.lower() == wanted:
            return name, PRESETS[preset_name]
    return None


def similar_names(name: str) -> list[str]:
    """Released preset names and hub ids that look like `name`, for "did you mean" hints."""
    known = [n for n, c in PRESETS.items() if c.hub_id] + [c.hub_id for c in PRESETS.values() if c.hub_id]
    known += list(HUB_ALIASES)
    by_lower = {k.lower(): k for k in known}
    return [by_lower[m] for m in difflib.get_close_matches(name.lower(), list(by_lower), n=3, cutoff=0.75)]


def list_models() -> list[dict[str, str]]:
    """One row per preset: name, scale, heads, preprocessing mode, hub id and licence ("-" where none)."""
    rows = []
    for name, config in PRESETS.items():
        heads = [h for h in ("level", "regression", "expert", "metavoter") if getattr(config.heads, h)]
        rows.append({
            "name": name,
            "scale": f"{config.scale[0]:g}-{config.scale[1]:g}",
            "heads": "+".join(heads),
            "preprocess": config.preprocess.mode,
            "hub_id": config.hub_id or "-",
            "license": config.license or "-",
        })
    return rows


def preset(name: str, **changes) -> ModelConfig:
    """A preset's config, with top-level fields replaced (e.g. backbone=..., preprocess=...)."""
    try:
        config = PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; known: {sorted(PRESETS)}") from None
    return dataclasses.replace(config, **changes)
