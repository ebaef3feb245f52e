"""One linear layer and its epilogue on the fastest kernel torch has for the device: y = act(x W^T + b) [+ residual].

On CPU (torch's x86 wheels are built with oneDNN) the bias, the activation and the residual add run inside the
matmul as oneDNN post-ops (`torch.ops.mkldnn._linear_pointwise`, the kernel torch.compile's CPU backend emits for
the same pattern): the output is written once, with no bias broadcast copied into it first (what `addmm` does) and
no second pass over it for the activation or the add. Elsewhere (CUDA) it is F.linear, then the activation and the
add in place on the fresh output.

Weights are packed when built: the rows of several projections that read the same input are concatenated (q/k/v,
gate/up), and a per-output-channel scale that follows a projection (InternViT's layer scale) is folded into its
weight and bias, in float32 and rounded once to the weights' dtype. On CPU they are then prepacked: reordered once
into the blocked layout oneDNN's matmul reads, which it otherwise makes from the whole weight at every call (a third
of a matmul's time at a few hundred tokens; measured in BENCHMARKS.md). The plain copy is released, so a prepacked
layer runs on that CPU in that dtype only: a model is moved or cast before it is fused, never after.
"""

from __future__ import annotations

from functools import partial
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

Activation = Literal["gelu", "gelu_tanh", "silu"]

# transformers' `hidden_act` names -> ours; an activation not listed here leaves its layer unfused.
ACTIVATIONS: dict[str, Activation] = {"gelu": "gelu", "gelu_pytorch_tanh": "gelu_tanh", "silu": "silu"}
TORCH_ACTIVATIONS = {"gelu": F.gelu, "gelu_tanh": partial(F.gelu, approximate="tanh"), "silu": F.silu}
_ONEDNN_ACTIVATIONS = {"gelu": ("gelu", "none"), "gelu_tanh": ("gelu", "tanh"), "silu": ("swish", "")}  # (attr, algorithm)
_PACKED_FOR_ROWS = 1024  # the rows (tokens) oneDNN chooses the packed layout for; any number of rows runs on it


def onednn_runs(x: torch.Tensor) -> bool:
    """Whether oneDNN's fused linear kernel takes this input: a CPU tensor in float32 or bfloat16 on a oneDNN build."""
    return (
        x.device.type == "cpu"
        and x.dtype in (torch.float32, torch.bfloat16)
        and torch.backends.mkldnn.enabled
        and torch.backends.mkldnn.is_available()
    )


