"""An image-tower checkpoint (CLIP, SigLIP; transformers layout) + a pickled head -> one beholder model folder.

LAION's aesthetic predictors and aesthetic-predictor-v2.5 publish their heads as PyTorch state dicts written by
torch.save, a pickle, beside code that loads OpenAI's CLIP or Google's SigLIP. The head is read once, here, with
torch.load(weights_only=True), which builds tensors and plain containers and nothing else: a pickle that would
run code or build any other object is refused. The head's Linear layers are mapped in order onto the preset's
regression head, every tensor used once and every shape checked. The image tower loads from safetensors only;
the text tower of a full CLIP / SigLIP checkpoint is left out (the predictors never use it), and a tower weight
the checkpoint lacks stops the conversion instead of being left at random.
"""

from __future__ import annotations

import dataclasses
import pickle
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from beholder import presets
from beholder.config import ModelConfig
from beholder.convert.output import check_destination, write_folder
from beholder.convert.tensors import ConversionError, read_json
from beholder.model.adapters import adapter_for
from beholder.model.embedding import EmbeddingBackbone
from beholder.model.embedding_model import EmbeddingModel
from beholder.model.folder import write_heads
from beholder.model.heads import linear_names

# Checkpoint weights outside the image tower, which the conversion leaves out on purpose.
TEXT_SIDE = re.compile(r"^(text_model\.|text_projection\.|logit_scale$|logit_bias$)")


class UnsafePickleError(ConversionError):
    """A pickled head that holds more than tensors in plain containers (it could run code when loaded)."""


def read_pickled_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict saved with torch.save, read with torch.load(weights_only=True); anything else is refused."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = str(exc).strip().splitlines()[0]
        raise UnsafePickleError(
            f"{path} is not a plain PyTorch state dict: unpickling it would build objects other than tensors (it "
            f"could run code), so beholder refuses it. ({reason})"
        ) from None
    except (OSError, RuntimeError, EOFError, ValueError) as exc:
        raise ConversionError(f"{path} is not a readable PyTorch file: {exc}") from None
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConversionError(f"{path} does not hold a state dict (name -> tensor), but a {type(state).__name__}")
    return dict(state)


def head_state(source: Mapping[str, torch.Tensor], head: nn.Module, prefix: str = "regression.") -> dict:
    """The source's Linear layers (weight and bias per module, modules in natural order: layers.2 before layers.10)
    mapped one to one onto the Linear layers of `head`, as float32 tensors of `head`'s state dict under `prefix`."""
    modules: dict[str, dict[str, torch.Tensor]] = {}
    for name, tensor in source.items():
        module, _, param = name.rpartition(".")
        modules.setdefault(module, {})[param] = tensor
    found = "\n".join(f"  {name} {tuple(t.shape)}" for name, t in sorted(source.items()))
    odd = [m for m, params in modules.items() if set(params) != {"weight", "bias"} or params["weight"].dim() != 2]
    targets = linear_names(head)
    if odd or len(modules) != len(targets):
        raise ConversionError(
            f"the head is not {len(targets)} Linear layers (weight and bias each), as the preset's head is; found:\n"
            f"{found}"
        )
    state = {}
    ordered = sorted(modules, key=lambda m: [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", m)])
    for module, target in zip(ordered, targets):
        expected = head.get_submodule(target).weight.shape
        if modules[module]["weight"].shape != expected:
            raise ConversionError(
                f"head layer {module} has weight {tuple(modules[module]['weight'].shape)}, the preset's head needs "
                f"{tuple(expected)}; found:\n{found}"
            )
        for param in ("weight", "bias"):
            key = f"{target}.{param}" if target else param
            state[prefix + key] = modules[module][param].float()
    return state


def convert_embedding_checkpoint(
    src: str | Path,
    head_file: str | Path,
    dst: str | Path,
    *,
    preset: str | ModelConfig,
    hub_id: str | None = None,
) -> Path:
    """Convert the image tower in `src` (a CLIP / SigLIP checkpoint folder in transformers' layout) and the pickled
    head `head_file` into a new beholder model folder `dst` with `preset` (name or config); returns `dst`."""
    src, dst = Path(src), Path(dst)
    check_destination(dst)
    base = presets.preset(preset) if isinstance(preset, str) else preset
    adapter = adapter_for(base.backbone)
    if not issubclass(adapter, EmbeddingBackbone):
        raise ConversionError(f"preset {base.name!r} is not an image-embedding model; `beholder convert` it as a chat "
                              "checkpoint")
    tower = _load_tower(adapter, src)
    config = dataclasses.replace(
        base,
        preprocess=dataclasses.replace(base.preprocess, image_size=tower.config.image_size),
        hub_id=hub_id or base.hub_id,
    )
    try:
        model = EmbeddingModel(tower, config)
    except ValueError as exc:
        raise ConversionError(f"the converted model would not load: {exc}") from exc
    model.heads.load_state_dict(head_state(read_pickled_state_dict(head_file), model.heads.regression))

    def fill(folder: Path) -> None:
        tower.save_pretrained(folder, safe_serialization=True)
        config.save(folder)
        write_heads(model.heads.state_dict(), folder)

    return write_folder(dst, fill)


def _load_tower(adapter: type[EmbeddingBackbone], src: Path) -> nn.Module:
    if not any(src.glob("*.safetensors")):
        raise ConversionError(f"{src} has no .safetensors weights (beholder never loads pickled image towers)")
    from transformers.utils import logging

    full = read_json(src / "config.json")
    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()  # its load report lists the text tower left out on purpose; checked below
    try:
        config = adapter.hf_class.config_class.from_pretrained(src)
        if "vision_config" in full and "projection_dim" in full:  # a whole CLIP's projection width is set on top
            config.projection_dim = full["projection_dim"]
        tower, info = adapter.hf_class.from_pretrained(
            src, config=config, dtype=torch.float32, use_safetensors=True, output_loading_info=True
        )
    except (OSError, ValueError, RuntimeError) as exc:
        raise ConversionError(f"{src} is not a {adapter.hf_class.__name__} checkpoint: {exc}") from None
    finally:
        logging.set_verbosity(verbosity)
    unexpected = [k for k in info["unexpected_keys"] if not TEXT_SIDE.match(k)]
    if info["missing_keys"] or unexpected or info.get("mismatched_keys"):
        raise ConversionError(
            f"{src} does not hold a complete {adapter.hf_class.__name__}: missing {sorted(info['missing_keys'])}, "
            f"unexpected {sorted(unexpected)}, mismatched {info.get('mismatched_keys')}"
        )
    return tower.eval()
