"""`beholder train`: stage 1, stage 2, export to a beholder model folder; resumable, single or multi-process.

    model folder --(head switches)--> stage 1 (LoRA + heads) --merge LoRA--> stage 2 (MetaVoter) --> run/model/
Started again with the same run folder, training resumes from the newest checkpoint; a finished stage 1 is
not repeated. Launch several processes with `accelerate launch` or `torchrun`: each trains on its share of
every batch (DDP), and process 0 writes the checkpoints, the log and the exported model.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from beholder.config import HeadsConfig
from beholder.data.rows import read_training_rows
from beholder.errors import BeholderError, UsageError, require
from beholder.model.aesthetic import AestheticModel
from beholder.model.folder import load_model, save_model
from beholder.train.config import TrainConfig
from beholder.train.examples import ExampleBuilder, RowDataset
from beholder.train.stage1 import run_stage1
from beholder.train.stage2 import fit_metavoter, voter_data
from beholder.train.trainable import setup_stage1

TRAINING_RECORD = "training.json"  # written into the exported model folder: the config and the losses


def switched_heads(heads: HeadsConfig, on: tuple[str, ...]) -> HeadsConfig:
    """The starting model's heads with the switched-off ones removed; the one-pass head is kept if it still
    exists, else the mean of level and regression, else whichever of them is left."""
    switched = dataclasses.replace(
        heads,
        level=heads.level if "lm" in on else None,
        regression=heads.regression if "regression" in on else None,
        expert=heads.expert if "expert" in on else None,
        metavoter=heads.metavoter if "metavoter" in on else None,
    )
    for name in (heads.fast, "mean", "level", "regression"):
        usable = {"level": switched.level, "regression": switched.regression,
                  "mean": switched.level and switched.regression}[name]
        if usable:
            return dataclasses.replace(switched, fast=name)
    raise UsageError("no one-pass head is left: keep the LM head or the regression head")


def initial_model(config: TrainConfig) -> AestheticModel:
    """The starting model with the switched heads; the heads that stay keep their weights."""
    loaded = load_model(config.model)
    missing = [h for h in ("regression", "lm", "expert", "metavoter") if h in config.heads and not _has(loaded, h)]
    if missing:
        raise UsageError(f"{config.model} has no {missing} head(s) to train; its config lacks them")
    name = config.name or config.run_dir.resolve().name
    model_config = loaded.config.replace(name=name, heads=switched_heads(loaded.config.heads, config.heads))
    model = AestheticModel(loaded.hf_model, loaded.tokenizer, model_config)
    model.heads.load_state_dict(
        {k: v for k, v in loaded.heads.state_dict().items() if k in model.heads.state_dict()}, strict=True
    )
    return model


def _has(model: AestheticModel, head: str) -> bool:
    return getattr(model.heads, "level" if head == "lm" else head) is not None


def train(config: TrainConfig) -> Path:
    """Run (or resume) both stages and export; returns the exported model folder."""
    accelerate = require("accelerate", "train", "training")
    require("peft", "train", "LoRA training")
    rows = read_training_rows(config.train)  # a missing or malformed file fails before the model loads
    if not rows:
        raise BeholderError(f"{config.train} has no training rows")
    accelerator = accelerate.Accelerator(
        cpu=not torch.cuda.is_available(), mixed_precision="bf16" if config.precision == "bfloat16" else "no"
    )
    accelerate.utils.set_seed(config.seed)
    config.run_dir.mkdir(parents=True, exist_ok=True)
    model = initial_model(config).to(accelerator.device)
    builder = ExampleBuilder(model, expert_rows="expert" in config.heads, answers="lm" in config.heads,
                             seed=config.seed)
    peft_model = setup_stage1(model, config.stage1, config.seed)
    records = run_stage1(accelerator, model, RowDataset(rows, builder), config)
    if peft_model is not None:
        peft_model.merge_and_unload()  # folds the adapters into the weights, in place in model.hf_model
    model.requires_grad_(False).eval()
    voter_losses = []
    if model.heads.metavoter is not None:
        inputs, targets = voter_data(accelerator, model, rows, config.eval_batch_size)
        voter_losses = fit_metavoter(model.heads.metavoter, inputs, targets, config.stage2, config.seed)
        if accelerator.is_main_process:
            print(f"stage 2: MetaVoter L1 per epoch {[round(x, 4) for x in voter_losses]}", flush=True)
    if accelerator.is_main_process:
        export(model, config, records, voter_losses)
    accelerator.wait_for_everyone()
    return config.export_dir


def export(model: AestheticModel, config: TrainConfig, records: list[dict], voter_losses: list[float]) -> Path:
    """Write the trained model as a beholder model folder (what `beholder.load` reads), with its training
    record beside the weights."""
    from beholder import typedconfig

    folder = save_model(model, config.export_dir)
    record = {"config": typedconfig.to_dict(config), "stage1_last_step": records[-1] if records else None,
              "stage2_l1_per_epoch": voter_losses}
    (folder / TRAINING_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    return folder
