"""Options and loading shared by the subcommands that run a model."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from beholder.errors import BeholderError
from beholder.presets import PRESETS

if TYPE_CHECKING:  # the model stack is imported only by commands that load a model
    from beholder.scoring import Scorer

MODEL_HELP = (
    "model folder, released model ("
    + ", ".join(name for name, config in PRESETS.items() if config.hub_id)
    + "; see `beholder models`) or hub id (owner/name)"
)


def add_model_options(group: argparse._ActionsContainer) -> None:
    """--device, --dtype, --max-tiles, --batch-size, --trust-remote-code, --allow-pickle and the decoding opt-ins
    --draft-decode, --exif-transpose, --alpha (the model flag is the caller's)."""
    group.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... or auto: cuda when available (auto)")
    group.add_argument(
        "--dtype",
        choices=("auto", "float32", "bfloat16", "float16"),
        default="auto",
        help="weights dtype; auto: bfloat16 on CUDA, float32 on CPU (auto)",
    )
    group.add_argument("--max-tiles", type=int, metavar="N", help="most image tiles per image (tiled models)")
    group.add_argument("--batch-size", type=int, default=8, metavar="N", help="images per forward pass (8)")
    group.add_argument(
        "--trust-remote-code", action="store_true", help="allow a checkpoint's own Python code to run (off)"
    )
    group.add_argument(
        "--no-fuse",
        dest="fused",
        action="store_false",
        help="run transformers' own layers instead of beholder's fused forward (same maths, slower)",
    )
    group.add_argument(
        "--allow-pickle",
        action="store_true",
        help="load weights from pickle files (pytorch_model.bin) when a folder has no safetensors; a pickle can run "
        "code (off)",
    )
    # Departures from the released models' reference decoding (Image.open(p).convert("RGB")): off unless asked.
    group.add_argument(
        "--draft-decode",
        action="store_true",
        help="decode JPEGs at a reduced DCT scale: faster on large photos, but scores move (not reference-exact)",
    )
    group.add_argument(
        "--exif-transpose",
        action="store_true",
        help="turn images upright per their EXIF orientation (not reference-exact)",
    )
    group.add_argument(
        "--alpha",
        choices=("drop", "white"),
        help="transparency: drop it, keeping the colour under it (the references' way), or composite on white",
    )


def load_scorer(args: argparse.Namespace, name: str | None = None) -> Scorer:
    """beholder.load with the options above; a model that does not load is one clear error."""
    from safetensors import SafetensorError

    import beholder

    name = name or args.model
    try:
        return beholder.load(name, **load_options(args))
    except (OSError, ValueError, SafetensorError) as exc:  # not found, unreadable or corrupt files, bad options
        raise BeholderError(f"cannot load model {name}: {exc}") from exc


def load_options(args: argparse.Namespace) -> dict[str, object]:
    """beholder.load's keyword arguments from the options above (the model name aside)."""
    return {
        "device": args.device,
        "dtype": args.dtype,
        "max_tiles": args.max_tiles,
        "decode": decode_options(args),
        "trust_remote_code": args.trust_remote_code,
        "allow_pickle": args.allow_pickle,
        "fused": args.fused,
    }


def decode_options(args: argparse.Namespace) -> dict[str, object]:
    """The decoding departures asked for on the command line, as DecodeConfig fields."""
    asked = {"draft": args.draft_decode, "exif_transpose": args.exif_transpose, "alpha": args.alpha}
    return {key: value for key, value in asked.items() if value not in (None, False)}
