"""Files of a hub repository, through huggingface_hub's cache: safetensors weights, configs and tokenizer files,
never pickles (which can run code when loaded) or a checkpoint's Python code."""

from __future__ import annotations

from pathlib import Path

from beholder.model.folder import ModelNotFoundError
from beholder.presets import similar_names

HUB_FILES = ("*.safetensors", "*.json", "tokenizer.model", "*.txt", "*.tiktoken")


class HubUnreachableError(ModelNotFoundError):
    """The hub could not be reached (offline, or HF_HUB_OFFLINE) and the files are not in the local cache."""


def did_you_mean(name: str) -> str:
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
            f"no model {repo_id!r} on the hub (or it is private: log in first){did_you_mean(repo_id)}"
        ) from exc
    except RevisionNotFoundError as exc:
        raise ModelNotFoundError(f"{repo_id} has no revision {revision!r}") from exc
    except LocalEntryNotFoundError as exc:
        raise HubUnreachableError(
            f"cannot download {repo_id!r}: the hub is unreachable (offline, or HF_HUB_OFFLINE is set) and it is "
            "not in the local cache. Download it on a connected machine, or pass a local folder."
        ) from exc
