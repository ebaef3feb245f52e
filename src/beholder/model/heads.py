"""The aesthetic heads of HumanAesExpert, general enough for token-as-score, Q-Align-style and embedding scorers.

All heads run in float32 on the features at the backbone's read points, h: (B, D): a chat model's last hidden
state at the last position of a question, or an image tower's embedding. Every score a head returns is normalised
to [0, 1] (the level head's native expectation is kept too).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from beholder.config import ExpertHeadConfig, HeadsConfig, MetaVoterConfig, RegressionHeadConfig
from beholder.standard import APPEARANCE_LEAVES, DIMENSIONS, FACE_LEAVES, LEAVES


@dataclass
class HeadOutputs:
    """Per-image head scores, each (B,) in [0, 1] unless noted."""

    lm: torch.Tensor | None = None  # S'_LM, the level head's expectation min-max normalised
    lm_native: torch.Tensor | None = None  # S_LM on the level weights' own scale (1..5, 0..100)
    regression: torch.Tensor | None = None
    expert: torch.Tensor | None = None  # the expert head's overall (12th) score
    dimensions: torch.Tensor | None = None  # (B, 12) expert scores, official order
    metavoter: torch.Tensor | None = None
    scores: dict[str, torch.Tensor] = field(default_factory=dict)  # named scores (the level head on each question)

    def named(self) -> dict[str, torch.Tensor]:
        names = ("lm", "regression", "expert", "metavoter")
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}

    def final(self, fast: str) -> torch.Tensor:
        """(B,) final score in [0, 1]: the MetaVoter when it ran, else the one-pass head `fast` names."""
        if self.metavoter is not None:
            return self.metavoter
        if fast == "mean":
            return (self.lm + self.regression) / 2
        return self.lm if fast == "level" else self.regression


class LevelHead(nn.Module):
    """S = sum_i w_i * softmax(z)_i over the logits z of a few tokens, e.g. bad..excellent = 1..5 (HumanAesExpert,
    Q-Align) or the 101 ArtiMuse score tokens = 0..100. Only the rows of the LM head for those tokens are used,
    so the (B, vocab) logits are never computed."""

    def __init__(self, token_ids: Sequence[int], weights: Sequence[float]):
        super().__init__()
        if len(token_ids) != len(weights) or len(token_ids) < 2:
            raise ValueError("level head needs >= 2 tokens and one weight per token")
        if len(set(token_ids)) != len(token_ids):
            raise ValueError(f"level head tokens must be distinct ids, got {list(token_ids)}")
        self.register_buffer("token_ids", torch.tensor(list(token_ids), dtype=torch.long), persistent=False)
        self.register_buffer("weights", torch.tensor(list(weights), dtype=torch.float32), persistent=False)

    def logits(self, hidden: torch.Tensor, lm_head: nn.Linear) -> torch.Tensor:
        """(B, hidden) -> (B, n_tokens) logits, in float32."""
        rows = lm_head.weight[self.token_ids]
        bias = lm_head.bias[self.token_ids] if lm_head.bias is not None else None
        return nn.functional.linear(hidden.to(rows.dtype), rows, bias).float()

    def expectation(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, n_tokens) logits -> (B,) expected value on the weights' own scale."""
        return logits.softmax(dim=-1) @ self.weights

    def normalise(self, value: torch.Tensor) -> torch.Tensor:
        """Min-max normalise an expectation to [0, 1] by the weights' range (S'_LM of the paper)."""
        lo, hi = self.weights.min(), self.weights.max()
        return (value - lo) / (hi - lo)


ACTIVATIONS: dict[str, type[nn.Module]] = {
    "gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid,
}


