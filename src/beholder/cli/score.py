"""`beholder score`: score images, folders, globs, manifests or WebDataset shards into a table."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from beholder.cli.batch import add_batch_options, run_batch
from beholder.cli.exits import EXIT_STATUS_HELP
from beholder.cli.remote import connect_scorer
from beholder.errors import UsageError
from beholder.io.keys import key_to_text, printable
from beholder.standard import DIMENSIONS, DISPLAY_NAMES, score_to_level

if TYPE_CHECKING:
    from beholder.pipeline import Task
    from beholder.scoring import Scorer

DESCRIPTION = """\
Score images with an aesthetic model.

INPUT is any mix of image files, folders (searched recursively, sorted; hidden files skipped), glob
patterns ('photos/**/*.jpg', quoted), manifests (.csv, .jsonl or .parquet with a path column; relative
paths are resolved against the manifest's folder and its other columns are carried into the output) and
WebDataset shards (.tar, .tar.gz: every image member is scored as SHARD/MEMBER).

With -o, results go to a .jsonl, .csv or .parquet table with the columns path, score (on the model's
scale), level, error, score_<name> for a model's named scores (UniPercept: score_iaa, score_iqa,
score_ista), dim_<key> for the 12 dimensions (full scoring), head_<name>, then carried columns.
OUT.provenance.json records the model, weights hash, preprocessing and beholder version (Parquet files
carry it in their metadata too). A run that is stopped, even killed, resumes when started again with the
same output: every input ends up in OUT exactly once. Without -o, results are printed.

Inputs that cannot be scored (missing, unreadable, corrupt, truncated, empty, not an image, too large)
become rows with an error and the run goes on.

With --cascade CHEAP:RULE, every input is scored by CHEAP and only RULE's survivors by -m (see the cascade
options below); OUT then has both scores and the stage each row reached."""

EPILOG = f"""\
{EXIT_STATUS_HELP}

examples:
  beholder score photo.jpg -m ./humanaesexpert-1b
  beholder score photos/ more/*.png -m ./humanaesexpert-1b -o scores.parquet
  beholder score manifest.csv --path-column image -m ./model -o scores.jsonl --fast
  beholder score shards/*.tar -m ./model -o scores.csv --batch-size 32 --device cuda
  beholder score manifest.csv --cascade laion-aesthetic-v2:top=20% --group-by prompt -m ernie-image-aes -o out.parquet"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "score",
        help="score images, folders, manifests or shards",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from beholder.cli import cascade, score_ray

    add_batch_options(p, "score", remote=connect_scorer)
    p.add_argument(
        "--fast",
        action="store_true",
        help="single-pass overall score only (default: MetaVoter + 12 dimensions when the model has them)",
    )
    score_ray.add_options(p)
    cascade.add_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.cascade:
        from beholder.cli import cascade

        return cascade.run(args)
    if args.engine == "ray":
        from beholder.cli import cascade, score_ray

        if args.server:
            raise UsageError("--engine ray runs the model on the cluster; --server scores on one service: pick one")
        return score_ray.run(args)
    from beholder.pipeline import scoring

    def task_for(scorer: Scorer) -> Task:
        if not args.fast and not scorer.has_full:
            print(f"note: {args.model or args.server} has no expert/MetaVoter heads: single-pass scores only",
                  file=sys.stderr)
        return scoring(scorer, full=False if args.fast else None, batch_size=args.batch_size)

    return run_batch(args, task_for, lambda rows, scorer: format_rows(rows, scorer.scale), "scored")


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
    lines += [f"  {name}  {value:.3f}" for name, value in row.items() if name.startswith("score_")]
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
