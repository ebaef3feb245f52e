"""`beholder data build`: labelled sources -> a dataset folder of official label and training rows."""

from __future__ import annotations

import argparse
import os

from beholder.cli.exits import EXIT_STATUS_HELP, failed_status

DESCRIPTION = """\
Build a training dataset from labelled sources with different score scales.

CONFIG is a YAML file (paths in it are relative to its folder):

  output: dataset          # the folder written
  seed: 0                  # seeds the split and the question paraphrases
  test_fraction: 0.1       # held out per source
  min_raters: 9            # raters sources: fewest ratings per dimension
  faces: {detector: haar}  # or package.module:factory for a RetinaFace-style detector
  sources:
    - {name: scut, kind: overall, labels: scut/labels.csv, score_column: score, single_face: true}
    - {name: studio, kind: raters, labels: studio/ratings.csv, scale: [1, 10]}
    - {name: hb58k, kind: official, labels: HB-58K/label.jsonl, images: HB-58K/images}

A label table (.csv, .jsonl, .parquet) names each image in its `image` or `path` column (image_column names
another), relative to the table's folder (or to the source's `images` folder). overall sources are min-max
normalised on their own after filtering; raters sources (one row per image and rater, a column per dimension
key) become per-dimension mean opinion scores. An image whose content appears again (in another source, or
under another name) is kept once, so it never lands in both train and test. Scores map to bad..excellent, and
each image becomes a question-answer row. Output: train_labels.jsonl, test_labels.jsonl (official label rows),
train.jsonl, test.jsonl (official training rows) and report.json. A rerun rewrites, never appends.
examples/ in the repository has a complete config that runs on images it generates."""


def _build(args: argparse.Namespace) -> int:
    from beholder.data import build_dataset, load_build_config

    overrides = list(args.set)
    if args.output:
        overrides.append(f"output={os.path.abspath(args.output)}")
    for name in ("seed", "test_fraction", "min_raters"):
        if getattr(args, name) is not None:
            overrides.append(f"{name}={getattr(args, name)}")
    config = load_build_config(args.config, overrides)
    reports = build_dataset(config, root=os.path.dirname(os.path.abspath(args.config)), progress=not args.no_progress)
    print(f"{'source':<16} {'kind':<8} {'read':>7} {'kept':>7} {'train':>7} {'test':>6}  dropped")
    for r in reports:
        dropped = ", ".join(f"{k}={v}" for k, v in sorted(r.dropped.items()) if v) or "-"
        print(f"{r.name:<16} {r.kind:<8} {r.read:>7} {r.kept:>7} {r.train:>7} {r.test:>6}  {dropped}")
    return failed_status(sum(r.dropped.get("missing_image", 0) + r.dropped.get("unreadable", 0) for r in reports))


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="build training datasets", description="Dataset tools.")
    commands = parser.add_subparsers(dest="data_command", metavar="COMMAND", required=True)
    build = commands.add_parser(
        "build", help="labelled sources -> training rows", description=DESCRIPTION,
        epilog=f"{EXIT_STATUS_HELP}\n  (failed inputs: images missing or unreadable; they are left out)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    build.add_argument("config", help="build config (YAML)")
    build.add_argument("-o", "--output", help="output folder (overrides the config's)")
    build.add_argument("--seed", type=int)
    build.add_argument("--test-fraction", type=float)
    build.add_argument("--min-raters", type=int)
    build.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override any config field, e.g. --set faces.min_score=0.9 or, for the first "
                       "source, --set sources.0.single_face=true (repeatable)")
    build.add_argument("--no-progress", action="store_true", help="no progress bars")
    build.set_defaults(func=_build, command_name="data build")
