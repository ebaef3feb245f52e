"""HumanAesExpert's aesthetic heads, read from the checkpoint's tensor names and shapes.

The public code only says where the heads live (language_model.lm_regression_head, language_model.expert_head);
their inner layout is known from the paper, not from code. This module reads the layout from the tensors, maps
what fits beholder's heads (beholder.model.heads) and otherwise stops with a HeadLayoutError that lists every
tensor it found. What fits:

  regression  one Linear(hidden, 1)
  expert      one Linear(hidden, 9) (the leaves) and three parent FFNs, each one Linear(n, 1) or
              Linear(n, h) -> activation -> Linear(h, 1) with one h for all three: the 5-input FFN is the face,
              the two 3-input ones are told apart by their names (appearance / overall)
  metavoter   Linear(3, h) -> BatchNorm1d(h) -> Linear(h, 1), anywhere under a module whose name has "voter"

Tensors cannot tell everything; where they cannot, beholder's own conventions are assumed and said here:
the leaves come out in the official label order (beholder.standard.LEAVES), the overall FFN reads
(environment, facial, appearance) in that order (beholder.standard.HIERARCHY), the MetaVoter's activation is
the paper's ReLU with PyTorch's default BatchNorm eps. The activation inside a two-layer parent FFN is not
assumed: it leaves no tensor, so it must be given (expert_activation), or the conversion stops.
A Linear stored without bias gets a zero bias, which computes the same.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from beholder.config import ExpertHeadConfig, MetaVoterConfig
from beholder.convert.tensors import ConversionError, TensorSource
from beholder.model.heads import ACTIVATIONS
from beholder.standard import APPEARANCE_LEAVES, FACE_LEAVES, LEAVES

REGRESSION_PREFIX = "language_model.lm_regression_head."
EXPERT_PREFIX = "language_model.expert_head."
_ROLE_WORDS = {  # name fragments that say which 3-input parent FFN is which
    "appearance": ("appearance", "general", "body"),
    "overall": ("overall", "comprehensive", "total", "final", "root"),
}


class HeadLayoutError(ConversionError):
    """The checkpoint's heads do not have a layout beholder's heads can express."""


@dataclass(frozen=True)
class CheckpointHeads:
    regression: bool
    expert: ExpertHeadConfig | None
    metavoter: MetaVoterConfig | None
    state: dict[str, torch.Tensor]  # state dict of beholder.model.heads.AestheticHeads for these heads


@dataclass(frozen=True)
class _Module:
    """The tensors of one module of a head: path relative to the head, parameter name -> full tensor name."""

    path: str
    params: dict[str, str]

    def order(self) -> tuple:
        """Sort key that puts Sequential children in index order ("net.10" after "net.2")."""
        return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", self.path))


class _Head:
    """The modules under one head prefix, with shapes, and a uniform way to refuse them."""

    def __init__(self, source: TensorSource, prefix: str, what: str, expected: str):
        self.source, self.prefix, self.what, self.expected = source, prefix, what, expected
        modules: dict[str, dict[str, str]] = {}
        for name in source.names(prefix):
            path, _, param = name[len(prefix) :].rpartition(".")
            modules.setdefault(path, {})[param] = name
        self.modules = sorted((_Module(path, params) for path, params in modules.items()), key=_Module.order)

    def shape(self, module: _Module, param: str) -> tuple[int, ...]:
        return self.source.shapes[module.params[param]]

    def is_linear(self, module: _Module) -> bool:
        params = set(module.params)
        return "weight" in params and params <= {"weight", "bias"} and len(self.shape(module, "weight")) == 2

    def refuse(self, reason: str) -> HeadLayoutError:
        return HeadLayoutError(
            f"{self.prefix}* does not match beholder's {self.what} ({self.expected}): {reason}.\n"
            f"Found in the checkpoint:\n{self.source.describe(self.prefix)}"
        )

    def linear(self, module: _Module) -> tuple[torch.Tensor, torch.Tensor]:
        """(weight, bias) of a Linear, taken from the source; a missing bias is zeros."""
        weight = self.source.take(module.params["weight"])
        bias = self.source.take(module.params["bias"]) if "bias" in module.params else weight.new_zeros(len(weight))
        return weight, bias


def read_heads(source: TensorSource, hidden_size: int, expert_activation: str | None = None) -> CheckpointHeads:
    """Every aesthetic head the checkpoint carries, as beholder head configs and one AestheticHeads state."""
    state: dict[str, torch.Tensor] = {}
    regression = bool(source.names(REGRESSION_PREFIX))
    if regression:
        head = _Head(source, REGRESSION_PREFIX, "regression head", f"Linear({hidden_size}, 1)")
        state.update(_regression(head, hidden_size))
    expert = None
    if source.names(EXPERT_PREFIX):
        head = _Head(source, EXPERT_PREFIX, "expert head", f"Linear({hidden_size}, 9) + parent FFNs 5->1, 3->1, 3->1")
        expert, expert_state = _expert(head, hidden_size, expert_activation)
        state.update(expert_state)
    metavoter = None
    voter_prefix = _voter_prefix(source)
    if voter_prefix:
        head = _Head(source, voter_prefix, "MetaVoter", "Linear(3, h) -> BatchNorm1d(h) -> ReLU -> Linear(h, 1)")
        metavoter, voter_state = _metavoter(head)
        state.update(voter_state)
    return CheckpointHeads(regression, expert, metavoter, state)


def _regression(head: _Head, hidden_size: int) -> dict[str, torch.Tensor]:
    if len(head.modules) != 1 or not head.is_linear(head.modules[0]):
        raise head.refuse("it is not a single Linear layer")
    (module,) = head.modules
    if head.shape(module, "weight") != (1, hidden_size):
        raise head.refuse(f"its weight is {head.shape(module, 'weight')}, not (1, {hidden_size})")
    weight, bias = head.linear(module)
    return {"regression.weight": weight, "regression.bias": bias}


def _chains(head: _Head) -> dict[str, list[_Module]]:
    """Linear modules grouped into chains: "face.0" and "face.2" form the chain "face", in index order."""
    chains: dict[str, list[_Module]] = {}
    for module in head.modules:
        if not head.is_linear(module):
            raise head.refuse(f"{module.path or '(top level)'} is not a Linear layer ({sorted(module.params)})")
        stem, _, last = module.path.rpartition(".")
        chains.setdefault(stem if last.isdigit() else module.path, []).append(module)
    return chains


def _dims(head: _Head, chain: list[_Module]) -> list[int]:
    """[in, hidden..., out] of a chain of Linears; refuses a chain whose layers do not connect."""
    dims = [head.shape(chain[0], "weight")[1]]
    for module in chain:
        out_features, in_features = head.shape(module, "weight")
        if in_features != dims[-1]:
            raise head.refuse(f"{module.path} takes {in_features} inputs but the layer before gives {dims[-1]}")
        dims.append(out_features)
    return dims


def _expert(head: _Head, hidden_size: int, activation: str | None) -> tuple[ExpertHeadConfig, dict[str, torch.Tensor]]:
    chains = _chains(head)
    dims = {stem: _dims(head, chain) for stem, chain in chains.items()}
    leaves = [stem for stem, d in dims.items() if d[0] == hidden_size]
    if len(leaves) != 1 or dims[leaves[0]] != [hidden_size, len(LEAVES)]:
        found = [dims[stem] for stem in leaves]
        raise head.refuse(f"expected one Linear({hidden_size}, {len(LEAVES)}) for the 9 leaves; the chains reading "
                          f"the hidden state have widths {found or 'none'}")
    roles = {"leaves": leaves[0], **_parent_roles(head, {s: d for s, d in dims.items() if s != leaves[0]})}
    parents = [dims[roles[r]] for r in ("face", "appearance", "overall")]
    if len({len(d) for d in parents}) != 1 or len(parents[0]) > 3 or len({tuple(d[1:-1]) for d in parents}) != 1:
        raise head.refuse(f"the parent FFNs must all be Linear(n, 1) or all Linear(n, h) -> Linear(h, 1) with one "
                          f"h; found {parents}")
    ffn_hidden = parents[0][1] if len(parents[0]) == 3 else 0
    if ffn_hidden:
        _check_activation_slot(head, [chains[roles[r]] for r in ("face", "appearance", "overall")])
        if activation is None:
            raise head.refuse(
                "the parent FFNs have a hidden layer, and the activation between their two Linears leaves no "
                "tensor to read it from. Name it (read it in the checkpoint's modeling code): `beholder convert "
                f"SRC DST --expert-activation NAME` or convert_checkpoint(..., expert_activation=NAME), NAME one of "
                f"{sorted(ACTIVATIONS)}"
            )
        if activation not in ACTIVATIONS:
            raise ConversionError(f"unknown expert activation {activation!r}; known: {sorted(ACTIVATIONS)}")
    state: dict[str, torch.Tensor] = {}
    for role, stem in roles.items():
        chain = chains[stem]
        names = [f"expert.{role}."] if len(chain) == 1 else [f"expert.{role}.0.", f"expert.{role}.2."]
        for name, module in zip(names, chain):
            state[name + "weight"], state[name + "bias"] = head.linear(module)
    return ExpertHeadConfig(ffn_hidden=ffn_hidden, activation=activation or "gelu"), state


def _parent_roles(head: _Head, dims: dict[str, list[int]]) -> dict[str, str]:
    """Which chain is the face, appearance and overall FFN: by input width, then by name for the two 3-input ones."""
    face = [s for s, d in dims.items() if d[0] == len(FACE_LEAVES)]
    threes = [s for s, d in dims.items() if d[0] == len(APPEARANCE_LEAVES)]
    others = [s for s in dims if s not in face and s not in threes]
    if len(face) != 1 or len(threes) != 2 or others or any(d[-1] != 1 for d in dims.values()):
        found = ", ".join(f"{stem}: {' -> '.join(map(str, d))}" for stem, d in dims.items())
        raise head.refuse(f"expected one 5-input and two 3-input FFNs with 1 output each, found {found}")
    roles = {"face": face[0]}
    for role, words in _ROLE_WORDS.items():
        named = [s for s in threes if any(w in s.lower() for w in words)]
        if len(named) != 1:
            raise head.refuse(f"cannot tell from the names {threes} which 3-input FFN computes {role} "
                              f"(looked for {words})")
        roles[role] = named[0]
    if roles["appearance"] == roles["overall"]:
        raise head.refuse(f"the name {roles['overall']!r} reads as both appearance and overall")
    return roles


def _check_activation_slot(head: _Head, chains: list[list[_Module]]) -> None:
    """Two Linears of an FFN must sit at Sequential indices with a parameter-free module between them."""
    for first, second in chains:
        a, b = first.path.rpartition(".")[2], second.path.rpartition(".")[2]
        if not (a.isdigit() and b.isdigit() and int(b) - int(a) == 2):
            raise head.refuse(f"{first.path} and {second.path} are not Linear -> activation -> Linear "
                              "(Sequential indices i and i + 2)")


def _voter_prefix(source: TensorSource) -> str | None:
    """The prefix of the MetaVoter's tensors: the module path up to the first component naming a voter."""
    prefixes = set()
    for name in source.names():
        parts = name.split(".")
        for i, part in enumerate(parts[:-1]):
            if "voter" in part.lower():
                prefixes.add(".".join(parts[: i + 1]) + ".")
                break
    if len(prefixes) > 1:
        raise HeadLayoutError(f"tensors of more than one MetaVoter-like module: {sorted(prefixes)}")
    return prefixes.pop() if prefixes else None


