"""The order of training rows as a pure function of (seed, step), so any step can be resumed or sharded.

Epoch e visits the rows in a permutation seeded by (seed, e); the epochs are laid end to end and cut into
global batches of `batch_size` rows (a trailing partial batch is dropped). Global batch s is split evenly
over the processes, and each process's share into micro-batches. One process with batch B and two with B/2
each see exactly the same rows per step: that is what makes DDP a drop-in for single-process training.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from beholder.errors import BeholderError
from beholder.train.config import Stage1Config
from beholder.typedconfig import ConfigError


@dataclass(frozen=True)
class BatchPlan:
    n_rows: int  # training rows
    batch_size: int  # rows per optimizer step, all processes together
    epochs: float  # passes over the rows (fractions allowed)
    seed: int

    @property
    def steps(self) -> int:
        return int(self.n_rows * self.epochs) // self.batch_size

    @lru_cache(maxsize=4)  # noqa: B019 - plans are few and long-lived; consecutive steps share an epoch
    def _epoch(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.n_rows)

    def global_batch(self, step: int) -> list[int]:
        """Row indices of optimizer step `step` (0-based)."""
        start = step * self.batch_size
        rows = []
        for position in range(start, start + self.batch_size):
            epoch, offset = divmod(position, self.n_rows)
            rows.append(int(self._epoch(epoch)[offset]))
        return rows

    def micro_batches(self, step: int, rank: int, world: int, micro_batch_size: int) -> list[list[int]]:
        """Process `rank`'s micro-batches of step `step`."""
        share = self.batch_size // world
        mine = self.global_batch(step)[rank * share : (rank + 1) * share]
        return [mine[i : i + micro_batch_size] for i in range(0, share, micro_batch_size)]

    def check(self, world: int, micro_batch_size: int) -> None:
        if self.batch_size % (world * micro_batch_size):
            raise ConfigError(
                f"stage1.batch_size {self.batch_size} must be a multiple of processes x micro_batch_size "
                f"({world} x {micro_batch_size})"
            )
        if self.steps < 1:
            raise ConfigError(f"{self.n_rows} rows x {self.epochs} epochs make no batch of {self.batch_size}")


def fit_batches(config: Stage1Config, n_rows: int, world: int) -> Stage1Config:
    """`config`, or, when the rows (times the epochs) make no batch of its size, the largest batch they make
    of equal micro-batches per process, none larger than the configured one (the largest such micro-batch).
    Too few rows for the processes is an error."""
    available = int(n_rows * config.epochs)
    if config.batch_size <= available:
        return config
    if available < world:
        raise BeholderError(f"{n_rows} training rows x {config.epochs:g} epochs cannot feed {world} processes")

    def batch(micro: int) -> int:
        return available // (world * micro) * world * micro

    micro = max(range(1, config.micro_batch_size + 1), key=lambda m: (batch(m), m))
    return dataclasses.replace(config, batch_size=batch(micro), micro_batch_size=micro)


def lr_factor(step: int, total: int, warmup: float) -> float:
    """Linear warm-up over the first `warmup` share of the steps, then cosine decay to zero at `total`."""
    warm = math.ceil(warmup * total)
    if step < warm:
        return (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    return 0.5 * (1.0 + math.cos(math.pi * progress))
