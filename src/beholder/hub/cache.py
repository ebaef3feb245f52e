"""Released checkpoints from the hub: downloaded once by huggingface_hub, converted once into beholder's cache.

The converted folder is keyed by beholder's model-folder format, repository and commit,
<cache>/converted/format-<N>/<owner>--<name>--<commit>, where <cache> is $BEHOLDER_CACHE or ~/.cache/beholder:
a new upstream commit converts again, and so does a beholder whose folder format changed (so a released model
always gets the current preset's settings), while a repeated load reuses it. Conversion writes a temporary
folder and renames it into place, so a folder in the cache is complete even when a conversion was interrupted
or two processes converted at once.
"""

from __future__ import annotations

import os
from pathlib import Path

from beholder.config import CONFIG_NAME, FORMAT_VERSION, ModelConfig
from beholder.convert.checkpoint import convert_checkpoint
from beholder.hub.download import download_snapshot
from beholder.model.folder import ModelNotFoundError
from beholder.presets import find_release


def cache_dir() -> Path:
    return Path(os.environ.get("BEHOLDER_CACHE") or "~/.cache/beholder").expanduser() / "converted"


def fetch_converted(
    repo_id: str, config: ModelConfig, *, revision: str | None = None, expert_activation: str | None = None
) -> Path:
    """The beholder model folder converted from hub repository `repo_id` (a chat-layout checkpoint) with preset
    `config`: downloaded and converted the first time, reused after."""
    snapshot = download_snapshot(repo_id, revision=revision)
    commit = snapshot.name  # huggingface_hub's cache keeps each revision in snapshots/<commit>
    target = cache_dir() / f"format-{FORMAT_VERSION}" / f"{repo_id.replace('/', '--')}--{commit}"
    if (target / CONFIG_NAME).is_file():
        return target
    try:
        return convert_checkpoint(snapshot, target, preset=config, hub_id=repo_id, expert_activation=expert_activation)
    except FileExistsError:
        if (target / CONFIG_NAME).is_file():  # another process converted it meanwhile
            return target
        raise


def convert_source(
    src: str | Path,
    dst: str | Path,
    *,
    preset: str | ModelConfig | None = None,
    revision: str | None = None,
    expert_activation: str | None = None,
) -> Path:
    """Convert a chat-layout checkpoint given as a local folder, a released model's preset name or a hub id into
    the new beholder model folder `dst`. A released model brings its preset unless `preset` names another."""
    folder = Path(src).expanduser()
    if folder.is_dir():
        return convert_checkpoint(folder, dst, preset=preset, expert_activation=expert_activation)
    release = find_release(str(src))
    if release is None and str(src).count("/") != 1:
        raise ModelNotFoundError(f"{src!r} is neither a folder, nor a released model (`beholder models`), nor a hub id")
    repo_id, released = release or (str(src), None)
    snapshot = download_snapshot(repo_id, revision=revision)
    return convert_checkpoint(snapshot, dst, preset=preset or released, hub_id=repo_id,
                              expert_activation=expert_activation)
