"""Stage-1 training forward: one padded pass over a mixed batch, per-sample losses by label type (Eq. 7).

    f = 0 (overall-only row):  L = CE(answer) + lambda * (S_reg - y_overall)^2
    f = 1 (12-dimension row):  L = CE(answer) + mu * mean_12 (expert_k - y_k)^2
Both heads run on every row and the switch is a mask, so every trained parameter is in every graph (DDP then
needs no unused-parameter search) while the gradient flows only where Eq. 7 says. The LM head is applied only
at the supervised positions, never over the whole (B, L, vocab).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from beholder.model.aesthetic import AestheticModel
from beholder.train.examples import IGNORE, Batch


@dataclass
class LossTerms:
    """Per-sample terms, each (B,); a term is zero where it does not apply (e.g. ce without the LM head)."""

    total: torch.Tensor  # the per-sample loss of Eq. 7
    ce: torch.Tensor  # mean cross-entropy over the sample's answer tokens
    regression: torch.Tensor  # squared error of the regression head (overall-only rows)
    expert: torch.Tensor  # mean squared error over the Expert head's 12 nodes (12-dim rows)


class Stage1Loss(nn.Module):
    """Wraps the model for training so DDP sees one module whose forward returns the losses."""

    def __init__(self, model: AestheticModel, *, lm: bool, reg_weight: float, expert_weight: float):
        super().__init__()
        self.model = model
        self.lm = lm
        self.reg_weight = reg_weight
        self.expert_weight = expert_weight

    def forward(self, batch: Batch) -> LossTerms:
        model, heads = self.model, self.model.heads
        hidden, _ = model.backbone.encode(batch.input_ids, batch.images, attention_mask=batch.attention_mask)
        last = hidden[torch.arange(len(batch), device=hidden.device), batch.head_index]  # (B, hidden)
        zero = hidden.new_zeros(len(batch), dtype=torch.float32)
        ce = self._answer_ce(hidden, batch.labels) if self.lm else zero
        regression = expert = zero
        total = ce
        if heads.regression is not None:
            regression = (heads.regression(last.float())[:, 0] - batch.scores[:, -1]) ** 2
            total = total + self.reg_weight * regression * ~batch.is_expert
        if heads.expert is not None:
            expert = ((heads.expert(last) - batch.scores) ** 2).mean(dim=-1)
            total = total + self.expert_weight * expert * batch.is_expert
        return LossTerms(total, ce, regression * ~batch.is_expert, expert * batch.is_expert)

    def _answer_ce(self, hidden: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(B, L, hidden), (B, L) -> (B,) mean next-token cross-entropy over each row's supervised tokens."""
        targets = labels[:, 1:]  # position t predicts token t + 1
        rows, positions = (targets != IGNORE).nonzero(as_tuple=True)
        logits = self.model.backbone.lm_head(hidden[rows, positions]).float()  # (N, vocab), N supervised tokens
        token_ce = nn.functional.cross_entropy(logits, targets[rows, positions], reduction="none")
        sums = hidden.new_zeros(labels.shape[0], dtype=torch.float32).index_add(0, rows, token_ce)
        counts = torch.bincount(rows, minlength=labels.shape[0]).clamp(min=1)
        return sums / counts
