"""`beholder convert`: a released checkpoint -> a beholder model folder.

SRC is a local copy of the checkpoint (for machines without network), a released model's preset name or its
hub id: a chat VLM in InternVL's chat layout, or for the image-tower predictors (laion-aesthetic-v1/-v2,
aesthetic-predictor-v2.5) the CLIP / SigLIP checkpoint, with the predictor's pickled head given by --head (read
with torch.load(weights_only=True): a pickle that would run code is refused) or downloaded and checked against
its pinned sha256. The result loads with `beholder.load(DST)` / `--model DST` on current transformers, without
the checkpoint's remote code. `beholder.load(hub id)` does the same by itself, once, into its cache.
"""

from __future__ import annotations

import argparse

from beholder.cli.exits import EXIT_STATUS_HELP
from beholder.errors import BeholderError

EPILOG = f"""\
{EXIT_STATUS_HELP}

examples:
  beholder convert KwaiVGI/HumanAesExpert-1B ./humanaesexpert-1b
  beholder convert ./downloads/ERNIE-Image-Aes ./ernie-image-aes --preset ernie-image-aes
  beholder convert ./HumanAesExpert-8B ./hae-8b --preset humanaesexpert-8b --expert-activation gelu
  beholder convert ./clip-vit-large-patch14 ./laion-v2 --preset laion-aesthetic-v2 \
      --head sac+logos+ava1-l14-linearMSE.pth"""


def _run(args: argparse.Namespace) -> int:
    from beholder.convert import ConversionError
    from beholder.hub import convert_source

    try:
        out = convert_source(args.src, args.dst, preset=args.preset, revision=args.revision,
                             expert_activation=args.expert_activation, head=args.head)
    except ConversionError as exc:  # the checkpoint does not fit: the message lists what
        raise BeholderError(str(exc)) from exc
    print(out)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert", help="convert a released checkpoint into a model folder", description=__doc__,
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("src", metavar="SRC", help="checkpoint folder, released model name or hub id")
    parser.add_argument("dst", metavar="DST", help="new model folder (must not exist, or be empty)")
    parser.add_argument("--preset", help="preset giving prompts, preprocessing and scale (see `beholder models`); "
                        "default: the released model's, or humanaesexpert for a checkpoint with its heads")
    parser.add_argument("--revision", help="hub revision (branch, tag or commit) when SRC is a hub id")
    parser.add_argument("--expert-activation", metavar="NAME",
                        help="activation inside the expert head's parent FFNs (gelu, relu, silu, tanh, sigmoid), "
                        "which no tensor records; needed when they have a hidden layer")
    parser.add_argument("--head", metavar="FILE",
                        help="the predictor's pickled head (.pth) for an image-tower preset; default: download it")
    parser.set_defaults(func=_run)
