"""Model presets kept as data: the scorer families beholder runs with one model class, and the released models.

Families:
  humanaesexpert  LM level head (bad..excellent = 1..5) + regression + Expert (12 dims) + MetaVoter, 0-1,
                  InternVL dynamic tiles with thumbnail
  artimuse        "token as score": expectation over 101 two-letter tokens = 0..100, one 448 squash
  unipercept      ArtiMuse's token as score asked three questions (aesthetics iaa, quality iqa, structure and
                  texture ista) on one encoded image, three scores 0..100
  qalign          5-level expectation (excellent..bad = 5..1), 1-5, padded to a square with the CLIP mean
  laion-aesthetic-v1 / -v2, aesthetic-predictor-v2.5
                  an MLP (v1: one Linear) on an L2-normalised CLIP ViT-L/14 / SigLIP so400m image embedding, ~1-10
Released models (a family plus a hub id, licence and the prompts of their public code): humanaesexpert-1b/-8b,
the ArtiMuse checkpoints, ernie-image-aes and unipercept ship in InternVL's chat layout; the LAION predictors and
aesthetic-predictor-v2.5 as a hub image tower plus a pickled head (HEAD_FILES). `beholder.load(name or hub id)`
downloads and converts them once (beholder.convert).
"""

from __future__ import annotations

import dataclasses
import difflib
import string
from dataclasses import dataclass

from beholder.config import (
    HeadsConfig,
    LevelHeadConfig,
    ModelConfig,
    NamedQuestion,
    PromptConfig,
    RegressionHeadConfig,
)
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
    regression=None,
    expert=None,
    metavoter=None,
    fast="level",
)

# UniPercept's scoring question, byte for byte as InternVLChatModel.score() writes it in the public UniPercept code
# (github.com/thunderbolt215/UniPercept, src/internvl/model/internvl_chat/modeling_unipercept.py, and the same in
# the unipercept-reward 1.0.3 package): an f-string "<image>Rate the {desc} score ...", "<image>" with no newline
# after it (so nothing comes between </img> and the question), the typos "73-ec, 74-ed" kept. {desc} is
# "aesthetics" (iaa), "quality" (iqa) or "structure and texture richness" (ista), as eval_vr.py and the package's
# reward() name them. sha256 of this template a3486c60...305279.
UNIPERCEPT_QUESTION = (
    "Rate the {desc} score of the image in 0-100. In the output format, numbers are replaced by 2 corresponding "
    "letters, and the mapping relationship is: score 0 to 25: 0-aa, 1-ab, 2-ac, 3-ad, ... , 25-az, \n"
    "score 26 to 50: 26-ca, 27-cb, 28-cc, 29-cd, ..., 50-cy, \n"
    "score 51 to 75: 51-da, 52-db, 53-dc, 54-dd, ..., 75-dy, \n"
    "score 76 to 100: 76-ea, 77-eb, 73-ec, 74-ed, ..., 100-ey. \n"
    "The answer only outputs 2 corresponding letters."
)
UNIPERCEPT_SCORES = {"iaa": "aesthetics", "iqa": "quality", "ista": "structure and texture richness"}

# HumanAesExpert's heads were trained (with swift) on prompts where the image placeholder is "<img>...</img>\n" and
# the query "<image>\n" + question, so the model saw "</img>\n\n{question}". Its inference code is not public;
# scoring uses the training layout.
HUMANAESEXPERT_AFTER_IMAGE = "\n\n"

# LAION's aesthetic predictors read OpenAI's CLIP ViT-L/14 through `clip.load` (v2) or open_clip (v1), whose
# preprocessing is torchvision's Resize(224, bicubic) + CenterCrop(224) on the file as opened, RGB conversion last.
_CLIP_CROP = PreprocessConfig(
    mode="crop", image_size=224, max_tiles=1, thumbnail=False, mean=CLIP_MEAN, std=CLIP_STD,
    crop_offset="round", convert_rgb="after_crop",
)
# The released linear-MSE MLPs: 768 -> 1024 -> 128 -> 64 -> 16 -> 1 with no activations (their dropouts do nothing at
# inference), on the L2-normalised embedding, predicting the mean rating (about 1-10) directly.
_LAION_MLP = RegressionHeadConfig(hidden=(1024, 128, 64, 16), l2_normalize=True, native=True)


