"""Stage 1: LoRA on the backbone and the regression and Expert heads trained fully, CE + lambda/mu * MSE.

Runs in one process or many (DDP through accelerate; gloo on CPU, NCCL on GPUs). Every process walks the same
BatchPlan and takes its share of each global batch, accumulating micro-batches until the optimizer step; the
loss of a step is the sum of per-sample losses over the global batch divided by its size, however it is split.
"""

from __future__ import annotations

import json
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from beholder.model.aesthetic import AestheticModel
from beholder.train import checkpoint
from beholder.train.config import TrainConfig
from beholder.train.examples import Collator, RowDataset
from beholder.train.losses import LossTerms, Stage1Loss
from beholder.train.plan import BatchPlan, fit_batches, lr_factor
from beholder.train.trainable import optimizer_groups, trainable_parameters

_TERMS = ("total", "ce", "regression", "expert")


def run_stage1(accelerator, model: AestheticModel, dataset: RowDataset, config: TrainConfig) -> list[dict]:
    """Train from the newest checkpoint under the run folder (or from the start); returns the log records."""
    rank, world = accelerator.process_index, accelerator.num_processes
    cfg = fit_batches(config.stage1, len(dataset), world)
    if cfg != config.stage1 and accelerator.is_main_process:
        print(f"note: {len(dataset)} training rows x {config.stage1.epochs:g} epochs make no batch of "
              f"{config.stage1.batch_size}: batch_size {cfg.batch_size}, micro_batch_size {cfg.micro_batch_size}",
              file=sys.stderr)
    plan = BatchPlan(len(dataset), cfg.batch_size, cfg.epochs, config.seed)
    plan.check(world, cfg.micro_batch_size)
    total = min(plan.steps, cfg.max_steps) if cfg.max_steps else plan.steps
    folder = config.run_dir / "checkpoints"
    optimizer = torch.optim.AdamW(optimizer_groups(model, cfg), betas=cfg.betas)
    found = checkpoint.latest(folder)
    start = found.step if found is not None else 0
    sampler = [b for step in range(start, total) for b in plan.micro_batches(step, rank, world, cfg.micro_batch_size)]
    loader = iter(DataLoader(dataset, batch_sampler=sampler, collate_fn=Collator(model), num_workers=config.workers))
    if found is not None:  # after iter(): starting a DataLoader draws from the RNG that the checkpoint restores
        checkpoint.load_weights(found, model)
        checkpoint.load_training_state(found, optimizer, rank)
    module = accelerator.prepare_model(
        Stage1Loss(model, lm="lm" in config.heads, reg_weight=cfg.reg_weight, expert_weight=cfg.expert_weight)
    )
    accumulate = cfg.batch_size // (world * cfg.micro_batch_size)
    params = [p for _, p in trainable_parameters(model)]
    records, started = [], time.perf_counter()
    model.train()
    for step in range(start, total):
        for group in optimizer.param_groups:
            group["lr"] = group["base_lr"] * lr_factor(step, total, cfg.warmup)
        sums = torch.zeros(len(_TERMS) + 1)
        for micro in range(accumulate):
            batch = next(loader).to(accelerator.device)
            last = micro == accumulate - 1
            with nullcontext() if last else accelerator.no_sync(module), accelerator.autocast():
                terms: LossTerms = module(batch)
                # DDP averages gradients over processes: scale so the step's loss is the global batch mean.
                accelerator.backward(terms.total.sum() * world / cfg.batch_size)
            sums += torch.stack([getattr(terms, t).detach().sum().cpu() for t in _TERMS] + [torch.tensor(len(batch))])
        if cfg.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sums = accelerator.reduce(sums.to(accelerator.device), "sum").cpu()
        record = {"step": step + 1, **{t: float(sums[i] / sums[-1]) for i, t in enumerate(_TERMS)},
                  "lr": optimizer.param_groups[0]["lr"], "seconds": round(time.perf_counter() - started, 2)}
        records.append(record)
        if accelerator.is_main_process and ((step + 1) % config.log_every == 0 or step + 1 == total):
            _log(config.run_dir, record, total, eta=record["seconds"] / (step + 1 - start) * (total - step - 1))
        if config.save_every and (step + 1) % config.save_every == 0 and step + 1 < total:
            _save(accelerator, folder, model, optimizer, step + 1, False, config)
    if start < total:
        _save(accelerator, folder, model, optimizer, total, True, config)
    model.eval()
    return records


def _save(accelerator, folder: Path, model, optimizer, step: int, done: bool, config: TrainConfig) -> None:
    checkpoint.save(folder, model, optimizer, step, done, accelerator.process_index, accelerator.num_processes,
                    config.keep_checkpoints, accelerator.wait_for_everyone)


def _log(run_dir: Path, record: dict, total: int, eta: float) -> None:
    with open(run_dir / "log.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps({"stage": 1, **record}) + "\n")
    terms = " ".join(f"{t}={record[t]:.4f}" for t in _TERMS)
    timing = f"{_duration(record['seconds'])}, ETA {_duration(eta)}"
    print(f"stage 1 step {record['step']}/{total}: {terms} lr={record['lr']:.2e} ({timing})", flush=True)


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"
