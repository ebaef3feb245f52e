"""`beholder score`: score images, folders, globs, manifests or WebDataset shards into a table."""

from __future__ import annotations

import argparse
import sys
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

from beholder.cli.common import add_model_options, load_scorer
from beholder.cli.exits import EXIT_STATUS_HELP, failed_status
from beholder.errors import UsageError
from beholder.io.keys import key_to_text, printable
from beholder.standard import DIMENSIONS, DISPLAY_NAMES, score_to_level

if TYPE_CHECKING:
    from beholder.io import InputPlan, ResumableWriter
    from beholder.pipeline import RunSummary
    from beholder.scoring import Scorer

DESCRIPTION = """\
Score images with an aesthetic model.

INPUT is any mix of image files, folders (searched recursively, sorted; hidden files skipped), glob
patterns ('photos/**/*.jpg', quoted), manifests (.csv, .jsonl or .parquet with a path column; relative
paths are resolved against the manifest's folder and its other columns are carried into the output) and
WebDataset shards (.tar, .tar.gz: every image member is scored as SHARD/MEMBER).

With -o, results go to a .jsonl, .csv or .parquet table with the columns path, score (on the model's
scale), level, error, dim_<key> for the 12 dimensions (full scoring), head_<name>, then carried columns.
OUT.provenance.json records the model, weights hash, preprocessing and beholder version (Parquet files
carry it in their metadata too). A run that is stopped, even killed, resumes when started again with the
same output: every input ends up in OUT exactly once. Without -o, results are printed.

Inputs that cannot be scored (missing, unreadable, corrupt, truncated, empty, not an image, too large)
become rows with an error and the run goes on."""

EPILOG = f"""\
{EXIT_STATUS_HELP}

examples:
  beholder score photo.jpg -m ./humanaesexpert-1b
  beholder score photos/ more/*.png -m ./humanaesexpert-1b -o scores.parquet
  beholder score manifest.csv --path-column image -m ./model -o scores.jsonl --fast
  beholder score shards/*.tar -m ./model -o scores.csv --batch-size 32 --device cuda"""


def register(subparsers: argparse._SubParsersAction) -> None:
    from beholder.pipeline import default_decode_workers

    p = subparsers.add_parser(
        "score",
        help="score images, folders, manifests or shards",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image, folder, glob, manifest or .tar shard")
    p.add_argument("-m", "--model", required=True, help="model folder or hub id (owner/name)")
    p.add_argument("-o", "--output", metavar="OUT", help="table to write: .jsonl, .csv or .parquet")
    p.add_argument(
        "--fast",
        action="store_true",
        help="single-pass overall score only (default: MetaVoter + 12 dimensions when the model has them)",
    )
    model = p.add_argument_group("model")
    add_model_options(model)
    io = p.add_argument_group("input and output")
    io.add_argument(
        "--decode-workers",
        type=int,
        default=default_decode_workers(),
        metavar="N",
        help="threads decoding images while the model runs (default: %(default)s, from the CPU count)",
    )
    io.add_argument("--path-column", default="path", metavar="COL", help="manifest column with image paths")
    io.add_argument("--overwrite", action="store_true", help="score everything again, replacing OUT")
    io.add_argument(
        "--checkpoint-seconds",
        type=float,
        default=30.0,
        metavar="S",
        help="save finished rows at least this often, bounding the work a kill loses (default: 30)",
    )
    io.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run, interrupt_hint="the rows so far are saved: run the same command again to resume")


def run(args: argparse.Namespace) -> int:
    from beholder.io import InputPlan, ResumableWriter

    if args.batch_size < 1 or args.decode_workers < 1:
        raise UsageError("--batch-size and --decode-workers must be at least 1")
    plan = InputPlan(args.inputs, path_column=args.path_column)
    writer = (
        ResumableWriter(args.output, overwrite=args.overwrite, chunk_seconds=args.checkpoint_seconds)
        if args.output
        else None
    )
    if writer is not None and writer.complete:
        return report_complete(writer)
    scorer = load_scorer(args)
    if not args.fast and not scorer.has_full:
        print(f"note: {args.model} has no expert/MetaVoter heads: single-pass scores only", file=sys.stderr)
    return _score(args, plan, scorer, writer)