class L2Normalize(nn.Module):
    """x / ||x||_2 along the last dimension."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x / x.norm(dim=-1, keepdim=True)


def regression_head(n_in: int, config: RegressionHeadConfig) -> nn.Module:
    """(B, n_in) -> (B, 1). HumanAesExpert's head is a plain Linear(n_in, 1) (state: weight, bias); a head with
    hidden layers or L2 normalisation is a Sequential: [L2Normalize], Linear, [activation], ..., Linear(h, 1)."""
    if not config.hidden and not config.l2_normalize:
        return nn.Linear(n_in, 1)
    layers: list[nn.Module] = [L2Normalize()] if config.l2_normalize else []
    widths = (n_in, *config.hidden, 1)
    for i, (a, b) in enumerate(zip(widths, widths[1:])):
        layers.append(nn.Linear(a, b))
        if config.activation is not None and i < len(widths) - 2:
            layers.append(ACTIVATIONS[config.activation]())
    return nn.Sequential(*layers)


def linear_names(module: nn.Module) -> list[str]:
    """The state-dict prefixes of the Linear layers of a head, in forward order (for converters)."""
    return [name for name, child in module.named_modules() if isinstance(child, nn.Linear)]


def _ffn(n_in: int, hidden: int, activation: str) -> nn.Module:
    if hidden == 0:
        return nn.Linear(n_in, 1)
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown expert head activation {activation!r}; known: {sorted(ACTIVATIONS)}")
    return nn.Sequential(nn.Linear(n_in, hidden), ACTIVATIONS[activation](), nn.Linear(hidden, 1))


class ExpertHead(nn.Module):
    """Sparsely connected MLP mirroring the 12-dimension hierarchy.

    leaves: Linear(hidden -> 9) gives the leaf scores (5 face, 3 appearance, environment).
    face:   FFN(5 face leaves -> 1)             = facial_aesthetic
    appearance: FFN(3 appearance leaves -> 1)   = general_appearance_aesthetic
    overall: FFN(environment, facial, appearance -> 1)
    Every node is an output, so every node can be supervised (MSE) in training.
    """

    def __init__(self, hidden_size: int, config: ExpertHeadConfig):
        super().__init__()
        self.leaves = nn.Linear(hidden_size, len(LEAVES))
        self.face = _ffn(len(FACE_LEAVES), config.ffn_hidden, config.activation)
        self.appearance = _ffn(len(APPEARANCE_LEAVES), config.ffn_hidden, config.activation)
        self.overall = _ffn(3, config.ffn_hidden, config.activation)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """(B, hidden) -> (B, 12) scores in the official dimension order."""
        leaves = self.leaves(hidden.float())  # (B, 9) in LEAVES order
        face_leaves, appearance_leaves, environment = leaves[:, :5], leaves[:, 5:8], leaves[:, 8:9]
        facial = self.face(face_leaves)  # (B, 1)
        appearance = self.appearance(appearance_leaves)
        overall = self.overall(torch.cat([environment, facial, appearance], dim=-1))
        by_key = dict(zip(LEAVES, leaves.unbind(-1)))
        by_key.update(facial_aesthetic=facial[:, 0], general_appearance_aesthetic=appearance[:, 0], overall=overall[:, 0])
        return torch.stack([by_key[key] for key in DIMENSIONS], dim=-1)


class MetaVoter(nn.Module):
    """y = MLP(S'_LM, S_reg, S_exp) with BatchNorm + ReLU; trained with L1 in stage 2, everything else frozen."""

    def __init__(self, config: MetaVoterConfig):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(3, config.hidden), nn.BatchNorm1d(config.hidden), nn.ReLU(), nn.Linear(config.hidden, 1)
        )

    def forward(self, lm: torch.Tensor, regression: torch.Tensor, expert: torch.Tensor) -> torch.Tensor:
        """Three (B,) scores in [0, 1] -> (B,) final score."""
        return self.net(torch.stack([lm, regression, expert], dim=-1).float())[:, 0]


class AestheticHeads(nn.Module):
    """The trainable heads of one model; the level head has no weights of its own (it borrows LM-head rows)."""

    def __init__(self, hidden_size: int, config: HeadsConfig, level_token_ids: Sequence[int] | None):
        super().__init__()
        self.config = config
        if config.fast not in ("level", "regression", "mean"):
            raise ValueError(f"heads.fast must be 'level', 'regression' or 'mean', not {config.fast!r}")
        needs = {"level": config.level, "regression": config.regression, "mean": config.level and config.regression}
        if not needs[config.fast]:
            raise ValueError(f"heads.fast={config.fast!r} needs heads that this config does not have")
        self.level = LevelHead(level_token_ids, config.level.weights) if config.level else None
        self.regression = regression_head(hidden_size, config.regression) if config.regression else None
        self.expert = ExpertHead(hidden_size, config.expert) if config.expert else None
        self.metavoter = MetaVoter(config.metavoter) if config.metavoter else None
        if self.metavoter is not None and not (self.level and self.regression and self.expert):
            raise ValueError("the MetaVoter fuses the level, regression and expert heads: all three are needed")

    def regression_score(self, features: torch.Tensor, scale: tuple[float, float]) -> torch.Tensor:
        """(B, D) features -> (B,) regression score in [0, 1]. A head that outputs the native scale is normalised by
        `scale` in float64, so mapping the score back onto the scale returns the head's own value."""
        value = self.regression(features.float())[:, 0]
        if not self.config.regression.native:
            return value
        lo, hi = scale
        return (value.double() - lo) / (hi - lo)
