"""Released checkpoints from the hub: downloaded once by huggingface_hub, converted once into beholder's cache.

The converted folder is keyed by beholder's model-folder format, repository and commit,
<cache>/converted/format-<N>/<owner>--<name>--<commit>, where <cache> is $BEHOLDER_CACHE or ~/.cache/beholder:
a new upstream commit converts again, and so does a beholder whose folder format changed (so a released model
always gets the current preset's settings), while a repeated load reuses it. Conversion writes a temporary
folder and renames it into place, so a folder in the cache is complete even when a conversion was interrupted
or two processes converted at once.

A predictor whose head is published outside the hub (presets.HEAD_FILES: LAION's, aesthetic-predictor-v2.5) is its
image tower's repository plus that file, downloaded once into <cache>/downloads and checked against its pinned
sha256; its converted folder is keyed by the preset too (one tower serves several predictors).
"""

from __future__ import annotations

from pathlib import Path

from beholder.config import CONFIG_NAME, FORMAT_VERSION, ModelConfig
from beholder.convert.checkpoint import convert_checkpoint
from beholder.convert.embedding import convert_embedding_checkpoint
from beholder.files import cache_root
from beholder.hub.download import download_snapshot, download_verified
from beholder.model.folder import ModelNotFoundError
from beholder.presets import HEAD_FILES, find_release


def cache_dir() -> Path:
    return cache_root() / "converted"


def fetch_head(preset_name: str) -> Path:
    """The head file a preset's predictor publishes outside the hub, downloaded once and checked."""
    head = HEAD_FILES[preset_name]
    return download_verified(head.url, head.sha256, cache_root() / "downloads")


def fetch_converted(
    repo_id: str, config: ModelConfig, *, revision: str | None = None, expert_activation: str | None = None
) -> Path:
    """The beholder model folder converted from hub repository `repo_id` (a chat-layout checkpoint) with preset
    `config`: downloaded and converted the first time, reused after."""
    snapshot = download_snapshot(repo_id, revision=revision)
    commit = snapshot.name  # huggingface_hub's cache keeps each revision in snapshots/<commit>
    name = f"{repo_id.replace('/', '--')}--{commit}"
    if config.name in HEAD_FILES:
        name = f"{config.name}--{name}--head-{HEAD_FILES[config.name].sha256[:16]}"
    target = cache_dir() / f"format-{FORMAT_VERSION}" / name
    if (target / CONFIG_NAME).is_file():
        return target
    try:
        if config.name in HEAD_FILES:
            return convert_embedding_checkpoint(snapshot, fetch_head(config.name), target, preset=config,
                                                hub_id=repo_id)
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
    head: str | Path | None = None,
) -> Path:
    """Convert a checkpoint given as a local folder, a released model's preset name or a hub id into the new
    beholder model folder `dst`. A released model brings its preset unless `preset` names another. An image-tower
    preset (laion-aesthetic-v2, aesthetic-predictor-v2.5, ...) takes its head from `head` (a local copy of the
    pickled file), else downloads the one it pins."""
    folder = Path(src).expanduser()
    release = None if folder.is_dir() else find_release(str(src))
    if not folder.is_dir() and release is None and str(src).count("/") != 1:
        raise ModelNotFoundError(f"{src!r} is neither a folder, nor a released model (`beholder models`), nor a hub id")
    repo_id, released = release or (None if folder.is_dir() else str(src), None)
    chosen = preset or released
    name = chosen.name if isinstance(chosen, ModelConfig) else chosen
    source = folder if folder.is_dir() else download_snapshot(repo_id, revision=revision)
    if name in HEAD_FILES or head is not None:
        if name is None:
            raise ModelNotFoundError("a head file converts with an image-tower preset: name it with --preset")
        return convert_embedding_checkpoint(source, head or fetch_head(name), dst, preset=chosen, hub_id=repo_id)
    return convert_checkpoint(source, dst, preset=chosen, hub_id=repo_id, expert_activation=expert_activation)
