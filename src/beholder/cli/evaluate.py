"""`beholder evaluate`: measure models or score tables against a benchmark; several give one leaderboard."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

from beholder.cli.common import MODEL_HELP, add_model_options, load_scorer
from beholder.cli.exits import EXIT_STATUS_HELP, failed_status
from beholder.errors import BeholderError, UsageError
from beholder.files import file_slug
from beholder.evaluate import (
    LAYOUTS,
    Evaluation,
    Predictions,
    Scale,
    evaluate,
    load_benchmark,
    parse_scale,
    read_predictions,
    score_benchmark,
    write_reports,
)
from beholder.evaluate.document import leaderboard_section
from beholder.evaluate.markdown import markdown_table
from beholder.evaluate.plots import require_matplotlib
from beholder.evaluate.report import FORMATS

DESCRIPTION = """\
Measure aesthetic scores against a benchmark's ground truth.

--model scores every benchmark image (into OUTPUT/predictions-<model>.jsonl, resumable and reused when the
same model runs again, but for its failed images, which are scored again; --overwrite scores them all);
--predictions measures a score table made by `beholder score`. Give several of either for one leaderboard. Reports go to OUTPUT/report.json, report.md and report.html (self-contained,
with plots): SRCC, KRCC, PLCC raw and after a 4-parameter logistic fit, MSE/RMSE/MAE, 5-level accuracy and
macro P/R/F1 with bootstrap intervals, per-dimension MAE, per-category bias, and HumanAesExpert-compatible
columns under names that say what they compute.

Scales: correlations use raw scores; errors, bias and levels use both sides mapped to [0, 1] by their
stated scales. The prediction scale is --pred-scale, else the model's native scale or the score table's
provenance; the ground-truth scale is --gt-scale, else the layout's. Each report states which it used."""

EPILOG = f"""\
{EXIT_STATUS_HELP}

examples:
  beholder evaluate --model ./humanaesexpert-1b --benchmark humanbeauty/test.jsonl -o reports/hb
  beholder evaluate --predictions a.parquet --predictions b.jsonl --benchmark eria1k.json -o reports/eria
  beholder evaluate --predictions scores.csv --pred-scale 0,100 --benchmark bench.csv --gt-scale 1,5"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="measure models or score tables against a benchmark",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--benchmark",
        required=True,
        metavar="FILE",
        help="labels: HumanBeauty .jsonl, ERIA-1K .json, or a .csv/.jsonl/.parquet table (path, score, ...)",
    )
    parser.add_argument("--layout", choices=("auto", *LAYOUTS), default="auto", help="benchmark layout (auto)")
    parser.add_argument("--image-root", metavar="DIR", help="folder image names are relative to (the label file's)")
    parser.add_argument(
        "--gt-scale",
        type=_scale("--gt-scale"),
        metavar="LO,HI",
        help="ground-truth scale (default by layout: humanbeauty 0,1; eria 1,10; table 0,1)",
    )
    what = parser.add_argument_group("what to measure (repeat either; both may be given)")
    what.add_argument("--model", action="append", default=[], metavar="M", help=MODEL_HELP)
    what.add_argument(
        "--predictions", action="append", default=[], metavar="P", help="score table from `beholder score`"
    )
    parser.add_argument(
        "--pred-scale",
        type=_scale("--pred-scale"),
        metavar="LO,HI",
        help="scale of every prediction (default: the model's native scale, or the score table's provenance)",
    )
    parser.add_argument("--output", "-o", default="evaluation", metavar="DIR", help="report folder (./evaluation)")
    parser.add_argument(
        "--format", type=_formats, default=FORMATS, help="report formats, comma-separated (json,md,html)"
    )
    parser.add_argument("--bootstrap", type=int, default=1000, metavar="N", help="bootstrap resamples, 0 for none")
    parser.add_argument("--confidence", type=float, default=0.95, help="interval confidence (0.95)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (0)")
    scoring = parser.add_argument_group("scoring (with --model)")
    add_model_options(scoring)
    scoring.add_argument("--fast", action="store_true", help="single-pass scores even when the model has MetaVoter")
    scoring.add_argument("--overwrite", action="store_true", help="score every image again, even when reusable")
    parser.set_defaults(func=run, interrupt_hint="the images scored so far are saved: run it again to resume")


def run(args: argparse.Namespace) -> int:
    if not args.model and not args.predictions:
        raise UsageError("give --model or --predictions (or several)")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        try:
            evaluations = _evaluate(args)
            written = write_reports(evaluations, args.output, args.format)
        except BeholderError:
            raise
        except ValueError as exc:  # a benchmark or table that cannot be measured: the library says why
            raise BeholderError(str(exc)) from exc
        finally:
            for message in dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, UserWarning)):
                print(f"warning: {message}", file=sys.stderr)
    print(markdown_table(leaderboard_section(evaluations).table))
    for path in written.values():
        print(f"wrote {path}")
    return failed_status(sum(e.report["coverage"]["n_failed"] for e in evaluations))


def _evaluate(args: argparse.Namespace) -> list[Evaluation]:
    if "html" in args.format:
        require_matplotlib()
    benchmark = load_benchmark(args.benchmark, layout=args.layout, image_root=args.image_root, scale=args.gt_scale)
    entries: list[Predictions] = [read_predictions(p, scale=args.pred_scale) for p in args.predictions]
    for name in args.model:
        scorer = load_scorer(args, name)
        table = Path(args.output) / f"predictions-{file_slug(name)}.jsonl"
        predictions = score_benchmark(
            scorer,
            benchmark,
            table,
            name=name,
            scale=args.pred_scale,
            full=False if args.fast else None,
            batch_size=args.batch_size,
            progress=True,
            overwrite=args.overwrite,
        )
        entries.append(predictions)
    return [
        evaluate(
            benchmark,
            e.results,
            name=e.name,
            pred_scale=e.scale,
            provenance=e.provenance,
            bootstrap=args.bootstrap,
            confidence=args.confidence,
            seed=args.seed,
        )
        for e in entries
    ]


def _scale(flag: str) -> Callable[[str], Scale]:
    def parse(text: str) -> Scale:
        try:
            return parse_scale(text, flag)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def _formats(text: str) -> tuple[str, ...]:
    formats = tuple(f.strip() for f in text.split(",") if f.strip())
    if not formats or set(formats) - set(FORMATS):
        raise argparse.ArgumentTypeError(f"expected some of {','.join(FORMATS)}, got {text!r}")
    return formats
