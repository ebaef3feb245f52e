"""Options and loading shared by the subcommands that run a model."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from beholder.errors import BeholderError

if TYPE_CHECKING:  # the model stack is imported only by commands that load a model
    from beholder.scoring import Scorer


def add_model_options(group: argparse._ActionsContainer) -> None:
    """--device, --dtype, --max-tiles, --batch-size, --trust-remote-code (the model flag is the caller's)."""
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


def load_scorer(args: argparse.Namespace, name: str | None = None) -> Scorer:
    """beholder.load with the options above; a model that does not load is one clear error."""
    from safetensors import SafetensorError

    import beholder

    name = name or args.model
    try:
        return beholder.load(
            name,
            device=args.device,
            dtype=args.dtype,
            max_tiles=args.max_tiles,
            trust_remote_code=args.trust_remote_code,
        )
    except (OSError, ValueError, SafetensorError) as exc:  # not found, unreadable or corrupt files, bad options
        raise BeholderError(f"cannot load model {name}: {exc}") from exc
