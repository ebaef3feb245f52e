"""A model's predictions for evaluation, with the scale they are on and where that scale came from.

Predictions come from a score table written by `beholder score` (read with `beholder.io`, whose provenance
states the model's native scale) or straight from a Scorer. The scale is chosen in this order, and the
report says which: an explicit scale (--pred-scale), the table's provenance or the scorer's preset, and
last the 0–1 default (flagged as unstated, since a wrong guess corrupts MAE, bias and levels).
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from beholder.errors import UsageError
from beholder.evaluate.scales import UNIT, Scale
from beholder.results import ScoreResult, score_column

if TYPE_CHECKING:
    from beholder.evaluate.benchmarks import Benchmark
    from beholder.scoring import Scorer


@dataclass(frozen=True)
class Predictions:
    name: str  # shown in the leaderboard
    results: list[ScoreResult]
    scale: Scale
    provenance: dict[str, Any]


def read_predictions(
    path: str | os.PathLike[str], *, scale: Scale | None = None, name: str | None = None, score: str = "score"
) -> Predictions:
    """Read a .jsonl/.csv/.parquet score table and its provenance.

    The name defaults to the file stem (unique within a folder, and chosen by whoever named the file; the model
    that made it is in the provenance), with ":<score>" when another score than `score` is measured; the scale
    defaults to the provenance's scale. score: the score measured, "score" or a named score ("iqa" reads the
    column score_iqa) or another column.
    """
    from beholder.io import read_provenance, read_table
    from beholder.io.tables import is_score_column

    provenance = read_provenance(path) or {}
    table = read_table(path)
    column = score_column(score)
    if column not in table.column_names:
        known = [c for c in table.column_names if is_score_column(c)]
        raise UsageError(f"{path} has no column {column!r} to measure (score columns: {', '.join(known) or 'none'})")
    results = [ScoreResult.from_row({**row, "score": row[column]}) for row in table.to_pylist()]
    if name is None and column != "score":
        name = f"{Path(path).stem}:{score}"
    if scale is None and provenance.get("scale"):
        scale = Scale(*provenance["scale"], source=f"provenance of {Path(path).name}")
    return Predictions(name or Path(path).stem, results, scale or _unstated(), provenance)


def score_benchmark(
    scorer: Scorer,
    benchmark: Benchmark,
    output: str | os.PathLike[str],
    *,
    name: str | None = None,
    scale: Scale | None = None,
    full: bool | None = None,
    batch_size: int = 8,
    progress: bool = False,
    score: str = "score",
    overwrite: bool = False,
) -> Predictions:
    """Score every benchmark image into the score table `output`, then read it back as predictions.

    The table is written by the resumable batch pipeline, so an interrupted evaluation resumes where it
    stopped, and a finished table made by the same model and settings is reused (re-running only re-measures),
    except for its failed images, which are scored again (a wrong image root fixed, a file restored).
    `overwrite` scores everything again. `full` defaults to the model's own default (MetaVoter and 12
    dimensions when it has them). When images fail, a warning names one and the image root.
    `score` names the score measured (see read_predictions).
    """
    from beholder.io import ResumableWriter
    from beholder.io.readers import Item
    from beholder.pipeline import run_settings, score_inputs

    full = scorer.full_scoring(full)
    stale = Path(output).exists() and not _made_with(output, run_settings(scorer, full))
    writer = ResumableWriter(output, overwrite=overwrite or stale, retry_failed=True)
    if not writer.complete:
        with writer:
            score_inputs(
                scorer,
                (Item(path, path) for path in benchmark.paths),
                writer,
                full=full,
                batch_size=batch_size,
                total=len(benchmark.items),
                progress=progress,
                provenance={"benchmark": benchmark.source},
            )
    scale = scale or Scale(*scorer.scale, source=f"model {scorer.source!r} (its native scale)")
    label = scorer.source if score == "score" else f"{scorer.source}:{score}"
    predictions = read_predictions(output, scale=scale, name=name or label, score=score)
    failed = [r for r in predictions.results if not r.ok]
    if failed:
        warnings.warn(
            f"{len(failed)} of {len(predictions.results)} benchmark images could not be scored, e.g. "
            f"{failed[0].path}: {failed[0].error}; image names resolve against the image root "
            "(--image-root; by default the label file's folder)",
            stacklevel=2,
        )
    return predictions


def _made_with(table: str | os.PathLike[str], settings: dict[str, Any]) -> bool:
    """Whether a finished score table's provenance records these run settings (model, weights, mode)."""
    from beholder.io import read_provenance

    stored = read_provenance(table) or {}
    current = json.loads(json.dumps(settings, default=str))  # as provenance reads back: tuples become lists
    return stored.get("mode") == current["mode"] and all(stored.get(k) == v for k, v in current["scorer"].items())


def _unstated() -> Scale:
    return Scale(*UNIT, source="default: the predictions do not state a scale (pass --pred-scale lo,hi)")
