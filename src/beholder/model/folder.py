"""A beholder model folder, and finding one from a local path or a hub id.

Layout (a valid transformers folder plus two files of ours):
    config.json, model*.safetensors, tokenizer files   the backbone, as transformers saves it
    beholder.json                                       ModelConfig: preset, prompts, heads, preprocessing, scale
    heads.safetensors                                   regression / expert / MetaVoter weights (float32)
Weights are only read from safetensors; no pickle is ever loaded, and remote code runs only when asked.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForImageTextToText, AutoTokenizer

from beholder.config import CONFIG_NAME, ModelConfig
from beholder.model.aesthetic import AestheticModel
from beholder.presets import find_release, similar_names

HEADS_NAME = "heads.safetensors"
_HASH_CACHE = ".beholder-weights.sha256.json"

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16}


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


def resolve_device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but torch sees no CUDA GPU")
    return device


def resolve_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    if isinstance(dtype, str):
        if dtype == "auto":
            return torch.bfloat16 if device.type == "cuda" else torch.float32
        if dtype not in DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; use one of {sorted(DTYPES)} or 'auto'")
        dtype = DTYPES[dtype]
    if dtype == torch.float16 and device.type == "cpu":
        raise ValueError("float16 is not supported on CPU (slow and overflow-prone); use bfloat16 or float32")
    return dtype


def read_config(folder: Path) -> ModelConfig:
    if not (folder / CONFIG_NAME).is_file():
        raise ModelNotFoundError(
            f"{folder} is not a beholder model folder (no {CONFIG_NAME}). Released checkpoints in InternVL's chat "
            "layout must be converted to beholder's native layout first."
        )
    return ModelConfig.load(folder)


def load_model(
    folder: str | Path,
    *,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = "float32",
    trust_remote_code: bool = False,
    config: ModelConfig | None = None,
) -> AestheticModel:
    """Build an AestheticModel from a model folder (see module docstring); `config` overrides beholder.json."""
    folder = Path(folder)
    config = config or read_config(folder)
    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    hf_model = AutoModelForImageTextToText.from_pretrained(folder, dtype=dtype, trust_remote_code=trust_remote_code)
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)
    model = AestheticModel(hf_model, tokenizer, config)
    _load_heads(model, folder / HEADS_NAME)
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


# What is downloaded from the hub: weights as safetensors only (pickles can run code, never loaded), configs and
# tokenizer files; never a checkpoint's Python code.
HUB_FILES = ("*.safetensors", "*.json", "tokenizer.model", "*.txt", "*.tiktoken")


def resolve_folder(name: str | Path, *, revision: str | None = None, cache_dir: str | None = None) -> Path:
    """A local folder as is; a released model (preset name or hub id, see beholder.presets) downloaded and
    converted once into beholder's cache (beholder.convert.hub); otherwise a hub id of a beholder model folder,
    downloaded once through huggingface_hub's cache."""
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    release = find_release(str(name))
    if release is not None:
        from beholder.convert.hub import fetch_converted

        repo_id, config = release
        return fetch_converted(repo_id, config, revision=revision)
    if path.exists() or str(name).startswith((".", "/", "~")) or str(name).count("/") != 1:
        raise ModelNotFoundError(
            f"no model folder at {name!r}, and it is neither a released model (`beholder models`) nor a hub id of "
            f"the form 'owner/name'{_did_you_mean(str(name))}"
        )
    return download_snapshot(str(name), revision=revision, cache_dir=cache_dir)


def _did_you_mean(name: str) -> str:
    similar = similar_names(name)
    return f". Did you mean {' or '.join(similar)}?" if similar else ""


def download_snapshot(
    repo_id: str,
    *,
    revision: str | None = None,
    cache_dir: str | None = None,
    allow_patterns: tuple[str, ...] = HUB_FILES,
) -> Path:
    """The files of a hub repository matching `allow_patterns`, from huggingface_hub's cache or downloaded into it."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        return Path(
            snapshot_download(repo_id, revision=revision, cache_dir=cache_dir, allow_patterns=list(allow_patterns))
        )
    except GatedRepoError as exc:
        raise ModelNotFoundError(f"{repo_id} is gated on the hub: accept its terms and log in (`hf auth login`)") from exc
    except RepositoryNotFoundError as exc:
        raise ModelNotFoundError(
            f"no model {repo_id!r} on the hub (or it is private: log in first){_did_you_mean(repo_id)}"
        ) from exc
    except RevisionNotFoundError as exc:
        raise ModelNotFoundError(f"{repo_id} has no revision {revision!r}") from exc
    except LocalEntryNotFoundError as exc:
        raise ModelNotFoundError(
            f"cannot download {repo_id!r}: the hub is unreachable (offline, or HF_HUB_OFFLINE is set) and it is "
            "not in the local cache. Download it on a connected machine, or pass a local folder."
        ) from exc


def weights_sha256(folder: str | Path) -> str:
    """sha256 over every safetensors file of the folder (name + bytes), cached beside them by size and mtime."""
    folder = Path(folder)
    files = sorted(folder.glob("*.safetensors"))
    stamp = [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in files]
    cache = folder / _HASH_CACHE
    try:
        cached = json.loads(cache.read_text())
        if cached["files"] == stamp:
            return cached["sha256"]
    except (OSError, ValueError, KeyError):
        pass
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.name.encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                digest.update(block)
    try:
        tmp = cache.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps({"files": stamp, "sha256": digest.hexdigest()}))
        os.replace(tmp, cache)
    except OSError:
        pass  # a read-only folder only costs re-hashing next time
    return digest.hexdigest()
