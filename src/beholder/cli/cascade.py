"""`beholder score --cascade CHEAP:RULE -m EXPENSIVE`: the cheap model on every input, the expensive one on the
survivors of RULE (beholder.cascade), into one table."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from beholder.cli.batch import report_complete
from beholder.cli.common import load_scorer
from beholder.cli.exits import failed_status
from beholder.errors import UsageError

INTERRUPT_HINT = "finished stages and the rows so far are saved: run the same command again to resume"


def add_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("cascade (a cheap model first, the -m model on its survivors)")
    group.add_argument(
        "--cascade",
        metavar="CHEAP:RULE",
        help="score every input with CHEAP, then only RULE's survivors with -m: top=P%% or top=N (best per "
        "--group-by group), min=X (cheap score at least X), or both, e.g. laion-aesthetic-v2:top=20%%",
    )
    group.add_argument("--group-by", metavar="COL", help="apply the cascade's top rule within groups of this column")


def run(args: argparse.Namespace) -> int:
    from beholder.cascade import CascadePaths, LocalStages, parse_cascade, run_cascade
    from beholder.io import InputPlan, TableTotals, read_scores

    args.interrupt_hint = INTERRUPT_HINT
    if not args.output:
        raise UsageError("--cascade writes a table: give -o OUT")
    if not args.model or args.engine != "local":
        raise UsageError("--cascade runs both models locally: give the expensive one with -m (not --server or "
                         "--engine ray)")
    if args.batch_size < 1 or args.decode_workers < 1:
        raise UsageError("--batch-size and --decode-workers must be at least 1")
    cheap, rule = parse_cascade(args.cascade)
    plan = InputPlan(args.inputs, path_column=args.path_column)
    if not args.overwrite and CascadePaths.of(args.output).folder.is_dir() and Path(args.output).exists():
        errors = read_scores(args.output, columns=["error"])["error"]
        return report_complete(args.output, TableTotals(len(errors), len(errors) - errors.null_count))
    runner = LocalStages(
        load=lambda name: load_scorer(args, name),
        score_options={"batch_size": args.batch_size, "decode_workers": args.decode_workers,
                       "progress": not args.no_progress},
        full=False if args.fast else None,
        checkpoint_seconds=args.checkpoint_seconds,
    )
    summary = run_cascade(plan, args.output, cheap=cheap, expensive=args.model, rule=rule, group_by=args.group_by,
                          runner=runner, overwrite=args.overwrite)
    print(
        f"cascade {cheap} -> {args.model} ({rule}): {summary.rows} inputs, {summary.survivors} reached stage 2 "
        f"({summary.rows - summary.survivors} spared the expensive model) in {summary.elapsed:.1f} s\n"
        f"{args.output}: {summary.rows} rows, {summary.failed} failed",
        file=sys.stderr,
    )
    return failed_status(summary.failed)
