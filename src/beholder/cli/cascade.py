"""`beholder score --cascade CHEAP:RULE -m EXPENSIVE`: the cheap model on every input, the expensive one on the
survivors of RULE (beholder.cascade), into one table; on this machine, or with `--engine ray` on a Ray cluster.
Either model may be a `beholder serve` service on the local engine: CHEAP as its URL, the expensive one with
--server URL instead of -m."""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from beholder.cli.batch import report_complete
from beholder.cli.common import load_options, load_scorer
from beholder.cli.exits import failed_status
from beholder.cli.remote import refuse_model_options, remote_scorer
from beholder.errors import UsageError

if TYPE_CHECKING:
    from beholder.cascade import LocalStages, RayStages
    from beholder.scoring import Scorer

INTERRUPT_HINT = "finished stages and the rows so far are saved: run the same command again to resume"


def add_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("cascade (a cheap model first, the -m model on its survivors)")
    group.add_argument(
        "--cascade",
        metavar="CHEAP:RULE",
        help="score every input with CHEAP (a model, or a `beholder serve` URL), then only RULE's survivors with -m "
        "(or --server): top=P%% or top=N (best per --group-by group), min=X (cheap score at least X), or both, "
        "e.g. laion-aesthetic-v2:top=20%%",
    )
    group.add_argument("--group-by", metavar="COL", help="apply the cascade's top rule within groups of this column")


def run(args: argparse.Namespace) -> int:
    from beholder.cascade import CascadePaths, parse_cascade, run_cascade
    from beholder.io import InputPlan, TableTotals, read_scores

    args.interrupt_hint = INTERRUPT_HINT
    if not args.output:
        raise UsageError("--cascade writes a table: give -o OUT")
    cheap, rule = parse_cascade(args.cascade)
    expensive = args.model or args.server
    if args.engine == "ray" and (args.server or served(cheap)):
        raise UsageError("--engine ray runs both models on the cluster: not with --server or a served CHEAP model")
    if args.batch_size < 1 or args.decode_workers < 1:
        raise UsageError("--batch-size and --decode-workers must be at least 1")
    plan = InputPlan(args.inputs, path_column=args.path_column)
    if not args.overwrite and CascadePaths.of(args.output).folder.is_dir() and Path(args.output).exists():
        errors = read_scores(args.output, columns=["error"])["error"]
        return report_complete(args.output, TableTotals(len(errors), len(errors) - errors.null_count))
    cascade = partial(run_cascade, plan, args.output, cheap=cheap, expensive=expensive, rule=rule,
                      group_by=args.group_by, overwrite=args.overwrite)
    if args.engine == "ray":
        from beholder.cli.score_ray import ray_errors

        runner = _ray_stages(args)  # (checks that Ray is installed)
        with ray_errors(INTERRUPT_HINT), runner:
            summary = cascade(runner=runner)
    else:
        runner = _local_stages(args, cheap)
        summary = cascade(runner=runner)
    print(
        f"cascade {cheap} -> {expensive} ({rule}) on the {runner.engine} engine: {summary.rows} inputs, "
        f"{summary.survivors} reached stage 2 ({summary.rows - summary.survivors} spared the expensive model) in "
        f"{summary.elapsed:.1f} s\n{args.output}: {summary.rows} rows, {summary.failed} failed",
        file=sys.stderr,
    )
    return failed_status(summary.failed)


def served(model: str) -> bool:
    """A model named by a `beholder serve` URL."""
    return model.startswith(("http://", "https://"))


def _local_stages(args: argparse.Namespace, cheap: str) -> LocalStages:
    """Both stages on the local pipeline; a served model is scored by its service, in the stage's mode (stage 1
    one pass, stage 2 the model's default or --fast), and model options go to the models loaded here."""
    from beholder.cascade import LocalStages

    if served(cheap) and args.server:
        refuse_model_options(args)  # no model is loaded here

    def load(name: str) -> Scorer:
        if not served(name):
            return load_scorer(args, name)
        return remote_scorer(args, name, full=False if name == cheap or args.fast else None)

    return LocalStages(
        load=load,
        score_options={"batch_size": args.batch_size, "decode_workers": args.decode_workers,
                       "progress": not args.no_progress},
        full=False if args.fast else None,
        checkpoint_seconds=args.checkpoint_seconds,
    )


def _ray_stages(args: argparse.Namespace) -> RayStages:
    from beholder.cascade import RayStages
    from beholder.cli.score_ray import ray_options

    return RayStages(options=ray_options(args), load_options=load_options(args), batch_size=args.batch_size,
                     full=False if args.fast else None, progress=not args.no_progress)
