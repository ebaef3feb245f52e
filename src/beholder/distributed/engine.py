"""`beholder score --engine ray`: the inputs of `beholder score`, scored on a Ray cluster into Parquet shards.

    plan (driver, once)      INPUTs (or a subset of their keys) -> shards: plan files of image paths, or one
                             tar each                                                        (plan.py)
    read (tasks)             a shard -> its rows: its plan file, or its tar's members (expand_shards)
    decode (CPU tasks)       prepare_batch: decode + preprocess, uint8 views out           (stages.py)
    score (actor pool)       ScoreBatch: one model per actor, on its GPU when Ray gives it one
    collect (driver)         rows per shard -> part-NNNNNN.parquet once a shard is whole    (output.py)

Ray schedules everything: which worker decodes what, how many decode tasks run, retries. An actor that dies
is restarted by Ray and its batches run again; the driver keeps the first copy of a row and drops any second
one, so every input ends in exactly one row. A driver that dies loses only the shards not yet written: the
same command, run again, scores the rest.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import ray
import ray.data
from tqdm import tqdm

from beholder.distributed.output import ShardedOutput
from beholder.distributed.plan import (
    BYTES,
    INTERNAL_COLUMNS,
    ROW,
    ROWS,
    SHARD,
    SOURCE,
    Shard,
    ShardPlan,
    expand_shards,
    keys_digest,
    make_plan,
    shard_units,
)
from beholder.distributed.preprocessor import load_preprocessor
from beholder.distributed.stages import ScoreBatch, prepare_batch
from beholder.errors import BeholderError
from beholder.io.readers import InputPlan
from beholder.io.tables import conform, unify
from beholder.pipeline import RunSummary, run_settings
from beholder.results import BASE_COLUMNS
from beholder.scoring import Scorer


@dataclass(frozen=True)
class RayOptions:
    address: str | None = None  # None: start Ray on this machine; "auto": join the running cluster; "ray://host:10001"
    actors: int | None = None  # scoring actors (None: one per GPU share, or 1 on a cluster without GPUs)
    gpus_per_actor: float | None = None  # GPUs per scoring actor (None: 1 when the cluster has GPUs, else 0)
    cpus_per_actor: float = 1.0  # CPUs reserved per scoring actor: its torch threads when it scores on CPU
    shard_size: int = 10_000  # inputs per output shard: a killed driver loses at most the shards in flight
    decode_batch: int = 16  # images per decode task call; its uint8 views are 0.6 MB per tile and image


@dataclass(frozen=True)
class _Resources:
    actors: int
    gpus_per_actor: float
    device: str  # the actors' torch device


def score_to_shards(
    model: str,
    inputs: InputPlan,
    output: str | Path,
    *,
    keys: Collection[str] | None = None,
    full: bool | None = None,
    batch_size: int = 8,
    load_options: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    progress: bool = True,
    options: RayOptions = RayOptions(),
    provenance: dict[str, Any] | None = None,
) -> RunSummary:
    """Score `inputs` with `model` on Ray into the folder `output` (see beholder.distributed.output), resuming
    an interrupted run there. Connects to (or starts) Ray unless this process is connected already.

    keys: score only the inputs with these keys (`Item.key`s, tar members included), as rows of a full run would
        be, in input order (see beholder.distributed.plan); a rerun must give the same keys.

    load_options: `beholder.load`'s keyword arguments (device, dtype, max_tiles, decode, trust_remote_code, ...)
        for every worker; device "auto" (the default) is "cuda" when the actors get GPUs, else "cpu".
    """
    started = time.monotonic()
    own_ray = not ray.is_initialized()
    if own_ray:
        connect(options.address)
    try:
        load_options = dict(load_options or {})
        resources = _resources(options, load_options.get("device", "auto"))
        load_options["device"] = resources.device
        preprocessor = load_preprocessor(model, **load_options)
        full = preprocessor.full_scoring(full)
        expected = run_settings(preprocessor, full)
        settings = {  # what a rerun must share to continue this run's shards
            **{f"scorer.{k}": v for k, v in expected["scorer"].items()},
            "mode": expected["mode"],
            "inputs": inputs.inputs,
            "path_column": inputs.path_column,
            "shard_size": options.shard_size,
            "keys_sha256": keys_digest(keys),
        }
        record = _provenance(preprocessor, expected["mode"], resources, options, provenance or {})
        with ShardedOutput(output, overwrite=overwrite) as out:
            plan = _plan(out, settings, inputs, options.shard_size, keys)
            done = out.done()
            pending = [s for s in plan.shards if s.index not in done]
            collector = _Collector(out, plan.carried, record, pending, progress)
            if pending:
                stages = dict(load_options, model=_worker_model(model))
                scoring = dict(stages, full=full, batch_size=batch_size, expected_settings=expected)
                dataset = _dataset(out, pending, stages, scoring, options, resources, batch_size)
                with collector.bar:
                    for batch in dataset.iter_batches(batch_format="pyarrow", batch_size=None):
                        collector.add(batch)
                collector.close()
            totals = out.finish(record)
    finally:
        if own_ray:
            ray.shutdown()
    return RunSummary(
        rows=totals.rows,
        failed=totals.failed,
        scored=collector.scored,
        resumed=totals.rows - collector.scored,
        duplicates=plan.duplicates,
        elapsed=time.monotonic() - started,
    )


def _plan(
    out: ShardedOutput, settings: dict[str, Any], inputs: InputPlan, shard_size: int, keys: Collection[str] | None
) -> ShardPlan:
    """The plan an interrupted run stored in `out`, or a new one, stored before anything is scored."""
    stored = out.start(settings)
    if stored is not None:
        return ShardPlan.from_json(stored)
    plan = make_plan(inputs, out.plan_folder, shard_size, keys)
    out.save_plan(settings, plan.to_json())
    return plan


def _provenance(
    preprocessor: Scorer, mode: str, resources: _Resources, options: RayOptions, extra: dict[str, Any]
) -> dict[str, Any]:
    """The local engine's provenance record, with the workers' device and how the run was spread."""
    engine = {"name": "ray", "ray_version": ray.__version__, "actors": resources.actors,
              "gpus_per_actor": resources.gpus_per_actor, "cpus_per_actor": options.cpus_per_actor,
              "shard_size": options.shard_size}
    return {**preprocessor.provenance, "device": resources.device, "mode": mode, **extra, "engine": engine,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def connect(address: str | None = None) -> None:
    """Join the Ray cluster at `address` (None: start one on this machine), with Ray's own progress display and
    informational logs off: the engine shows its own progress."""
    kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR}
    if address is None:
        kwargs["include_dashboard"] = False
    ray.init(address=address, **kwargs)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)


def _resources(options: RayOptions, device: str) -> _Resources:
    """Actors and GPUs per actor from the options and what the cluster has; a request it cannot meet is an error
    here, rather than a run that waits forever for resources."""
    cluster = ray.cluster_resources()
    gpus, cpus = cluster.get("GPU", 0.0), cluster.get("CPU", 0.0)
    gpus_per_actor = options.gpus_per_actor if options.gpus_per_actor is not None else (1.0 if gpus >= 1 else 0.0)
    if options.actors is not None:
        actors = options.actors
    else:
        actors = max(1, int(gpus // gpus_per_actor)) if gpus_per_actor > 0 else 1
    if actors < 1 or gpus_per_actor < 0 or options.cpus_per_actor < 0:
        raise ValueError("--actors must be at least 1, --gpus-per-actor and --cpus-per-actor at least 0")
    if actors * gpus_per_actor > gpus:
        raise ValueError(f"{actors} actor(s) x {gpus_per_actor:g} GPU need {actors * gpus_per_actor:g} GPUs; "
                         f"the cluster has {gpus:g}")
    if cpus - actors * options.cpus_per_actor < 1:
        raise ValueError(f"{actors} actor(s) x {options.cpus_per_actor:g} CPU leave less than one of the cluster's "
                         f"{cpus:g} CPUs for reading and decoding; lower --cpus-per-actor or --actors")
    if device == "auto":
        device = "cuda" if gpus_per_actor > 0 else "cpu"
    return _Resources(actors, gpus_per_actor, device)


def _worker_model(model: str) -> str:
    """What workers load: a local folder by its absolute path (their working folder may differ), else the name."""
    path = Path(model).expanduser()
    return str(path.resolve()) if path.is_dir() else model


def _dataset(
    out: ShardedOutput,
    pending: list[Shard],
    stages: dict[str, Any],
    scoring: dict[str, Any],
    options: RayOptions,
    resources: _Resources,
    batch_size: int,
) -> ray.data.Dataset:
    units = ray.data.from_arrow(shard_units(pending, out.plan_folder))
    rows = units.map_batches(expand_shards, fn_kwargs={"chunk": options.decode_batch}, batch_size=1,
                             batch_format="pyarrow")
    prepared = rows.map_batches(
        prepare_batch,
        fn_kwargs=dict(stages, bytes_column=BYTES, source_column=SOURCE),
        batch_size=options.decode_batch,
        batch_format="pyarrow",
        num_cpus=1,
    )
    return prepared.map_batches(
        ScoreBatch,
        fn_constructor_kwargs=scoring,
        batch_size=4 * batch_size,  # the scorer groups a batch by tile count: a wider one makes fuller passes
        batch_format="pyarrow",
        num_cpus=options.cpus_per_actor,
        num_gpus=resources.gpus_per_actor,
        compute=ray.data.ActorPoolStrategy(size=resources.actors),
    )


class _Collector:
    """Gathers scored rows per shard and writes a shard's part once all its rows are in; a row that comes back
    twice (a retried batch) is kept once."""

    def __init__(self, out: ShardedOutput, carried: pa.Schema, provenance: dict[str, Any], pending: list[Shard],
                 progress: bool):
        self.out, self.carried, self.provenance = out, carried, provenance
        self.expected: dict[int, int | None] = {s.index: s.rows for s in pending}
        self.received: dict[int, set[int]] = defaultdict(set)
        self.pieces: dict[int, list[pa.Table]] = defaultdict(list)
        self.schema = out.part_schema()  # parts written by an earlier run fix the schema
        self.scored = 0
        total = None if any(s.rows is None for s in pending) else sum(s.rows for s in pending)
        self.bar = tqdm(total=total, unit="img", desc="scoring", disable=not progress, dynamic_ncols=True)

    def add(self, batch: pa.Table) -> None:
        for shard in pc.unique(batch[SHARD]).to_pylist():
            piece = batch.filter(pc.equal(batch[SHARD], shard))
            rows = piece[ROW].to_pylist()
            fresh = [row not in self.received[shard] for row in rows]
            if not all(fresh):
                piece = piece.filter(pa.array(fresh))
            if not len(piece):
                continue
            self.received[shard].update(rows)
            self.expected[shard] = piece[ROWS][0].as_py()
            self.pieces[shard].append(piece)
            self.scored += len(piece)
            self.bar.update(len(piece))
            if len(self.received[shard]) == self.expected[shard]:
                self._write(shard)

    def close(self) -> None:
        """At the end of the stream: write the tar shards that had no image, and fail if a shard is short."""
        for shard, expected in sorted(self.expected.items()):
            if expected is None and not self.received[shard]:
                self._write(shard)  # a tar without image members: an empty part, as `beholder score` gives no rows
            else:
                raise BeholderError(
                    f"shard {shard}: {len(self.received[shard])} of {expected} rows came back; "
                    "run the same command again to score it"
                )

    def _write(self, shard: int) -> None:
        pieces = self.pieces.pop(shard, [])
        table = pa.concat_tables(pieces, promote_options="permissive") if pieces else None
        if table is not None:
            table = table.sort_by(ROW).drop_columns(list(INTERNAL_COLUMNS))
        if self.schema is None:
            base = pa.schema([(name, pa.string() if name != "score" else pa.float64()) for name in BASE_COLUMNS])
            self.schema = unify([table.schema if table is not None else base, self.carried])
        table = table if table is not None else self.schema.empty_table()
        self.out.write_part(shard, conform(table, self.schema), self.provenance)
        del self.expected[shard]

