"""`beholder score --cascade CHEAP:RULE -m EXPENSIVE`: the cheap model on every input, the expensive one on the
survivors of RULE (beholder.cascade), into one table."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from beholder.cli.common import EXIT_FATAL, exit_status, fatal, load_scorer


def add_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("cascade (cheap model first, the -m model on the survivors)")
    group.add_argument(
        "--cascade",
        metavar="CHEAP:RULE",
        help="score every input with CHEAP, then only RULE's survivors with -m: top=P%% or top=N (best per "
        "--group-by group), min=X (cheap score at least X), or both, e.g. laion-aesthetic-v2:top=20%%",
    )
    group.add_argument("--group-by", metavar="COL", help="apply the cascade's top rule within groups of this column")


def run(args: argparse.Namespace) -> int:
    from beholder.cascade import CascadePaths, LocalStages, parse_cascade, run_cascade
    from beholder.io import InputError, InputPlan, OutputConflict, read_scores
    from beholder.pipeline import ModelFailure

    if not args.output:
        print("beholder score: error: --cascade writes a table: give -o OUT", file=sys.stderr)
        return 2
    try:
        cheap, rule = parse_cascade(args.cascade)
    except ValueError as exc:
        print(f"beholder score: error: {exc}", file=sys.stderr)
        return 2
    if args.batch_size < 1 or args.decode_workers < 1:
        return fatal("--batch-size and --decode-workers must be at least 1")
    try:
        plan = InputPlan(args.inputs, path_column=args.path_column)
    except InputError as exc:
        return fatal(str(exc))
    if not args.overwrite and CascadePaths.of(args.output).folder.is_dir() and Path(args.output).exists():
        errors = read_scores(args.output, columns=["error"])["error"]
        print(f"{args.output} is complete; --overwrite runs the cascade again", file=sys.stderr)
        return exit_status(len(errors) - errors.null_count)
    runner = LocalStages(
        load=lambda name: load_scorer(args, name),
        score_options={"batch_size": args.batch_size, "decode_workers": args.decode_workers,
                       "progress": not args.no_progress},
        full=False if args.fast else None,
        checkpoint_seconds=args.checkpoint_seconds,
    )
    try:
        summary = run_cascade(plan, args.output, cheap=cheap, expensive=args.model, rule=rule, group_by=args.group_by,
                              runner=runner, overwrite=args.overwrite)
    except (OutputConflict, ModelFailure, ValueError, OSError) as exc:
        return fatal(str(exc))
    except KeyboardInterrupt:
        print("\ninterrupted: run the same command again to resume", file=sys.stderr)
        return EXIT_FATAL
    print(
        f"cascade {cheap} -> {args.model} ({rule}): {summary.rows} inputs, {summary.survivors} reached stage 2 "
        f"({summary.rows - summary.survivors} spared the expensive model) in {summary.elapsed:.1f} s\n"
        f"{args.output}: {summary.rows} rows, {summary.failed} failed",
        file=sys.stderr,
    )
    return exit_status(summary.failed)