def _image_predictor(
    name: str, backbone: str, head: RegressionHeadConfig, preprocess: PreprocessConfig, hub_id: str, license: str
) -> ModelConfig:
    """An MLP on an image tower's embedding predicting a mean rating of about 1-10."""
    heads = HeadsConfig(level=None, regression=head, expert=None, metavoter=None, fast="regression")
    return ModelConfig(name=name, backbone=backbone, scale=(1.0, 10.0), heads=heads, preprocess=preprocess,
                       hub_id=hub_id, license=license)


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
            regression=None,
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
    "laion-aesthetic-v2": _image_predictor(
        "laion-aesthetic-v2", "clip", _LAION_MLP, _CLIP_CROP, "openai/clip-vit-large-patch14",
        "Apache-2.0",  # the predictor's repository; CLIP's weights are MIT
    ),
    "laion-aesthetic-v1": _image_predictor(
        "laion-aesthetic-v1", "clip", RegressionHeadConfig(l2_normalize=True, native=True),  # one Linear(768, 1)
        _CLIP_CROP, "openai/clip-vit-large-patch14", "MIT",
    ),
    # Its head is laid out as LAION's (Dropouts between the Linears, no activations), on SigLIP's pooled embedding,
    # L2-normalised. Preprocessing: Image.open(p).convert("RGB"), then google/siglip-so400m-patch14-384's
    # SiglipImageProcessor: a bicubic resize to 384 x 384, x / 255, mean and std 0.5.
    "aesthetic-predictor-v2.5": _image_predictor(
        "aesthetic-predictor-v2.5", "siglip", _LAION_MLP,
        PreprocessConfig(mode="squash", image_size=384, max_tiles=1, thumbnail=False, mean=(0.5,) * 3, std=(0.5,) * 3),
        "google/siglip-so400m-patch14-384",
        "AGPL-3.0",  # the predictor's code and head; SigLIP's weights are Apache-2.0
    ),
}


@dataclass(frozen=True)
class HeadFile:
    """A head released outside the hub as a pickled PyTorch state dict of Linear layers: downloaded once, checked
    against its sha256, read with torch.load(weights_only=True) at conversion, its Linears mapped in order onto the
    preset's regression head."""

    url: str
    sha256: str  # of the file as released; a download that differs is refused
    home: str  # where it is published, for listings


# The heads of the embedding presets; their image towers come from the preset's hub id.
HEAD_FILES: dict[str, HeadFile] = {
    "laion-aesthetic-v2": HeadFile(
        "https://github.com/christophschuhmann/improved-aesthetic-predictor/raw/main/sac+logos+ava1-l14-linearMSE.pth",
        "21dd590f3ccdc646f0d53120778b296013b096a035a2718c9cb0d511bff0f1e0",
        "github.com/christophschuhmann/improved-aesthetic-predictor",
    ),
    "laion-aesthetic-v1": HeadFile(
        "https://github.com/LAION-AI/aesthetic-predictor/raw/main/sa_0_4_vit_l_14_linear.pth",
        "2cd4e60f4f24ae3bcd57b847b13c1f3ba27edc28cc1a7f9ce74ee9f421243cba",
        "github.com/LAION-AI/aesthetic-predictor",
    ),
    "aesthetic-predictor-v2.5": HeadFile(
        "https://github.com/discus0434/aesthetic-predictor-v2-5/raw/main/models/aesthetic_predictor_v2_5.pth",
        "a6caf256b3dc434273c98dcb12f6bf17c5d4fc647d8df11f038386923dd06220",
        "github.com/discus0434/aesthetic-predictor-v2-5",
    ),
}

