"""Two-stage training of aesthetic models (HumanAesExpert recipe), resumable and multi-process.

Stage 1: LoRA (peft) on the backbone with the regression and Expert heads trained fully; per-sample loss
CE + lambda * MSE_reg (overall-only rows) or CE + mu * MSE_exp (12-dimension rows), in mixed batches.
Stage 2: everything frozen; the MetaVoter trained with L1 on the heads' outputs. See run.py for the flow.
"""

from beholder.train.config import LoraSettings, Stage1Config, Stage2Config, TrainConfig, load_train_config
from beholder.train.predict import predict_heads
from beholder.train.run import export, initial_model, switched_heads, train

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