def _metavoter(head: _Head) -> tuple[MetaVoterConfig, dict[str, torch.Tensor]]:
    modules = head.modules
    norm_params = {"weight", "bias", "running_mean", "running_var"}
    kinds = ["linear" if head.is_linear(m) else "batchnorm" if norm_params <= set(m.params) else "other"
             for m in modules]
    if kinds != ["linear", "batchnorm", "linear"]:
        raise head.refuse(f"found the modules {[m.path for m in modules]} of kinds {kinds}")
    first, norm, last = modules
    hidden = head.shape(first, "weight")[0]
    if head.shape(first, "weight") != (hidden, 3) or head.shape(last, "weight") != (1, hidden) or any(
        head.shape(norm, p) != (hidden,) for p in ("weight", "bias", "running_mean", "running_var")
    ):
        raise head.refuse(f"the shapes do not chain 3 -> {hidden} -> 1")
    state = {}
    state["metavoter.net.0.weight"], state["metavoter.net.0.bias"] = head.linear(first)
    for param in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
        if param in norm.params:
            state[f"metavoter.net.1.{param}"] = head.source.take(norm.params[param])
    # only training reads the counter (BatchNorm momentum); a checkpoint saved without it loses nothing
    state.setdefault("metavoter.net.1.num_batches_tracked", torch.tensor(0))
    state["metavoter.net.3.weight"], state["metavoter.net.3.bias"] = head.linear(last)
    return MetaVoterConfig(hidden=hidden), state
