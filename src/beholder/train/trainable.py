"""What trains in stage 1: LoRA adapters (peft) and/or whole parts of the backbone, plus the heads.

The backbone has three parts, found by module path under the VLM's base model: vision tower, projector and
language model. Each is "frozen", "lora" (adapters on every Linear of the part) or "full". The regression and
Expert heads always train fully in stage 1; the MetaVoter waits for stage 2. The LM head is never adapted:
the level head reads its rows, and they stay the pretrained ones (except when the language model is "full"
and the LM head is tied to the input embeddings).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import torch
from torch import nn

from beholder.errors import require
from beholder.model.aesthetic import AestheticModel
from beholder.train.config import Stage1Config

# part -> module path under hf_model (the longest matching path wins: Qwen's projector lives in its tower).
PARTS: dict[str, dict[str, str]] = {
    "internvl": {"vision": "model.vision_tower", "projector": "model.multi_modal_projector",
                 "language": "model.language_model"},
    "qwen": {"vision": "model.visual", "projector": "model.visual.merger", "language": "model.language_model"},
}


def _parts(backbone: str) -> dict[str, str]:
    return PARTS["internvl" if backbone == "internvl" else "qwen"]


def part_of(name: str, parts: dict[str, str]) -> str | None:
    """The part a module path belongs to (the deepest matching part path), or None (e.g. the LM head)."""
    matches = [(len(path), part) for part, path in parts.items() if name == path or name.startswith(path + ".")]
    return max(matches)[1] if matches else None


def setup_stage1(model: AestheticModel, config: Stage1Config, seed: int):
    """Freeze the model, add LoRA adapters and unfreeze what `config` trains; returns the peft model (its
    merge_and_unload() folds the adapters back into plain weights) or None when no part uses LoRA."""
    peft = require("peft", "train", "LoRA training")
    parts = _parts(model.config.backbone)
    modes = {"vision": config.vision, "projector": config.projector, "language": config.language}
    model.requires_grad_(False)
    targets = [
        name
        for name, module in model.hf_model.named_modules()
        if isinstance(module, nn.Linear) and modes.get(part_of(name, parts)) == "lora"
    ]
    peft_model = None
    if targets:
        torch.manual_seed(seed)  # LoRA's A matrices are random: the same seed gives every process the same ones
        lora = config.lora
        with warnings.catch_warnings():  # peft asks transformers 5 a deprecated question; not the user's concern
            warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated", FutureWarning)
            peft_model = peft.get_peft_model(model.hf_model, peft.LoraConfig(
                r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=targets))
    for name, param in model.hf_model.named_parameters():
        if "lora_" not in name and modes.get(part_of(name, parts)) == "full":
            param.requires_grad_(True)
    for head in (model.heads.regression, model.heads.expert):
        if head is not None:
            head.requires_grad_(True)
    return peft_model


def trainable_parameters(model: AestheticModel) -> Iterator[tuple[str, nn.Parameter]]:
    return ((name, p) for name, p in model.named_parameters() if p.requires_grad)


def optimizer_groups(model: AestheticModel, config: Stage1Config) -> list[dict]:
    """AdamW groups: backbone and heads (their own lr), each split by decay (matrices) / no decay (the rest)."""
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, param in trainable_parameters(model):
        key = (name.startswith("heads."), param.ndim >= 2)
        groups.setdefault(key, []).append(param)
    head_lr = config.head_lr if config.head_lr is not None else config.lr
    return [
        {"params": params, "lr": head_lr if is_head else config.lr, "base_lr": head_lr if is_head else config.lr,
         "weight_decay": config.weight_decay if decays else 0.0}
        for (is_head, decays), params in sorted(groups.items())
    ]
