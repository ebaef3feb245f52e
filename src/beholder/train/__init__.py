"""Two-stage training of aesthetic models (HumanAesExpert recipe), resumable and multi-process.

Stage 1: LoRA (peft) on the backbone with the regression and Expert heads trained fully; per-sample loss
CE + lambda * MSE_reg (overall-only rows) or CE + mu * MSE_exp (12-dimension rows), in mixed batches.
Stage 2: everything frozen; the MetaVoter trained with L1 on the heads' outputs. See run.py for the flow.

The configs import at once; the training stack (torch, transformers) on first use of the functions, so a
config is checked, and `beholder train --print-config` answers, without loading it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from beholder.train.config import LoraSettings, Stage1Config, Stage2Config, TrainConfig, load_train_config

_LAZY = {"predict_heads": "beholder.train.predict", "export": "beholder.train.run",
         "initial_model": "beholder.train.run", "switched_heads": "beholder.train.run", "train": "beholder.train.run"}

if TYPE_CHECKING:
    from beholder.train.predict import predict_heads
    from beholder.train.run import export, initial_model, switched_heads, train


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'beholder.train' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


__all__ = [
    "LoraSettings",
    "Stage1Config",
    "Stage2Config",
    "TrainConfig",
    "export",
    "initial_model",
    "load_train_config",
    "predict_heads",
    "switched_heads",
    "train",
]
