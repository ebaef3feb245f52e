"""A cheap-to-expensive cascade: score every input with a cheap model, keep the survivors of a rule (the best
fraction or count per group, or those above a threshold), score only the survivors with an expensive model.

It is the restartable steps `score -> select -> score` with plain files between them, in OUT.cascade/:

    cascade.json       the models, rule, group column and engine (a resume with others is refused)
    stage1.parquet     every input scored by the cheap model         (a resumable score table, as `beholder score`)
    survivors.parquet  what `select` keeps of stage 1: path, stage-1 score and group
    stage2.parquet     the survivors scored by the expensive model    (a resumable score table)

then OUT, written last and atomically: one row per input, with the expensive model's columns (score, level,
error, score_<name>, dim_<key>, head_<name>; empty for rows that stopped at stage 1), `stage` (the last stage the
row reached: 1 or 2), `stage1_score` (the cheap model's score) and the input's carried columns. A killed run
resumes where it stopped: a finished stage is not run again and its model is not even loaded.

Which engine scores a stage is the StageRunner's business: LocalStages runs beholder's local pipeline (with a
loaded model, or a `beholder serve` service's through beholder.client.RemoteScorer); RayStages runs the Ray engine,
whose stage tables are folders of Parquet shards that read as one table, and whose stage 2 plans only the
survivors' keys (beholder.distributed.plan). Both write the same rows for the same inputs.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import pyarrow as pa
import pyarrow.compute as pc

from beholder.curate import Selection, select
from beholder.errors import UsageError
from beholder.files import remove
from beholder.io import (
    InputPlan,
    OutputConflict,
    ResumableWriter,
    key_from_text,
    read_provenance,
    read_scores,
    write_json_atomic,
    write_table,
)
from beholder.io.readers import Item
from beholder.io.tables import changed_settings, is_score_column
from beholder.results import BASE_COLUMNS, STAGE1_SCORE

if TYPE_CHECKING:
    from beholder.distributed import RayOptions
    from beholder.scoring import Scorer

STAGE = "stage"  # the last stage a row reached, 1 or 2
_RULE = re.compile(r"^(top|min)=([0-9.eE+-]+)(%?)$")


@dataclass(frozen=True)
class CascadeRule:
    """Which stage-1 rows go on to stage 2: those scoring at least `min_score`, then of those the best `top_k` or
    `top_fraction` (rounded up), within each group when a group column is given (as `beholder select`)."""

    min_score: float | None = None
    top_k: int | None = None
    top_fraction: float | None = None

    @classmethod
    def parse(cls, text: str) -> CascadeRule:
        """"top=20%", "top=100", "min=5.5", or a comma-separated pair such as "min=5,top=10%"."""
        fields: dict[str, Any] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            match = _RULE.match(part)
            if not match:
                raise UsageError(f"cascade rule {part!r}: write top=N, top=P% or min=X")
            kind, number, percent = match.groups()
            try:
                value = float(number)
            except ValueError:
                raise UsageError(f"cascade rule {part!r}: {number!r} is not a number") from None
            if kind == "min":
                fields["min_score"] = value
            elif percent:
                fields["top_fraction"] = value / 100
            elif value.is_integer() and value >= 1:
                fields["top_k"] = int(value)
            else:
                raise UsageError(f"cascade rule {part!r}: top=N takes a whole number of images, or P%")
        if not fields:
            raise UsageError("empty cascade rule: write top=N, top=P% or min=X")
        return cls(**fields)

    def __str__(self) -> str:
        parts = [f"min={self.min_score:g}"] if self.min_score is not None else []
        if self.top_k is not None:
            parts.append(f"top={self.top_k}")
        if self.top_fraction is not None:
            parts.append(f"top={self.top_fraction * 100:g}%")
        return ",".join(parts)

    def apply(self, table: pa.Table, group_by: str | None = None) -> Selection:
        return select(table, min_score=self.min_score, top_k=self.top_k, top_fraction=self.top_fraction,
                      group_by=group_by)


def parse_cascade(spec: str) -> tuple[str, CascadeRule]:
    """"CHEAP:RULE" -> (cheap model, rule); the model may itself contain ':' (the rule follows the last one)."""
    model, sep, rule = spec.rpartition(":")
    if not sep or not model:
        raise UsageError(f"--cascade {spec!r}: write CHEAP:RULE, e.g. laion-aesthetic-v2:top=20%")
    return model, CascadeRule.parse(rule)


class StageRunner(Protocol):
    """Scores `plan`'s inputs (only those whose key is in `keys`, when given) with `model` into the finished score
    table `output`, resuming an interrupted table there, for stage 1 or 2; returns whatever summary it has (None
    when `output` was finished already: then no model is loaded)."""

    engine: str  # recorded with the run: a resume on another engine is refused (their unfinished tables differ)

    def __call__(self, stage: int, model: str, plan: InputPlan, keys: set[str] | None, output: Path) -> Any: ...


@dataclass
class LocalStages:
    """Runs a stage on this machine: the model loaded only when the stage has work, batch scoring into a
    ResumableWriter (so a killed stage resumes), as `beholder score` does."""

    engine: ClassVar[str] = "local"
    load: Callable[[str], Scorer]  # model name -> Scorer (or a RemoteScorer: the local pipeline takes either)
    score_options: dict[str, Any]  # keyword arguments of pipeline.score_inputs (batch_size, decode_workers, ...)
    full: bool | None = None  # stage 2's scoring mode (None: the model's default); stage 1 is always one pass
    checkpoint_seconds: float = 30.0

    def __call__(self, stage: int, model: str, plan: InputPlan, keys: set[str] | None, output: Path) -> Any:
        from beholder.pipeline import score_inputs

        writer = ResumableWriter(output, chunk_seconds=self.checkpoint_seconds)
        if writer.complete:
            return None
        scorer = self.load(model)
        items: Iterable[Item] = plan.items() if keys is None else (i for i in plan.items() if i.key in keys)
        with writer:
            return score_inputs(
                scorer, items, writer, full=False if stage == 1 else self.full,
                total=plan.count() if keys is None else len(keys),
                provenance=_stage_provenance(plan, stage),
                **self.score_options,
            )


@dataclass
class RayStages:
    """Runs a stage on a Ray cluster (beholder.distributed, extra `beholder[ray]`) into a folder of Parquet shards
    that resumes at shard granularity; stage 2 plans only the survivors. Ray is joined (or started) when a stage
    first has work, and left by `close` (or the context manager) if this runner started it."""

    engine: ClassVar[str] = "ray"
    options: RayOptions  # the cluster and how the run is spread over it
    load_options: dict[str, Any] = field(default_factory=dict)  # beholder.load's keyword arguments, for every worker
    batch_size: int = 8  # images per forward pass on an actor
    full: bool | None = None  # stage 2's scoring mode (None: the model's default); stage 1 is always one pass
    progress: bool = True
    _connected: bool = field(default=False, init=False)

    def __call__(self, stage: int, model: str, plan: InputPlan, keys: set[str] | None, output: Path) -> Any:
        import ray

        from beholder.distributed import connect, score_to_shards
        from beholder.distributed.output import ShardedOutput

        if ShardedOutput(output).complete:
            return None
        if not ray.is_initialized():
            connect(self.options.address)
            self._connected = True
        return score_to_shards(
            model, plan, output, keys=keys, full=False if stage == 1 else self.full, batch_size=self.batch_size,
            load_options=self.load_options, progress=self.progress, options=self.options,
            provenance=_stage_provenance(plan, stage),
        )

    def close(self) -> None:
        if self._connected:
            import ray

            ray.shutdown()
            self._connected = False

    def __enter__(self) -> RayStages:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _stage_provenance(plan: InputPlan, stage: int) -> dict[str, Any]:
    return {"inputs": plan.inputs, "paths_relative_to": plan.base, "stage": stage}


@dataclass(frozen=True)
class CascadeSummary:
    rows: int  # inputs in OUT
    survivors: int  # rows that went on to stage 2
    failed: int  # rows of OUT with an error (at the last stage they reached)
    stage1: Any  # what the stage runner returned for each stage (None when it was already finished)
    stage2: Any
    elapsed: float


@dataclass(frozen=True)
class CascadePaths:
    folder: Path

    @classmethod
    def of(cls, output: str | Path) -> CascadePaths:
        return cls(Path(f"{output}.cascade"))

    @property
    def record(self) -> Path:
        return self.folder / "cascade.json"

    @property
    def stage1(self) -> Path:
        return self.folder / "stage1.parquet"

    @property
    def survivors(self) -> Path:
        return self.folder / "survivors.parquet"

    @property
    def stage2(self) -> Path:
        return self.folder / "stage2.parquet"


def run_cascade(
    plan: InputPlan,
    output: str | Path,
    *,
    cheap: str,
    expensive: str,
    rule: CascadeRule,
    group_by: str | None = None,
    runner: StageRunner,
    overwrite: bool = False,
) -> CascadeSummary:
    """Score `plan` with `cheap`, keep `rule`'s survivors (per `group_by` group), score those with `expensive`,
    and write OUT (see the module docstring). Raises OutputConflict when OUT.cascade/ holds a run made with other
    models or another rule (overwrite=True starts again)."""
    started = time.monotonic()
    paths = CascadePaths.of(output)
    if overwrite:
        remove(paths.folder)
    paths.folder.mkdir(parents=True, exist_ok=True)
    _check_record(paths, {"cheap": cheap, "expensive": expensive, "rule": str(rule), "group_by": group_by,
                          "engine": runner.engine})
    stage1 = runner(1, cheap, plan, None, paths.stage1)
    first = read_scores(paths.stage1)
    if group_by is not None and group_by not in first.column_names:
        raise UsageError(f"no column {group_by!r} to group by (columns of the inputs: {', '.join(first.column_names)})")
    kept = rule.apply(first, group_by).table
    keys = _keys(kept)
    if not paths.survivors.exists() or _keys(read_scores(paths.survivors, columns=["path"])) != keys:
        remove(paths.stage2)  # finished or not, made for other survivors (stage 1 was made again): score them again
    write_table(paths.survivors, kept.select(["path", "score", *([group_by] if group_by else [])]))
    if keys:
        stage2 = runner(2, expensive, plan, keys, paths.stage2)
    else:  # nothing survived: the expensive model is not even loaded
        stage2 = None
        write_table(paths.stage2, pa.table({"path": pa.array([], pa.string())}), {"model": expensive})
    second = read_provenance(paths.stage2) or {}
    table = merge_stages(first, read_scores(paths.stage2))
    provenance = {
        # what `score` means in OUT: the expensive model's score, on its scale
        **{k: v for k, v in second.items() if k in ("model", "scale", "weights_sha256", "mode")},
        "cascade": {"cheap": cheap, "expensive": expensive, "rule": str(rule), "group_by": group_by,
                    "inputs": len(first), "survivors": len(keys)},
        "stage1": read_provenance(paths.stage1),
        "stage2": second,
    }
    write_table(output, table, provenance)
    failed = len(table) - table["error"].null_count
    return CascadeSummary(len(table), len(keys), failed, stage1, stage2, time.monotonic() - started)


def merge_stages(first: pa.Table, second: pa.Table) -> pa.Table:
    """Stage 1's rows in their order, with stage 2's score columns for the rows that reached it and stage 1's
    carried columns for every row (see module docstring)."""
    index = {key: i for i, key in enumerate(second["path"].to_pylist())}
    rows = [index.get(key) for key in first["path"].to_pylist()]
    reached = pa.array([i is not None for i in rows])
    take = pa.array(rows, pa.int64())
    scored = [n for n in second.column_names if n != "path" and (n in BASE_COLUMNS or is_score_column(n))]
    stage2 = {name: second[name].take(take) for name in scored}
    for name, type_ in (("score", pa.float64()), ("level", pa.string()), ("error", pa.string())):
        stage2.setdefault(name, pa.nulls(len(first), type_))  # no row reached stage 2
    error = pc.if_else(reached, stage2["error"], first["error"].cast(pa.string()))
    carried = [n for n in first.column_names if n not in BASE_COLUMNS and not is_score_column(n)]
    columns = {
        "path": first["path"],
        "score": stage2["score"],
        "level": stage2["level"],
        "error": error,
        STAGE: pc.if_else(reached, 2, 1).cast(pa.int8()),
        STAGE1_SCORE: first["score"],
        **{n: c for n, c in stage2.items() if n not in ("score", "level", "error")},
        **{n: first[n] for n in carried},
    }
    return pa.table(columns)


def _keys(table: pa.Table) -> set[str]:
    """The input keys a table's `path` column names (tables write keys in their text form)."""
    return {key_from_text(text) for text in table["path"].to_pylist()}


def _check_record(paths: CascadePaths, settings: dict[str, Any]) -> None:
    if paths.record.exists():
        stored = {"engine": "local", **json.loads(paths.record.read_text())}  # records from before Ray stages
        changed = changed_settings(stored, settings)
        if changed:
            raise OutputConflict(
                f"{paths.folder} holds a cascade run with other settings (differ: {', '.join(changed)}); run it "
                "with the same models, rule and engine, or pass --overwrite to start again"
            )
        return
    write_json_atomic(paths.record, settings)
