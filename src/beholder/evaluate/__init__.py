"""Evaluation: benchmark readers, scale handling, reports (JSON, Markdown, HTML with plots) and leaderboards.

    bench = load_benchmark("eria1k.json")                      # layout and scale from the file
    preds = read_predictions("scores.parquet")                 # or score_benchmark(beholder.load(...), bench)
    ev = evaluate(bench, preds.results, name=preds.name, pred_scale=preds.scale, provenance=preds.provenance)
    write_reports([ev], "reports/")                            # report.json, report.md, report.html

The metrics themselves live in `beholder.metrics`.
"""

from beholder.evaluate.benchmarks import LAYOUTS, Benchmark, BenchmarkItem, load_benchmark
from beholder.evaluate.cascade import evaluate_cascade
from beholder.evaluate.predictions import Predictions, read_predictions, score_benchmark
from beholder.evaluate.report import Evaluation, evaluate, leaderboard, to_json
from beholder.evaluate.write import write_reports
from beholder.evaluate.scales import Scale, parse_scale

__all__ = [
    "LAYOUTS",
    "Benchmark",
    "BenchmarkItem",
    "Evaluation",
    "Predictions",
    "Scale",
    "evaluate",
    "evaluate_cascade",
    "leaderboard",
    "load_benchmark",
    "parse_scale",
    "read_predictions",
    "score_benchmark",
    "to_json",
    "write_reports",
]
