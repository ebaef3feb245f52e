"""A model name -> a local beholder model folder: a folder as is, a released model converted once from the hub,
or the hub id of a beholder model folder. Errors say what to do, down to the `beholder convert` command."""

from __future__ import annotations

from pathlib import Path

from beholder.config import CONFIG_NAME
from beholder.convert import is_chat_checkpoint
from beholder.hub.cache import fetch_converted
from beholder.hub.download import HubUnreachableError, did_you_mean, download_snapshot
from beholder.model.folder import ModelNotFoundError
from beholder.presets import HEAD_FILES, PRESETS, find_release


def resolve_folder(name: str | Path, *, revision: str | None = None, cache_dir: str | None = None) -> Path:
    """A local beholder model folder as is; a released model (preset name or hub id, see beholder.presets)
    downloaded and converted once into beholder's cache (beholder.hub.cache); otherwise a hub id of a beholder
    model folder, downloaded once through huggingface_hub's cache."""
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / CONFIG_NAME).is_file():
            raise ModelNotFoundError(_not_a_model_folder(path))
        return path
    release = find_release(str(name))
    if release is not None:
        repo_id, config = release
        try:
            return fetch_converted(repo_id, config, revision=revision)
        except HubUnreachableError as exc:
            command = convert_command(Path(repo_id.split("/")[-1]), config.name)
            head = f" and {HEAD_FILES[config.name].url}" if config.name in HEAD_FILES else ""
            raise HubUnreachableError(
                f"{exc} To use a copy downloaded elsewhere (e.g. `hf download {repo_id} --local-dir "
                f"{repo_id.split('/')[-1]}`{head}), convert it once: {command}"
            ) from exc
    if path.exists() or str(name).startswith((".", "/", "~")) or str(name).count("/") != 1:
        raise ModelNotFoundError(
            f"no model folder at {name!r}, and it is neither a released model (`beholder models`) nor a hub id of "
            f"the form 'owner/name'{did_you_mean(str(name))}"
        )
    return download_snapshot(str(name), revision=revision, cache_dir=cache_dir)


def convert_command(src: Path, preset: str | None) -> str:
    """The `beholder convert` command that turns checkpoint folder `src` into a model folder beside it."""
    command = f"beholder convert {src} {_converted(src)} --preset {preset or 'PRESET'}"
    if preset in HEAD_FILES:
        command += f" --head {HEAD_FILES[preset].url.rsplit('/', 1)[-1]}"
    if _needs_activation(preset):
        command += " --expert-activation NAME"
    return command


def _converted(src: Path) -> Path:
    return src.parent / f"{src.name}-beholder"


def _needs_activation(preset: str | None) -> bool:
    return preset is not None and PRESETS[preset].heads.expert is not None


def _not_a_model_folder(path: Path) -> str:
    message = f"{path} is not a beholder model folder (no {CONFIG_NAME})"
    if not is_chat_checkpoint(path):
        return message
    preset = _release_of(path)
    lines = [f"{message}. It is a checkpoint in InternVL's chat layout: convert it once with",
             f"  {convert_command(path, preset)}"]
    if preset is None:
        releases = ", ".join(name for name, config in PRESETS.items() if config.hub_id and name not in HEAD_FILES)
        lines.append(f"where PRESET is the model it is: one of {releases}, or a family (`beholder models`),")
    if _needs_activation(preset):
        lines.append("where NAME is the activation inside its Expert head's FFNs (gelu, relu, silu, tanh, sigmoid), "
                     "which no tensor records,")
    lines.append(f"then pass --model {_converted(path)}")
    return "\n".join(lines)


def _release_of(path: Path) -> str | None:
    """The released model a checkpoint folder is a copy of, by its repository when it is in huggingface_hub's
    cache (models--owner--name/snapshots/<commit>), else by its folder name (e.g. ERNIE-Image-Aes)."""
    if path.parent.name == "snapshots" and path.parent.parent.name.startswith("models--"):
        release = find_release(path.parent.parent.name.removeprefix("models--").replace("--", "/"))
        if release is not None:
            return release[1].name
    for name, config in PRESETS.items():
        if config.hub_id and path.name.lower() in (name, config.hub_id.split("/")[-1].lower()):
            return name
    return None