def report_complete(writer: ResumableWriter) -> int:
    """A rerun on a finished OUT: say so, and exit as the run that finished it did."""
    totals = writer.totals()
    print(
        f"{writer.output} is complete ({totals.rows} rows, {totals.failed} failed); --overwrite does it again",
        file=sys.stderr,
    )
    return failed_status(totals.failed)


def _score(args: argparse.Namespace, plan: InputPlan, scorer: Scorer, writer: ResumableWriter | None) -> int:
    from beholder.io import AlreadyComplete, describe_skipped
    from beholder.pipeline import MemorySink, score_inputs

    sink = writer if writer is not None else MemorySink()
    try:
        with writer if writer is not None else nullcontext():
            summary = score_inputs(
                scorer,
                plan.items(),
                sink,
                full=False if args.fast else None,
                batch_size=args.batch_size,
                decode_workers=args.decode_workers,
                total=plan.count(),
                progress=not args.no_progress,
                provenance={"inputs": plan.inputs, "paths_relative_to": plan.base},
            )
    except AlreadyComplete:
        return report_complete(writer)
    skipped = describe_skipped(plan.skipped)
    if skipped:
        print(f"note: skipped {skipped}", file=sys.stderr)
    if writer is None:
        print(format_rows(sink.rows, scorer.scale))
    else:
        print(format_summary(summary, args.output), file=sys.stderr)
    return failed_status(summary.failed)


def format_summary(summary: RunSummary, output: str) -> str:
    parts = [f"scored {summary.scored} image(s) in {summary.elapsed:.1f} s ({summary.images_per_second:.1f} img/s)"]
    if summary.resumed:
        parts.append(f"{summary.resumed} already done by an earlier run")
    if summary.duplicates:
        parts.append(f"{summary.duplicates} duplicate input(s) scored once")
    status = (
        f"{summary.rows} rows, {summary.failed} failed (see the error column)"
        if summary.failed
        else f"{summary.rows} rows"
    )
    return "; ".join(parts) + f"\n{output}: {status}"


def format_rows(rows: list[dict[str, Any]], scale: tuple[float, float]) -> str:
    """One image: a readable card with its dimensions; several: one line each."""
    if len(rows) == 1:
        return format_card(rows[0], scale)
    paths = [key_to_text(r["path"]) for r in rows]
    width = max((len(p) for p in paths), default=4)
    lines = [f"{'path':<{width}}  {'score':>7}  level"]
    for path, r in zip(paths, rows):
        tail = f"error: {printable(r['error'])}" if r["error"] else f"{r['score']:>7.3f}  {r['level']}"
        lines.append(f"{path:<{width}}  {tail}")
    return "\n".join(lines)


def format_card(row: dict[str, Any], scale: tuple[float, float]) -> str:
    path = key_to_text(row["path"])
    if row["error"]:
        return f"{path}\n  error: {printable(row['error'])}"
    lo, hi = scale
    lines = [path, f"  score  {row['score']:.3f}  ({row['level']}; scale {lo:g} to {hi:g})"]
    dims = [k for k in DIMENSIONS if f"dim_{k}" in row]
    if dims:
        width = max(len(DISPLAY_NAMES[k]) for k in dims)
        lines.append("")
        lines.append(f"  {'dimension':<{width}}   score  level")
        for key in dims:
            value = row[f"dim_{key}"]
            level = score_to_level(min(max(value, 0.0), 1.0))
            lines.append(f"  {DISPLAY_NAMES[key]:<{width}}  {value:>6.3f}  {level}")
    return "\n".join(lines)
