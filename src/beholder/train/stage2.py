"""Stage 2: everything frozen; the MetaVoter learns, with L1, to fuse (S'_LM, S_reg, S_exp) into the score.

The three head outputs are computed once per training image with the model's full scoring path (so the voter
learns on exactly what it will see when scoring), then the small MLP trains for a few epochs on those numbers.
With several processes, each computes the outputs of its share of the images; all then fit the same voter on
the gathered outputs with the same seed, so they agree without communicating.
"""

from __future__ import annotations

import numpy as np
import torch

from beholder.data.rows import TrainingRow
from beholder.errors import BeholderError, require
from beholder.model.aesthetic import AestheticModel
from beholder.model.heads import MetaVoter
from beholder.train.config import Stage2Config
from beholder.train.predict import predict_heads, window_size

VOTER_INPUTS = ("lm", "regression", "expert")  # the MetaVoter's input order


def voter_data(
    accelerator, model: AestheticModel, rows: list[TrainingRow], batch_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs (N, 3), overall targets (N,)) over the distinct images of `rows`."""
    gather_object = require("accelerate.utils", "train", "training").gather_object

    targets = {row.image: row.overall for row in rows}  # one entry per image, whichever rows it has
    images = sorted(targets)
    # Each process takes whole windows, so every batch is the one a single process would run: the outputs,
    # and the voter fitted on them, do not depend on the number of processes (L1 amplifies the last bit).
    size = window_size(batch_size)
    windows = [images[i : i + size] for i in range(0, len(images), size)]
    mine = [path for window in windows[accelerator.process_index :: accelerator.num_processes] for path in window]
    heads = predict_heads(model, mine, batch_size, progress=accelerator.is_main_process) if mine else {}
    local = [(path, [float(heads[name][i]) for name in VOTER_INPUTS]) for i, path in enumerate(mine)]
    gathered = dict(gather_object(local) if accelerator.num_processes > 1 else local)
    inputs = torch.tensor([gathered[path] for path in images], dtype=torch.float32)
    return inputs, torch.tensor([targets[path] for path in images], dtype=torch.float32)


def fit_metavoter(voter: MetaVoter, inputs: torch.Tensor, targets: torch.Tensor, config: Stage2Config,
                  seed: int) -> list[float]:
    """Train `voter` in place with L1 (Eq. 6); returns the mean training loss of each epoch."""
    if len(inputs) < 2:
        raise BeholderError("the MetaVoter's BatchNorm needs at least two training images")
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(voter.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    voter.requires_grad_(True).train()
    size = min(config.batch_size, len(inputs))
    losses = []
    for _ in range(config.epochs):
        order = torch.randperm(len(inputs), generator=generator)
        batches = [order[i : i + size] for i in range(0, len(order), size)]
        if len(batches) > 1 and len(batches[-1]) < 2:  # BatchNorm cannot train on one sample
            batches.pop()
        epoch = []
        for idx in batches:
            loss = (voter(*inputs[idx].unbind(-1)) - targets[idx]).abs().mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            epoch.append(loss.item() * len(idx))
        losses.append(float(np.sum(epoch) / sum(len(b) for b in batches)))
    voter.requires_grad_(False).eval()
    return losses
