"""The beholder model folder: writing one, and loading one into an AestheticModel.

Layout (a valid transformers folder plus two files of ours):
    config.json, model*.safetensors, tokenizer files   the backbone, as transformers saves it
    beholder.json                                       ModelConfig: preset, prompts, heads, preprocessing, scale
    heads.safetensors                                   regression / expert / MetaVoter weights (float32)
Weights are read from safetensors only unless pickles are explicitly allowed (beholder.model.weights); remote
code runs only when asked. Where a folder comes from (hub ids, released checkpoints) is beholder.hub's business.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForImageTextToText, AutoTokenizer

from beholder.config import CONFIG_NAME, ModelConfig
from beholder.model.aesthetic import AestheticModel
from beholder.model.devices import resolve_device, resolve_dtype
from beholder.model.weights import HEADS_NAME, weight_files


class ModelNotFoundError(FileNotFoundError):
    """The name is neither a model folder, nor a known preset, nor a hub id that could be fetched."""


def save_model(model: AestheticModel, folder: str | Path) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.hf_model.save_pretrained(folder, safe_serialization=True)
    model.tokenizer.save_pretrained(folder)
    model.config.save(folder)
    write_heads(model.heads.state_dict(), folder)
    return folder


def write_heads(state: dict[str, torch.Tensor], folder: str | Path) -> None:
    """Write an AestheticHeads state dict as heads.safetensors, in float32."""
    heads = {k: v.detach().float().cpu().contiguous() for k, v in state.items()}
    save_file(heads, Path(folder) / HEADS_NAME, metadata={"format": "pt", "beholder": "heads"})


def read_config(folder: str | Path) -> ModelConfig:
    folder = Path(folder)
    if not (folder / CONFIG_NAME).is_file():
        raise ModelNotFoundError(f"{folder} is not a beholder model folder (no {CONFIG_NAME})")
    return ModelConfig.load(folder)


def load_model(
    folder: str | Path,
    *,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = "float32",
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
    config: ModelConfig | None = None,
) -> AestheticModel:
    """Build an AestheticModel from a model folder (see module docstring); `config` overrides beholder.json.
    `model.weights_files` lists the files its weights came from."""
    folder = Path(folder)
    config = config or read_config(folder)
    files = weight_files(folder, allow_pickle=allow_pickle)
    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    hf_model = AutoModelForImageTextToText.from_pretrained(
        folder, dtype=dtype, trust_remote_code=trust_remote_code, use_safetensors=None if allow_pickle else True
    )
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)
    model = AestheticModel(hf_model, tokenizer, config)
    _load_heads(model, folder / HEADS_NAME)
    model.weights_files = tuple(files)
    return model.to(device).eval()


def _load_heads(model: AestheticModel, path: Path) -> None:
    """Load head weights, listing every missing, unexpected or mis-shaped tensor when they don't fit the config."""
    state = load_file(path) if path.is_file() else {}
    expected = model.heads.state_dict()
    problems = [f"missing {k} {tuple(v.shape)}" for k, v in expected.items() if k not in state]
    problems += [f"unexpected {k} {tuple(v.shape)}" for k, v in state.items() if k not in expected]
    problems += [
        f"{k}: file has {tuple(state[k].shape)}, config needs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if problems:
        raise ValueError(f"{path}: head weights do not match the heads in {CONFIG_NAME}:\n  " + "\n  ".join(problems))
    model.heads.load_state_dict(state)
