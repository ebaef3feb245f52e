"""Typed training configuration: a YAML file and/or `--set key.sub=value` flags (see beholder.typedconfig).

Defaults follow the official HumanAesExpert recipe where it is known (LoRA r=8, alpha=32, dropout 0.05 on the
language model and the `mlp1` projector, AdamW with beta2 = 0.95, lr 1e-4, cosine with 5% warm-up, weight decay
0.1, effective batch 16, one epoch; MetaVoter 10 epochs, L1).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from beholder.typedconfig import ConfigError, non_negative, positive

HEAD_SWITCHES = ("regression", "lm", "expert", "metavoter")
# How a part of the backbone trains in stage 1: not at all, through LoRA adapters, or every weight.
Trainable = Literal["frozen", "lora", "full"]


@dataclass(frozen=True)
class LoraSettings:
    r: int = 8  # rank of each low-rank update
    alpha: float = 32.0  # the update is scaled by alpha / r
    dropout: float = 0.05  # dropout on the adapters' input

    def __post_init__(self) -> None:
        positive(self, "r", "alpha")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout: must be in [0, 1), got {self.dropout!r}")


@dataclass(frozen=True)
class Stage1Config:
    epochs: float = 1.0  # passes over the training rows (fractions allowed); the paper trains one
    batch_size: int = 16  # rows per optimizer step, over all processes together
    micro_batch_size: int = 4  # rows per forward pass in one process; gradients accumulate up to batch_size
    lr: float = 1e-4  # peak learning rate of the backbone's trained parts (LoRA adapters, full parts)
    head_lr: float | None = None  # peak learning rate of the regression and Expert heads (None: lr)
    weight_decay: float = 0.1  # AdamW decoupled weight decay, on matrices only (not biases and norms)
    betas: tuple[float, float] = (0.9, 0.95)  # AdamW moment decay rates (the official recipe's beta2 = 0.95)
    warmup: float = 0.05  # share of the steps with a linear warm-up; cosine decay to zero after it
    max_grad_norm: float = 1.0  # clip the global gradient norm to this (0: no clipping)
    language: Trainable = "lora"  # the language model
    projector: Trainable = "lora"  # the vision-to-language projector (InternVL's mlp1: the official LoRA covers it)
    vision: Trainable = "frozen"  # the vision tower
    lora: LoraSettings = field(default_factory=LoraSettings)  # adapters of every part set to "lora"
    reg_weight: float = 1.0  # lambda: weight of the regression head's MSE on overall-only rows (f = 0)
    expert_weight: float = 1.0  # mu: weight of the Expert head's MSE, mean over its 12 nodes (f = 1)
    max_steps: int = 0  # stop after this many optimizer steps (0: run the epochs)

    def __post_init__(self) -> None:
        positive(self, "epochs", "batch_size", "micro_batch_size", "lr")
        non_negative(self, "weight_decay", "max_grad_norm", "reg_weight", "expert_weight", "max_steps")
        if self.head_lr is not None:
            positive(self, "head_lr")
        if not 0 <= self.warmup <= 1:
            raise ConfigError(f"warmup: a share of the steps in [0, 1], got {self.warmup!r}")


@dataclass(frozen=True)
class Stage2Config:
    epochs: int = 10  # passes of the MetaVoter over the training images' head outputs
    batch_size: int = 64  # images per step (BatchNorm needs more than one)
    lr: float = 1e-3  # Adam learning rate
    weight_decay: float = 0.0  # AdamW decoupled weight decay

    def __post_init__(self) -> None:
        positive(self, "epochs", "batch_size", "lr")
        non_negative(self, "weight_decay")


@dataclass(frozen=True)
class TrainConfig:
    model: str  # beholder model folder to start from: its config gives prompts, preprocessing and heads
    train: str  # training rows, official jsonl (e.g. train.jsonl of `beholder data build`)
    output: str  # run folder: checkpoints/, log.jsonl and model/ (the exported beholder model folder)
    heads: tuple[str, ...] = HEAD_SWITCHES  # heads that train, for the paper's ablation rows: regression;
    #                                          + lm (CE on the answers); + expert (12-dim rows); + metavoter
    stage1: Stage1Config = field(default_factory=Stage1Config)  # LoRA + heads, CE + lambda/mu * MSE
    stage2: Stage2Config = field(default_factory=Stage2Config)  # MetaVoter alone, L1, all else frozen
    seed: int = 0  # seeds LoRA initialisation, the row order and the MetaVoter
    precision: Literal["float32", "bfloat16"] = "float32"  # autocast dtype of the forward passes
    save_every: int = 0  # write a resumable checkpoint every this many stage-1 steps (0: only at the end)
    keep_checkpoints: int = 2  # newest step checkpoints kept on disk
    workers: int = 0  # processes decoding images for each training process (0: in the training process)
    eval_batch_size: int = 16  # images per forward pass when computing head outputs for stage 2
    log_every: int = 10  # stage-1 steps between log lines
    name: str = ""  # name of the exported model ("": the run folder's name)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.heads) - set(HEAD_SWITCHES))
        if unknown:
            raise ConfigError(f"heads: unknown {unknown}; choose from {list(HEAD_SWITCHES)}")
        if not {"regression", "lm"} & set(self.heads):
            raise ConfigError("heads: stage 1 needs the regression head or the LM head")
        if "metavoter" in self.heads and not {"regression", "lm", "expert"} <= set(self.heads):
            raise ConfigError("heads: the MetaVoter fuses the regression, LM and Expert heads: all three are needed")
        positive(self, "keep_checkpoints", "eval_batch_size", "log_every")
        non_negative(self, "save_every", "workers")

    @property
    def run_dir(self) -> Path:
        return Path(self.output)

    @property
    def export_dir(self) -> Path:
        return self.run_dir / "model"


def load_train_config(path: str | Path | None = None, overrides: list[str] = ()) -> TrainConfig:
    """A TrainConfig from a YAML file and overrides; relative paths are resolved against the file's folder."""
    from beholder import typedconfig

    config = typedconfig.load(TrainConfig, path, overrides)
    if path is None:
        return config
    base = Path(path).resolve().parent
    return dataclasses.replace(config, **{k: str(base / getattr(config, k)) for k in ("model", "train", "output")})