# Parameters of each released model (backbone and heads), for listings. The image-tower predictors are counted
# from their configurations (CLIP ViT-L/14's image tower with its projection 303,966,208 + MLP 927,969 or Linear 769;
# SigLIP so400m's image tower 428,225,600 + MLP 1,321,185); the chat models are their authors' "1B" / "8B".
SIZES: dict[str, str] = {
    "humanaesexpert-1b": "~1B",
    "humanaesexpert-8b": "~8B",
    **dict.fromkeys(("artimuse-10k", "artimuse-ava", "artimuse-flickr-aes", "artimuse-para", "artimuse-tad66k"), "~8B"),
    "ernie-image-aes": "~8B",
    "unipercept": "~8B",
    "laion-aesthetic-v2": "305M",
    "laion-aesthetic-v1": "304M",
    "aesthetic-predictor-v2.5": "430M",
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
        # ArtiMuse's reading (the same one 448 squash, ImageNet mean/std, in eval_vr.py and the package's inferencer),
        # asked three questions on one encoded image.
        "unipercept": _release(
            "artimuse", "unipercept", "Thunderbolt215215/UniPercept",
            "Apache-2.0",  # the unipercept-reward package's metadata; the code repository has no licence file
            prompt=dataclasses.replace(
                _ARTIMUSE_PROMPT,
                question="",
                after_image="",
                scores=tuple(NamedQuestion(name, UNIPERCEPT_QUESTION.format(desc=desc))
                             for name, desc in UNIPERCEPT_SCORES.items()),
            ),
        ),
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


def _by_hub_id() -> list[ModelConfig]:
    """Released models a hub id names on its own: not those whose hub id is only their image tower (one tower
    serves several predictors, and the tower alone is no aesthetic model)."""
    return [c for name, c in PRESETS.items() if c.hub_id and name not in HEAD_FILES]


def find_release(name: str) -> tuple[str, ModelConfig] | None:
    """A released model by preset name or hub id (any alias, any case) -> (hub id to download, its preset).

    The hub id is the one asked for, so an alias downloads from where the user pointed; None for anything else.
    """
    if name in PRESETS:
        config = PRESETS[name]
        return (config.hub_id, config) if config.hub_id else None
    wanted = name.lower()
    for config in _by_hub_id():
        if config.hub_id.lower() == wanted:
            return name, config
    for alias, preset_name in HUB_ALIASES.items():
        if alias.lower() == wanted:
            return name, PRESETS[preset_name]
    return None


def similar_names(name: str) -> list[str]:
    """Released preset names and hub ids that look like `name`, for "did you mean" hints."""
    known = [n for n, c in PRESETS.items() if c.hub_id] + [c.hub_id for c in _by_hub_id()]
    known += list(HUB_ALIASES)
    by_lower = {k.lower(): k for k in known}
    return [by_lower[m] for m in difflib.get_close_matches(name.lower(), list(by_lower), n=3, cutoff=0.75)]


def list_models() -> list[dict[str, str]]:
    """One row per preset: name, backbone, scale, named scores, heads, preprocessing mode, size (parameters), licence
    and hub id ("-" where none; a head published elsewhere follows its image tower's hub id)."""
    rows = []
    for name, config in PRESETS.items():
        heads = [h for h in ("level", "regression", "expert", "metavoter") if getattr(config.heads, h)]
        hub = config.hub_id or "-"
        if name in HEAD_FILES:
            hub += f" + {HEAD_FILES[name].home}"
        rows.append({
            "name": name,
            "backbone": config.backbone,
            "scale": f"{config.scale[0]:g}-{config.scale[1]:g}",
            "scores": ",".join(config.score_names) or "-",
            "heads": "+".join(heads),
            "preprocess": config.preprocess.mode,
            "size": SIZES.get(name, "-"),
            "license": config.license or "-",
            "hub_id": hub,
        })
    return rows


def preset(name: str, **changes) -> ModelConfig:
    """A preset's config, with top-level fields replaced (e.g. backbone=..., preprocess=...)."""
    try:
        config = PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; known: {sorted(PRESETS)}") from None
    return dataclasses.replace(config, **changes)
