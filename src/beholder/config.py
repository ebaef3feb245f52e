"""Typed configuration of an aesthetic model: backbone, prompts, heads, preprocessing and score scale.

A ModelConfig is written next to the weights as `beholder.json`, so a model folder carries everything needed
to score with it. Model variants (HumanAesExpert, ArtiMuse-style token-as-score, Q-Align-style levels, UniPercept's
three named scores, LAION-style MLPs on a CLIP or SigLIP image embedding) are different ModelConfig values, never
different classes.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from beholder.preprocess import PreprocessConfig
from beholder.standard import LEVELS
from beholder.typedconfig import from_dict

CONFIG_NAME = "beholder.json"
# 2: decoding and prompt-layout fields (preprocess.decode, preprocess.pad_rounding, prompt.system_turn,
#    prompt.after_image), all defaulting to the references' behaviour.
# 3: image-embedding backbones (clip, siglip), the crop preprocessing mode, named scores (prompt.scores), and
#    heads.regression as an MLP config (format 2's `true` is the one Linear it was).
FORMAT_VERSION = 3

# Choices, spelled out so a typo in beholder.json fails when it is read (beholder.typedconfig checks Literal values).
# They name entries of the registries in beholder.model (tests/test_structure.py keeps the two in step).
BackboneName = Literal["internvl", "qwen2_vl", "qwen2_5_vl", "qwen3_vl", "clip", "siglip"]  # model.adapters.ADAPTERS
TemplateName = Literal["internvl2", "internlm2-chat", "internvl2_5", "qwen2_vl"]  # model.prompts.TEMPLATES
Activation = Literal["gelu", "relu", "silu", "tanh", "sigmoid"]  # model.heads.ACTIVATIONS

INTERNVL2_SYSTEM = "You are an AI assistant whose name is InternLM (书生·浦语)."


@dataclass(frozen=True)
class NamedQuestion:
    """One of several named scores a chat model gives about one image (UniPercept: iaa, iqa, ista)."""

    name: str  # the score's name, written as the column score_<name>
    question: str  # continues the shared image prefix, as PromptConfig.question does
    answer_prefix: str = ""  # assistant text before the scored token


@dataclass(frozen=True)
class PromptConfig:
    """The chat around the image. The image prefix (system turn + image) is shared by every question."""

    template: TemplateName = "internvl2"  # chat layout, see beholder.model.prompts.TEMPLATES
    system: str = INTERNVL2_SYSTEM  # system message
    system_turn: Literal["always", "when_set"] = "always"  # "always": the system turn is written even for an empty
    #                                                        message, as InternVL's conversation.py does
    after_image: str | None = None  # text between the image's end tag and the question, tokenised with the question;
    #                                 None: the template's own ("\n" InternVL, "" Qwen)
    question: str = "Rate the aesthetics of this human picture."  # overall question (fast path, LM + regression)
    answer_prefix: str = "The aesthetics of the human image is"  # assistant text before the scored token
    expert_question: str = "Rate the aesthetics of this human picture from 12 different dimensions."
    expert_answer_prefix: str = ""  # the Expert head reads the last position of this (12-dim) turn
    scores: tuple[NamedQuestion, ...] = ()  # named scores, each its own question on the one encoded image prefix,
    #                                         read by the level head; the first is the model's `score`. When set,
    #                                         `question` and `answer_prefix` are not asked.


@dataclass(frozen=True)
class LevelHeadConfig:
    """Expected value over the next-token distribution restricted to a few tokens, read at the last position."""

    # Each is a vocabulary token looked up literally (as ArtiMuse's convert_tokens_to_ids), or else a text that
    # encodes to exactly one token; one that is both, as two different tokens, is an error.
    tokens: tuple[str, ...] = tuple(" " + level for level in LEVELS)
    weights: tuple[float, ...] = (1.0, 2.0, 3.0, 4.0, 5.0)  # value of each token; S = sum(w_i * softmax_i)


@dataclass(frozen=True)
class ExpertHeadConfig:
    ffn_hidden: int = 16  # width of each parent FFN (children -> hidden -> 1); 0 makes each parent a Linear
    activation: Activation = "gelu"  # between the two Linears of a parent FFN


@dataclass(frozen=True)
class MetaVoterConfig:
    hidden: int = 16  # MLP width: Linear(3, hidden) -> BatchNorm1d -> ReLU -> Linear(hidden, 1)


@dataclass(frozen=True)
class RegressionHeadConfig:
    """A feature vector (B, D) -> [x / ||x||] -> Linear -> [activation] -> ... -> Linear -> (B,): HumanAesExpert's one
    Linear on the last hidden state, or LAION's / aesthetic-predictor-v2.5's MLP on an image embedding."""

    hidden: tuple[int, ...] = ()  # widths between the feature and the output; (): one Linear(D, 1)
    activation: Activation | None = None  # between the Linears; None: none (LAION's released linear-MSE MLPs)
    l2_normalize: bool = False  # divide the feature by its L2 norm first (LAION, aesthetic-predictor-v2.5)
    native: bool = False  # the head outputs the model's native scale (LAION: about 1-10), not [0, 1]


@dataclass(frozen=True)
class HeadsConfig:
    level: LevelHeadConfig | None = field(default_factory=LevelHeadConfig)
    regression: RegressionHeadConfig | None = field(default_factory=RegressionHeadConfig)
    expert: ExpertHeadConfig | None = field(default_factory=ExpertHeadConfig)
    metavoter: MetaVoterConfig | None = field(default_factory=MetaVoterConfig)
    fast: Literal["level", "regression", "mean"] = "regression"  # the head giving the one-pass score ("mean": of
    #                                                                  level and regression)


@dataclass(frozen=True)
class ModelConfig:
    name: str  # preset or user name, shown in provenance
    backbone: BackboneName  # adapter name
    scale: tuple[float, float] = (0.0, 1.0)  # native score scale; heads work in [0, 1] and are mapped onto it
    prompt: PromptConfig = field(default_factory=PromptConfig)
    heads: HeadsConfig = field(default_factory=HeadsConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    hub_id: str | None = None  # where the weights come from, for provenance
    license: str | None = None
    format_version: int = FORMAT_VERSION

    @property
    def score_names(self) -> tuple[str, ...]:
        """The named scores the model gives (score_<name> columns); () for a model with one score."""
        return tuple(q.name for q in self.prompt.scores)

    @property
    def has_full(self) -> bool:
        """Full scoring (12 dimensions + MetaVoter) needs the expert head and the voter."""
        return self.heads.expert is not None and self.heads.metavoter is not None

    def replace(self, **changes: Any) -> ModelConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        version = data.get("format_version", FORMAT_VERSION)
        if version > FORMAT_VERSION:
            raise ValueError(f"model config format {version} is newer than this beholder understands; upgrade")
        return from_dict(cls, {**_upgrade(data, version), "format_version": FORMAT_VERSION})

    def save(self, folder: str | Path) -> None:
        text = json.dumps(self.to_dict(), indent=2, ensure_ascii=False)
        (Path(folder) / CONFIG_NAME).write_text(text + "\n", encoding="utf-8")

    @classmethod
    def load(cls, folder: str | Path) -> ModelConfig:
        return cls.from_dict(json.loads((Path(folder) / CONFIG_NAME).read_text(encoding="utf-8")))


def _upgrade(data: dict[str, Any], version: int) -> dict[str, Any]:
    """An older beholder.json as the current format reads it.

    Format 1 wrote `preprocess.draft: true` into every file: it was the default then, not a choice anyone made
    (no option set it), so it is dropped and a format-1 folder decodes at full size like the references. The
    fields format 2 added take their defaults, which are the references' behaviour.
    Format 2 wrote `heads.regression` as true (one Linear) or false (none); format 3 writes that head's config.
    """
    if version < 2 and isinstance(data.get("preprocess"), dict):
        data = {**data, "preprocess": {k: v for k, v in data["preprocess"].items() if k != "draft"}}
    heads = data.get("heads")
    if version < 3 and isinstance(heads, dict) and isinstance(heads.get("regression"), bool):
        data = {**data, "heads": {**heads, "regression": {} if heads["regression"] else None}}
    return data
