"""The beholder model folder: writing one, and loading one into an AestheticModel (a chat VLM) or an
EmbeddingModel (an image tower), as its backbone adapter says.

Layout (a valid transformers folder plus two files of ours):
    config.json, model*.safetensors, tokenizer files   the backbone, as transformers saves it (no tokenizer for an
                                                        image tower)
    beholder.json                                       ModelConfig: preset, prompts, heads, preprocessing, scale
    heads.safetensors                                   regression / expert / MetaVoter weights (float32)
Weights are read from safetensors only unless pickles are explicitly allowed (beholder.model.weights); remote
code runs only when asked. Where a folder comes from (hub ids, released checkpoints) is beholder.hub's business.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoTokenizer, PreTrainedModel

from beholder.config import CONFIG_NAME, ModelConfig
from beholder.model.adapters import adapter_for
from beholder.model.aesthetic import AestheticModel
from beholder.model.devices import resolve_device, resolve_dtype
from beholder.model.embedding_model import EmbeddingModel
from beholder.model.weights import HEADS_NAME, weight_files

# What a model folder loads into: a chat VLM with its prompts, or an image tower with a head on its embedding.
ScoringModel = AestheticModel | EmbeddingModel


class ModelNotFoundError(FileNotFoundError):
    """The name is neither a model folder, nor a known preset, nor a hub id that could be fetched."""


def save_model(model: ScoringModel, folder: str | Path) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.hf_model.save_pretrained(folder, safe_serialization=True)
    if model.tokenizer is not None:
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
) -> ScoringModel:
    """Build the model of a model folder (see module docstring); `config` overrides beholder.json.
    `model.weights_files` lists the files its weights came from."""
    folder = Path(folder)
    config = config or read_config(folder)
    files = weight_files(folder, allow_pickle=allow_pickle)
    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    adapter = adapter_for(config.backbone)
    hf_model = adapter.hf_class.from_pretrained(
        folder, dtype=dtype, trust_remote_code=trust_remote_code, use_safetensors=None if allow_pickle else True
    )
    model = assemble(folder, config, hf_model, trust_remote_code=trust_remote_code)
    _load_heads(model, folder / HEADS_NAME)
    model.weights_files = tuple(files)
    return model.to(device).eval()


def assemble(
    folder: str | Path, config: ModelConfig, hf_model: PreTrainedModel, *, trust_remote_code: bool = False
) -> ScoringModel:
    """The beholder model around a folder's transformers model (loaded, or empty on the meta device), heads not yet
    loaded: a chat VLM with the folder's tokenizer, or an image tower, as the backbone adapter says."""
    if adapter_for(config.backbone).reads_prompt:
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)
        return AestheticModel(hf_model, tokenizer, config)
    return EmbeddingModel(hf_model, config)


def empty_backbone(
    folder: str | Path, config: ModelConfig, *, dtype: torch.dtype, trust_remote_code: bool = False
) -> PreTrainedModel:
    """The folder's transformers model built from its config without reading weights (call under
    `torch.device("meta")` to allocate nothing)."""
    from transformers import AutoConfig

    hf_class = adapter_for(config.backbone).hf_class
    hf_config = AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code)
    if hasattr(hf_class, "from_config"):  # an Auto class
        return hf_class.from_config(hf_config, dtype=dtype, trust_remote_code=trust_remote_code).eval()
    return hf_class(hf_config).to(dtype).eval()


def _load_heads(model: ScoringModel, path: Path) -> None:
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
