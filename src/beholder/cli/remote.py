"""`beholder score --server URL` and `beholder annotate --server URL`: the model of a `beholder serve` service as
the scorer of the local pipeline."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from beholder.errors import UsageError, require

if TYPE_CHECKING:
    from beholder.client import RemoteScorer


def connect_scorer(args: argparse.Namespace) -> RemoteScorer:
    """The served model behind the Scorer interface the pipeline uses. Model options are the server's: setting
    one here is an error, not silently ignored."""
    refuse_model_options(args)
    return remote_scorer(args, args.server, full=False if args.fast else None)


def connect_annotator(args: argparse.Namespace) -> RemoteScorer:
    """The served model, annotating (greedily: the server's /v1/annotate has no sampling)."""
    refuse_model_options(args)
    if args.sample:
        raise UsageError("--sample: a server annotates greedily; sample with a local model (-m)")
    return remote_scorer(args, args.server, full=None, annotate_tokens=args.max_new_tokens or 160)


def refuse_model_options(args: argparse.Namespace) -> None:
    """Model options set on the command line when no model is loaded here: the server's settings, an error."""
    local = {"--device": args.device != "auto", "--dtype": args.dtype != "auto", "--max-tiles": args.max_tiles,
             "--trust-remote-code": args.trust_remote_code, "--allow-pickle": args.allow_pickle,
             "--draft-decode": args.draft_decode, "--exif-transpose": args.exif_transpose, "--alpha": args.alpha}
    if any(local.values()):
        raise UsageError(f"{', '.join(k for k, v in local.items() if v)}: the server's settings, not the client's")


def remote_scorer(
    args: argparse.Namespace, url: str, *, full: bool | None, annotate_tokens: int | None = None
) -> RemoteScorer:
    """The model served at `url` (with --api-key-file's key), scoring in one mode (`full`) or annotating (with
    `annotate_tokens`), as RemoteScorer; a model that cannot do that is a usage error."""
    require("httpx", "serve", "--server")
    from beholder.client import Client, RemoteScorer

    api_key = Path(args.api_key_file).read_text(encoding="utf-8").strip() if args.api_key_file else None
    try:
        return RemoteScorer(Client(url, api_key=api_key), full=full, annotate_tokens=annotate_tokens)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
