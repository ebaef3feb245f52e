"""`beholder score --engine ray`: the score command on a Ray cluster (the engine is beholder.distributed)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from beholder.cli.batch import format_summary, report_complete
from beholder.cli.common import load_options
from beholder.cli.exits import failed_status
from beholder.errors import BeholderError, UsageError, require

if TYPE_CHECKING:
    from beholder.distributed import RayOptions

EXTRA = "pip install 'beholder[ray]'"
INTERRUPT_HINT = "finished shards are kept: run the same command again to resume"


def add_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "engine",
        f"--engine ray scores on a Ray cluster ({EXTRA}) into OUT, a folder of Parquet shards\n"
        "(name it *.parquet and select/evaluate read it as one table): decoding runs on CPU tasks across the\n"
        "cluster, the model on actors, and a rerun resumes at shard granularity. --decode-workers and\n"
        "--checkpoint-seconds are the local engine's.",
    )
    group.add_argument("--engine", choices=("local", "ray"), default="local", help="where to score (default: local)")
    group.add_argument(
        "--address",
        metavar="ADDR",
        help="Ray cluster to join: auto (the running one) or ray://HEAD:10001 (default: start Ray on this machine)",
    )
    group.add_argument("--actors", type=int, metavar="N", help="scoring actors (default: one per GPU, or 1)")
    group.add_argument(
        "--gpus-per-actor", type=float, metavar="F",
        help="GPUs per actor (default: 1 when the cluster has GPUs, else 0)",
    )
    group.add_argument(
        "--cpus-per-actor", type=float, default=1.0, metavar="F", help="CPUs reserved per actor (default: 1)"
    )
    group.add_argument(
        "--shard-size",
        type=int,
        default=10_000,
        metavar="N",
        help="inputs per output shard: a stopped run loses at most the shards in flight (default: 10000)",
    )


def run(args: argparse.Namespace) -> int:
    args.interrupt_hint = INTERRUPT_HINT  # what an interrupted run leaves, for the exit message
    if not args.output:
        raise UsageError("--engine ray needs -o OUT, the folder the Parquet shards go to")
    if Path(args.output).suffix.lower() in (".jsonl", ".ndjson", ".csv"):
        raise UsageError(f"--engine ray writes a folder of Parquet shards, not {args.output}")
    options = ray_options(args)
    from beholder.distributed import score_to_shards
    from beholder.distributed.output import ShardedOutput
    from beholder.io import InputPlan

    out = ShardedOutput(args.output, overwrite=args.overwrite)
    if out.complete:
        return report_complete(args.output, out.totals())
    inputs = InputPlan(args.inputs, path_column=args.path_column)
    with ray_errors(INTERRUPT_HINT):
        summary = score_to_shards(
            args.model,
            inputs,
            args.output,
            full=False if args.fast else None,
            batch_size=args.batch_size,
            load_options=load_options(args),
            overwrite=args.overwrite,
            progress=not args.no_progress,
            options=options,
            provenance={"inputs": inputs.inputs, "paths_relative_to": inputs.base},
        )
    print(format_summary(summary, args.output, "scored"), file=sys.stderr)
    return failed_status(summary.failed)


def ray_options(args: argparse.Namespace) -> RayOptions:
    """The engine options, checked, once Ray is known to be installed (MissingDependency otherwise)."""
    if args.batch_size < 1 or args.shard_size < 1:
        raise UsageError("--batch-size and --shard-size must be at least 1")
    require("ray.data", "ray", "--engine ray")
    from beholder.distributed import RayOptions

    return RayOptions(
        address=args.address,
        actors=args.actors,
        gpus_per_actor=args.gpus_per_actor,
        cpus_per_actor=args.cpus_per_actor,
        shard_size=args.shard_size,
    )


@contextmanager
def ray_errors(hint: str) -> Iterator[None]:
    """The engine's failures as BeholderError: settings the cluster or a stored plan cannot take, and a run that
    stopped (`hint` says what it left)."""
    from ray.exceptions import RayError

    try:
        yield
    except BeholderError:
        raise
    except ValueError as exc:  # settings the stored plan or the cluster cannot take
        raise BeholderError(str(exc)) from exc
    except (RayError, RuntimeError) as exc:
        raise BeholderError(f"the run stopped: {_last_line(exc)}\n{hint}") from exc


def _last_line(exc: BaseException) -> str:
    """A Ray error carries the remote traceback; its last line names the cause."""
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__