class FusedLinear(nn.Module):
    """A linear layer with its epilogue: activation (or none), then an optional residual added by the caller."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, activation: Activation | None = None):
        super().__init__()
        self.weight = nn.Parameter(weight.contiguous(), requires_grad=False)  # (out, in); on "meta" once prepacked
        self.bias = None if bias is None else nn.Parameter(bias.contiguous(), requires_grad=False)  # (out,)
        self.activation = activation
        self.packed: tuple[torch.Tensor, ...] = ()  # oneDNN's blocked copies of `blocks()`, once prepacked

    @classmethod
    def pack(
        cls, *linears: nn.Linear, activation: Activation | None = None, scale: torch.Tensor | None = None
    ) -> FusedLinear:
        """The projections' output rows stacked in order (one matmul for several that read the same input), with
        `scale` (out,) folded in: scale * (x W^T + b) == x (scale W)^T + scale b."""
        weight = torch.cat([linear.weight.detach() for linear in linears])
        biases = [linear.bias for linear in linears]
        if all(b is None for b in biases):
            bias = None
        else:  # a projection without a bias among ones with: zeros (adding 0 is exact)
            bias = torch.cat([
                (b.detach() if b is not None else linear.weight.new_zeros(linear.out_features))
                for b, linear in zip(biases, linears)
            ])
        if scale is not None:
            dtype, scale = weight.dtype, scale.detach().float()
            weight = (weight.float() * scale[:, None]).to(dtype)
            bias = None if bias is None else (bias.float() * scale).to(dtype)
        return cls(weight, bias, activation)

    @property
    def out_features(self) -> int:
        return self.weight.shape[0]

    def blocks(self) -> tuple[torch.Tensor, ...]:
        """The weight as the oneDNN kernels take it: whole (a gated layer: its gate and up halves)."""
        return (self.weight.detach(),)

    def prepack(self) -> bool:
        """Reorder the weight once into oneDNN's layout and keep only that; the parameter stays as a shape on the
        meta device. False, and nothing changed, where oneDNN does not run this weight (not on CPU, say)."""
        if self.packed or not onednn_runs(self.weight):
            return False
        self.packed = tuple(torch.ops.mkldnn._reorder_linear_weight(w, _PACKED_FOR_ROWS) for w in self.blocks())
        self.weight = nn.Parameter(self.weight.detach().to("meta"), requires_grad=False)
        return True

    def _apply(self, fn, recurse=True):
        if self.packed:
            raise RuntimeError("a fused model's weights are prepacked for the CPU and dtype it was loaded with: it "
                               "cannot be moved or cast (load it with fused=False, or on the device and dtype wanted)")
        return super()._apply(fn, recurse)

    def onednn_operands(self, x: torch.Tensor) -> tuple[torch.Tensor, ...] | None:
        """The weight blocks oneDNN multiplies `x` by, or None when oneDNN does not run `x` (F.linear does)."""
        if self.packed:
            return self.packed  # x is on the CPU in the weights' dtype: _apply refuses to move a prepacked layer
        return self.blocks() if onednn_runs(x) and x.dtype == self.weight.dtype else None

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        """act(x W^T + b), plus `residual` (same shape as the output) when given. (B, ..., in) -> (B, ..., out)."""
        if residual is not None and self.activation is not None:
            raise ValueError("a residual is added after a projection without activation, not after one with it")
        operands = self.onednn_operands(x)
        if operands is not None:
            if residual is not None:
                return torch.ops.mkldnn._linear_pointwise.binary(x, residual, operands[0], self.bias, "add")
            attr, algorithm = _ONEDNN_ACTIVATIONS.get(self.activation, ("none", ""))
            return torch.ops.mkldnn._linear_pointwise(x, operands[0], self.bias, attr, [], algorithm)
        y = F.linear(x, self.weight, self.bias)
        if self.activation is not None:
            y = TORCH_ACTIVATIONS[self.activation](y)
        return y.add_(residual) if residual is not None else y

    def extra_repr(self) -> str:
        out, inp = self.weight.shape
        return (f"in={inp}, out={out}, bias={self.bias is not None}, activation={self.activation}, "
                f"prepacked={bool(self.packed)}")


class FusedGatedLinear(FusedLinear):
    """A gated MLP's input side, act(x Wg^T + bg) * (x Wu^T + bu), from one packed [gate | up] weight.

    On oneDNN it runs as two matmuls, on the gate and the up half, each with its epilogue (the activation on the
    gate; the product with the gate on the up projection), so neither output is read again; elsewhere as one matmul
    over the packed weight, then the activation and the product."""

    def blocks(self) -> tuple[torch.Tensor, ...]:
        return self.weight.detach().split(self.out_features // 2)  # row blocks: contiguous views

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, ..., in) -> (B, ..., out / 2)."""
        half = self.out_features // 2
        bias = (None, None) if self.bias is None else self.bias.split(half)
        operands = self.onednn_operands(x)
        if operands is not None:
            gate_weight, up_weight = operands
            attr, algorithm = _ONEDNN_ACTIVATIONS[self.activation]
            gate = torch.ops.mkldnn._linear_pointwise(x, gate_weight, bias[0], attr, [], algorithm)
            return torch.ops.mkldnn._linear_pointwise.binary(x, gate, up_weight, bias[1], "mul")
        gate, up = F.linear(x, self.weight, self.bias).split(half, dim=-1)
        return TORCH_ACTIVATIONS[self.activation](gate).mul_(up)
