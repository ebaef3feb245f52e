"""What `score` and `annotate` share: INPUTs decoded and run through a model task into a resumable table (or
printed), with the same options, progress, summary and exit status."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

from beholder.cli.common import MODEL_HELP, add_model_options, load_scorer
from beholder.cli.exits import failed_status
from beholder.errors import UsageError

if TYPE_CHECKING:
    from beholder.client import RemoteScorer
    from beholder.io import TableTotals
    from beholder.pipeline import RunSummary, Task
    from beholder.scoring import Scorer

INTERRUPT_HINT = "the rows so far are saved: run the same command again to resume"


def add_batch_options(
    parser: argparse.ArgumentParser, verb: str, *, remote: Callable[[argparse.Namespace], RemoteScorer] | None = None
) -> argparse._ArgumentGroup:
    """INPUT..., -m (or, given `remote`, --server: the served model `remote(args)` connects to), -o, the model
    options and the input/output options; returns the model group."""
    from beholder.pipeline import default_decode_workers

    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image, folder, glob, manifest or .tar shard")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("-m", "--model", help=MODEL_HELP)
    if remote:
        source.add_argument("--server", metavar="URL", help=f"{verb} on a `beholder serve` service, not locally")
        parser.add_argument("--api-key-file", metavar="FILE", help="with --server: the key the server asks for")
        parser.set_defaults(connect=remote)
    parser.add_argument("-o", "--output", metavar="OUT", help="table to write: .jsonl, .csv or .parquet")
    model = parser.add_argument_group("model")
    add_model_options(model)
    io = parser.add_argument_group("input and output")
    io.add_argument(
        "--decode-workers",
        type=int,
        default=default_decode_workers(),
        metavar="N",
        help="threads decoding images while the model runs (default: %(default)s, from the CPU count)",
    )
    io.add_argument("--path-column", default="path", metavar="COL", help="manifest column with image paths")
    io.add_argument("--overwrite", action="store_true", help=f"{verb} everything again, replacing OUT")
    io.add_argument(
        "--checkpoint-seconds",
        type=float,
        default=30.0,
        metavar="S",
        help="save finished rows at least this often, bounding the work a kill loses (default: 30)",
    )
    io.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(interrupt_hint=INTERRUPT_HINT)
    return model


def run_batch(
    args: argparse.Namespace,
    task_for: Callable[[Scorer], Task],
    show: Callable[[list[dict[str, Any]], Scorer], str],
    verb: str,
) -> int:
    """Expand the INPUTs, load the model, run `task_for(scorer)` over them into OUT (or print the rows with
    `show`), say what was done (`verb`: "scored", "annotated") and return the exit status."""
    from beholder.io import AlreadyComplete, InputPlan, ResumableWriter, describe_skipped
    from beholder.pipeline import MemorySink, run_inputs

    if args.batch_size < 1 or args.decode_workers < 1:
        raise UsageError("--batch-size and --decode-workers must be at least 1")
    plan = InputPlan(args.inputs, path_column=args.path_column)
    writer = (
        ResumableWriter(args.output, overwrite=args.overwrite, chunk_seconds=args.checkpoint_seconds)
        if args.output
        else None
    )
    if writer is not None and writer.complete:
        return report_complete(writer.output, writer.totals())
    scorer = args.connect(args) if getattr(args, "server", None) else load_scorer(args)
    sink = writer if writer is not None else MemorySink()
    try:
        with writer if writer is not None else nullcontext():
            summary = run_inputs(
                scorer,
                plan.items(),
                sink,
                task_for(scorer),
                batch_size=args.batch_size,
                decode_workers=args.decode_workers,
                total=plan.count(),
                progress=not args.no_progress,
                provenance={"inputs": plan.inputs, "paths_relative_to": plan.base},
            )
    except AlreadyComplete:
        return report_complete(writer.output, writer.totals())
    skipped = describe_skipped(plan.skipped)
    if skipped:
        print(f"note: skipped {skipped}", file=sys.stderr)
    if writer is None:
        print(show(sink.rows, scorer))
    else:
        print(format_summary(summary, args.output, verb), file=sys.stderr)
    return failed_status(summary.failed)


def report_complete(output: object, totals: TableTotals) -> int:
    """A rerun on a finished OUT: say so, and exit as the run that finished it did."""
    print(
        f"{output} is complete ({totals.rows} rows, {totals.failed} failed); --overwrite does it again",
        file=sys.stderr,
    )
    return failed_status(totals.failed)


def format_summary(summary: RunSummary, output: str, verb: str) -> str:
    parts = [f"{verb} {summary.scored} image(s) in {summary.elapsed:.1f} s ({summary.images_per_second:.1f} img/s)"]
    if summary.resumed:
        parts.append(f"{summary.resumed} already done by an earlier run")
    if summary.duplicates:
        parts.append(f"{summary.duplicates} duplicate input(s) done once")
    status = (
        f"{summary.rows} rows, {summary.failed} failed (see the error column)"
        if summary.failed
        else f"{summary.rows} rows"
    )
    return "; ".join(parts) + f"\n{output}: {status}"
