"""`beholder train`: two-stage training (LoRA + heads, then the MetaVoter) and export to a model folder."""

from __future__ import annotations

import argparse
import os

from beholder.cli.exits import EXIT_STATUS_HELP
from beholder.errors import require

DESCRIPTION = """\
Train an aesthetic model in two stages and export it as a beholder model folder.

Stage 1 trains LoRA adapters on the language model (optionally the projector and vision tower) and the
regression and Expert heads: loss CE + lambda * MSE_reg on overall-only rows, CE + mu * MSE_exp on 12-dimension
rows, in mixed batches. Stage 2 freezes everything and trains the MetaVoter with L1 on the heads' outputs.

CONFIG is a YAML file of TrainConfig fields (paths relative to its folder); any field can be set or
overridden with --set, e.g. --set stage1.lr=2e-4 --set heads=[regression,lm]. Rerunning with the same
output resumes from the newest checkpoint. For several processes (DDP: NCCL on GPUs, gloo on CPUs):
  torchrun --nproc_per_node 2 -m beholder train CONFIG
  accelerate launch --multi_gpu --num_processes 2 -m beholder train CONFIG   (also on a CPU-only machine)"""

EPILOG = f"""\
{EXIT_STATUS_HELP}

ablation rows (--set heads=[...]):
  [regression]                         regression head only (the paper's baseline)
  [regression, lm]                     + LM head (cross-entropy on the level answers)
  [regression, lm, expert]             + Expert head (12-dimension rows supervise it)
  [regression, lm, expert, metavoter]  + MetaVoter (stage 2): the full model (default)"""


def _run(args: argparse.Namespace) -> int:
    from beholder import typedconfig, train

    overrides = list(args.set)
    for flag, field in (("model", "model"), ("data", "train"), ("output", "output")):
        value = getattr(args, flag)
        if value is not None:
            overrides.append(f"{field}={os.path.abspath(value)}")
    config = train.load_train_config(args.config, overrides)
    if args.print_config:
        yaml = require("yaml", "train", "printing the config")
        print(yaml.safe_dump(typedconfig.to_dict(config), sort_keys=False), end="")
        return 0
    folder = train.train(config)  # the model stack loads here, once the config is known to be valid
    if os.environ.get("RANK", "0") == "0":  # one line per run, not per process
        print(f"model written to {folder}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train", help="two-stage training and export", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", nargs="?", help="training config (YAML); optional when --set gives every field")
    parser.add_argument("-m", "--model", help="model folder to start from (overrides the config's)")
    parser.add_argument("-d", "--data", help="training rows, official jsonl (overrides the config's train)")
    parser.add_argument("-o", "--output", help="run folder (overrides the config's)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="set any config field, e.g. --set stage1.epochs=2 (repeatable)")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.set_defaults(func=_run, interrupt_hint="run the same command again to resume from the newest checkpoint")
