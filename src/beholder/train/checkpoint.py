"""Resumable stage-1 checkpoints: only what training changes, written atomically.

    checkpoints/step-000120/
        trainable.safetensors   every parameter with requires_grad (LoRA adapters, full parts, heads)
        optimizer.pt            AdamW state (tensors and numbers only: loaded with weights_only=True)
        rng-<rank>.pt           each process's torch RNG state (LoRA dropout), so a resumed run repeats
        state.json              {"step": 120, "done": false}
A checkpoint is written under a temporary name and renamed into place, so a crash never leaves a half one;
the newest `keep` are kept, plus the final one (done: true) that stage 2 and export start from.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from beholder.errors import BeholderError
from beholder.files import publish
from beholder.model.aesthetic import AestheticModel
from beholder.train.trainable import trainable_parameters

_PREFIX = "step-"


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    step: int  # optimizer steps completed
    done: bool  # stage 1 finished at this step


def _read(path: Path) -> Checkpoint | None:
    state_file = path / "state.json"
    if not (path.is_dir() and state_file.is_file()):
        return None  # a temporary folder, or not a checkpoint
    state = json.loads(state_file.read_text())
    return Checkpoint(path, state["step"], state["done"])


def _all(folder: Path) -> list[Checkpoint]:
    return sorted(filter(None, map(_read, folder.glob(_PREFIX + "*"))), key=lambda c: (c.step, c.done))


def latest(folder: Path) -> Checkpoint | None:
    """The newest complete checkpoint in `folder`, or None."""
    found = _all(folder)
    return found[-1] if found else None


def save(
    folder: Path, model: AestheticModel, optimizer: torch.optim.Optimizer, step: int, done: bool,
    rank: int, world: int, keep: int, barrier,
) -> None:
    """Every process writes its RNG state; process 0 writes the rest, then publishes the folder by renaming."""
    final = folder / f"{_PREFIX}{step:06d}"
    tmp = folder / f".{final.name}.tmp"
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier()
    torch.save(torch.get_rng_state(), tmp / f"rng-{rank}.pt")
    if rank == 0:
        state = {name: p.detach().float().cpu().contiguous() for name, p in trainable_parameters(model)}
        save_file(state, tmp / "trainable.safetensors")
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    barrier()
    if rank == 0:
        (tmp / "state.json").write_text(json.dumps({"step": step, "done": done, "world": world}) + "\n")
        shutil.rmtree(final, ignore_errors=True)
        publish(tmp, final)
        _prune(folder, keep)
    barrier()


def _prune(folder: Path, keep: int) -> None:
    found = _all(folder)
    steps, done = [c for c in found if not c.done], [c for c in found if c.done]
    for old in steps[: max(0, len(steps) - keep)] + done[:-1]:
        shutil.rmtree(old.path, ignore_errors=True)


def load_weights(checkpoint: Checkpoint, model: AestheticModel) -> None:
    """Copy the checkpoint's trainable tensors into the (identically prepared) model; names must match."""
    state = load_file(checkpoint.path / "trainable.safetensors")
    params = dict(trainable_parameters(model))
    if set(state) != set(params):
        missing, extra = sorted(set(params) - set(state)), sorted(set(state) - set(params))
        raise BeholderError(
            f"{checkpoint.path} does not fit this run's trainable parameters (was the config changed?): "
            f"missing {missing[:5]}, unexpected {extra[:5]}"
        )
    with torch.no_grad():
        for name, param in params.items():
            param.copy_(state[name])


def load_training_state(checkpoint: Checkpoint, optimizer: torch.optim.Optimizer, rank: int) -> None:
    optimizer.load_state_dict(torch.load(checkpoint.path / "optimizer.pt", weights_only=True))
    rng = checkpoint.path / f"rng-{rank}.pt"
    if rng.is_file():
        torch.set_rng_state(torch.load(rng, weights_only=True))
