"""Files of a hub repository, through huggingface_hub's cache: safetensors weights, configs and tokenizer files,
never pickles (which can run code when loaded) or a checkpoint's Python code; and single files published elsewhere
(a predictor's head), downloaded once and checked against the sha256 their preset pins."""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

from beholder.files import atomic_write
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


class DownloadMismatchError(ModelNotFoundError):
    """A downloaded file is not the one its preset pins (its sha256 differs)."""


def download_verified(url: str, sha256: str, folder: str | Path) -> Path:
    """The file at `url`, downloaded once into `folder`/<sha256>/<name> and checked against `sha256`; a file that
    differs is refused and not kept. Honours HF_HUB_OFFLINE (no download then)."""
    target = Path(folder) / sha256 / url.rsplit("/", 1)[-1]
    if target.is_file():
        return target
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise HubUnreachableError(f"cannot download {url}: HF_HUB_OFFLINE is set and it is not in {target.parent}")
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    try:
        with atomic_write(target) as tmp, urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as out:
            for block in iter(lambda: response.read(1 << 20), b""):
                digest.update(block)
                out.write(block)
            if digest.hexdigest() != sha256:
                raise DownloadMismatchError(
                    f"{url} has sha256 {digest.hexdigest()}, not the {sha256} its preset pins: refused (the file "
                    "changed upstream, or the download was corrupted)"
                )
    except DownloadMismatchError:
        raise
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise HubUnreachableError(f"cannot download {url}: {getattr(exc, 'reason', exc)}") from exc
    return target
