"""`beholder evaluate`: measure models or score tables against a benchmark; several give one leaderboard."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

from beholder import jsonsafe
from beholder.cascade import parse_cascade
from beholder.cli.common import MODEL_HELP, add_model_options, load_scorer
from beholder.cli.exits import EXIT_STATUS_HELP, failed_status
from beholder.errors import BeholderError, UsageError
from beholder.files import file_slug
from beholder.evaluate import (
    LAYOUTS,
    Benchmark,
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
from beholder.evaluate.cascade import CASCADE_COLUMNS, evaluate_cascade
from beholder.evaluate.disagreements import DEFAULT_PER_CATEGORY
from beholder.evaluate.document import Table, category_bias_section, fmt, leaderboard_section
from beholder.evaluate.markdown import markdown_table
from beholder.evaluate.plots import require_matplotlib
from beholder.evaluate.report import FORMATS
from beholder.io import write_json_atomic

DESCRIPTION = """\
Measure aesthetic scores against a benchmark's ground truth.

--model scores every benchmark image (into OUTPUT/predictions-<model>.jsonl, resumable and reused when the
same model runs again, but for its failed images, which are scored again; --overwrite scores them all);
--predictions measures a score table made by `beholder score`. Give several of either for one leaderboard. Reports go to OUTPUT/report.json, report.md and report.html (self-contained,
with plots): SRCC, KRCC, PLCC raw and after a 4-parameter logistic fit, MSE/RMSE/MAE, 5-level accuracy and
macro P/R/F1 with bootstrap intervals, per-dimension MAE, per-category bias, HumanAesExpert-compatible
columns under names that say what they compute, and per category thumbnails of the images where the model and
the ground truth disagree most (also written as OUTPUT/disagreements-<model>.parquet for `beholder review`).

Scales: correlations use raw scores; errors, bias and levels use both sides mapped to [0, 1] by their
stated scales. The prediction scale is --pred-scale, else the model's native scale or the score table's
provenance; the ground-truth scale is --gt-scale, else the layout's. Each report states which it used."""

EPILOG = f"""\
{EXIT_STATUS_HELP}

examples:
  beholder evaluate --model ./humanaesexpert-1b --benchmark humanbeauty/test.jsonl -o reports/hb
  beholder evaluate --predictions a.parquet --predictions b.jsonl --benchmark eria1k.json -o reports/eria
  beholder evaluate --predictions scores.csv --pred-scale 0,100 --benchmark bench.csv --gt-scale 1,5
  beholder evaluate --model unipercept --score iqa --benchmark koniq.csv --gt-scale 1,5
  beholder evaluate --benchmark eria1k.json --cascade laion-aesthetic-v2:top=20% --model ernie-image-aes -o rep"""


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
        "--score",
        default="score",
        metavar="NAME",
        help="the score measured: score (the model's own), a named score such as iqa (column score_iqa), or any "
        "score column (default: score)",
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
    parser.add_argument(
        "--disagreements", type=int, default=DEFAULT_PER_CATEGORY, metavar="N",
        help="per category, the N images where model and ground truth disagree most: thumbnails in the HTML report "
        "and OUTPUT/disagreements-<model>.parquet for `beholder review` (%(default)s; 0 for none)",
    )  # fmt: skip
    scoring = parser.add_argument_group("scoring (with --model)")
    add_model_options(scoring)
    scoring.add_argument("--fast", action="store_true", help="single-pass scores even when the model has MetaVoter")
    scoring.add_argument("--overwrite", action="store_true", help="score every image again, even when reusable")
    cascade = parser.add_argument_group("a cascade (with one --model, the expensive one)")
    cascade.add_argument(
        "--cascade",
        metavar="CHEAP:RULE",
        help="also measure `beholder score --cascade CHEAP:RULE -m MODEL` on the benchmark: recall of the expensive "
        "model's top K, SRCC of the cascade's ranking, fraction of the expensive model's work saved",
    )
    cascade.add_argument("--group-by-category", action="store_true",
                         help="apply the cascade's top rule within each benchmark category")
    parser.set_defaults(func=run, interrupt_hint="the images scored so far are saved: run it again to resume")


def run(args: argparse.Namespace) -> int:
    if not args.model and not args.predictions:
        raise UsageError("give --model or --predictions (or several)")
    cascade = parse_cascade(args.cascade) if args.cascade else None
    if cascade and len(args.model) != 1:
        raise UsageError("--cascade measures against one --model, the expensive one")
    if args.disagreements < 0:
        raise UsageError(f"--disagreements must be at least 0, not {args.disagreements}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        try:
            benchmark, entries = _predictions(args, [cascade[0]] if cascade else [])
            evaluations = [_measure(args, benchmark, e) for e in entries]
            written = write_reports(evaluations, args.output, args.format)
            if cascade:
                cheap, expensive = entries[-2:]
                report = evaluate_cascade(benchmark, cheap, expensive, cascade[1],
                                          group_by_category=args.group_by_category)
                written["cascade"] = Path(args.output) / "cascade.json"
                write_json_atomic(written["cascade"], jsonsafe.nan_to_none(report))
        except BeholderError:
            raise
        except ValueError as exc:  # a benchmark or table that cannot be measured: the library says why
            raise BeholderError(str(exc)) from exc
        finally:
            for message in dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, UserWarning)):
                print(f"warning: {message}", file=sys.stderr)
    print(markdown_table(leaderboard_section(evaluations).table))
    bias = category_bias_section(evaluations)
    if bias:
        print(f"\n{bias.title}\n\n{markdown_table(bias.table)}")
    if cascade:
        print(f"\nCascade {report['cheap']} -> {report['expensive']}\n")
        print(markdown_table(Table(list(CASCADE_COLUMNS.values()), [[fmt(report[k]) for k in CASCADE_COLUMNS]])))
    for path in written.values():
        print(f"wrote {path}")
    return failed_status(sum(e.report["coverage"]["n_failed"] for e in evaluations))


def _predictions(args: argparse.Namespace, extra_models: list[str]) -> tuple[Benchmark, list[Predictions]]:
    """The benchmark, and the predictions to measure: the tables given, then each model's (extra models first)."""
    if "html" in args.format:
        require_matplotlib()
    benchmark = load_benchmark(args.benchmark, layout=args.layout, image_root=args.image_root, scale=args.gt_scale)
    entries: list[Predictions] = [read_predictions(p, scale=args.pred_scale, score=args.score) for p in args.predictions]
    for name in [*extra_models, *args.model]:
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
            score=args.score,
            overwrite=args.overwrite,
        )
        entries.append(predictions)
    return benchmark, entries


def _measure(args: argparse.Namespace, benchmark: Benchmark, e: Predictions) -> Evaluation:
    return evaluate(
        benchmark,
        e.results,
        name=e.name,
        pred_scale=e.scale,
        provenance=e.provenance,
        bootstrap=args.bootstrap,
        confidence=args.confidence,
        seed=args.seed,
        disagreements=args.disagreements,
    )


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
