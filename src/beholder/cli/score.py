"""`beholder score`: score images, folders, globs, manifests or WebDataset shards into a table."""

from __future__ import annotations

import argparse
import sys
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

from beholder.cli.common import (
    EXIT_FATAL,
    MAX_FAILED_STATUS,
    MODEL_HELP,
    add_model_options,
    exit_status,
    format_summary,
    load_scorer,
)
from beholder.standard import DIMENSIONS, DISPLAY_NAMES, score_to_level

if TYPE_CHECKING:
    from beholder.io import InputPlan, ResumableWriter
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
exit status:
  0        every input was scored
  1-{MAX_FAILED_STATUS}    that many inputs failed (capped at {MAX_FAILED_STATUS}); OUT has a row with each error
  {EXIT_FATAL}      the run could not start or finish: model not found, unreadable manifest, OUT held
           by another run, or interrupted (rows so far are kept: the same command resumes)
  2        invalid arguments

examples:
  beholder score photo.jpg -m ./humanaesexpert-1b
  beholder score photos/ more/*.png -m ./humanaesexpert-1b -o scores.parquet
  beholder score manifest.csv --path-column image -m ./model -o scores.jsonl --fast
  beholder score shards/*.tar -m ./model -o scores.csv --batch-size 32 --device cuda
  beholder score manifest.parquet -m ./model -o scores.parquet --engine ray --address auto"""


def register(subparsers: argparse._SubParsersAction) -> None:
    from beholder.cli import score_ray
    from beholder.pipeline import default_decode_workers

    p = subparsers.add_parser(
        "score",
        help="score images, folders, manifests or shards",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image, folder, glob, manifest or .tar shard")
    p.add_argument("-m", "--model", required=True, help=MODEL_HELP)
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
    score_ray.add_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from beholder.io import InputError, InputPlan, ResumableWriter

    if args.engine == "ray":
        from beholder.cli import score_ray

        return score_ray.run(args)
    if args.batch_size < 1 or args.decode_workers < 1:
        return _fatal("--batch-size and --decode-workers must be at least 1")
    try:
        plan = InputPlan(args.inputs, path_column=args.path_column)
        writer = (
            ResumableWriter(args.output, overwrite=args.overwrite, chunk_seconds=args.checkpoint_seconds)
            if args.output
            else None
        )
    except (InputError, ValueError) as exc:
        return _fatal(str(exc))
    if writer is not None and writer.complete:
        totals = writer.totals()
        print(
            f"{args.output} is complete ({totals.rows} rows, {totals.failed} failed); "
            "--overwrite scores everything again",
            file=sys.stderr,
        )
        return exit_status(totals.failed)
    try:
        scorer = load_scorer(args)
    except (OSError, ValueError) as exc:  # model not found, unreadable config, option the model cannot take
        return _fatal(f"cannot load model {args.model}: {exc}")
    if not args.fast and not scorer.has_full:
        print(f"note: {args.model} has no expert/MetaVoter heads: single-pass scores only", file=sys.stderr)
    return _score(args, plan, scorer, writer)


def _score(args: argparse.Namespace, plan: InputPlan, scorer: Scorer, writer: ResumableWriter | None) -> int:
    from beholder.io import OutputConflict
    from beholder.pipeline import MemorySink, ModelFailure, score_inputs

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
                provenance={"inputs": plan.inputs},
            )
    except (OutputConflict, ModelFailure) as exc:
        return _fatal(str(exc))
    except KeyboardInterrupt:
        print("\ninterrupted: run the same command again to resume", file=sys.stderr)
        return EXIT_FATAL
    if writer is None:
        print(format_rows(sink.rows, scorer.scale))
    else:
        print(format_summary(summary, args.output), file=sys.stderr)
    return exit_status(summary.failed)


def _fatal(message: str) -> int:
    print(f"beholder score: error: {message}", file=sys.stderr)
    return EXIT_FATAL


def format_rows(rows: list[dict[str, Any]], scale: tuple[float, float]) -> str:
    """One image: a readable card with its dimensions; several: one line each."""
    if len(rows) == 1:
        return format_card(rows[0], scale)
    width = max((len(str(r["path"])) for r in rows), default=4)
    lines = [f"{'path':<{width}}  {'score':>7}  level"]
    for r in rows:
        tail = f"error: {r['error']}" if r["error"] else f"{r['score']:>7.3f}  {r['level']}"
        lines.append(f"{r['path']:<{width}}  {tail}")
    return "\n".join(lines)


def format_card(row: dict[str, Any], scale: tuple[float, float]) -> str:
    if row["error"]:
        return f"{row['path']}\n  error: {row['error']}"
    lo, hi = scale
    lines = [row["path"], f"  score  {row['score']:.3f}  ({row['level']}; scale {lo:g} to {hi:g})"]
    dims = [k for k in DIMENSIONS if f"dim_{k}" in row]
    if dims:
        width = max(len(DISPLAY_NAMES[k]) for k in dims)
        lines.append("")
        lines.append(f"  {'dimension':<{width}}   score  level")
        for key in dims:
            value = row[f"dim_{key}"]
            level = score_to_level(value)
            lines.append(f"  {DISPLAY_NAMES[key]:<{width}}  {value:>6.3f}  {level}")
    return "\n".join(lines)
