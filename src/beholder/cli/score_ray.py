"""`beholder score --engine ray`: the score command on a Ray cluster (the engine is beholder.distributed)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from beholder.cli.common import EXIT_FATAL, exit_status, format_summary, load_options

EXIT_USAGE = 2
EXTRA = "pip install 'beholder[ray]'"


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
    if not args.output:
        return _fail("--engine ray needs -o OUT, the folder the Parquet shards go to", EXIT_USAGE)
    if Path(args.output).suffix.lower() in (".jsonl", ".ndjson", ".csv"):
        return _fail(f"--engine ray writes a folder of Parquet shards, not {args.output}", EXIT_USAGE)
    if args.batch_size < 1 or args.shard_size < 1:
        return _fail("--batch-size and --shard-size must be at least 1", EXIT_USAGE)
    try:
        from ray.exceptions import RayError

        from beholder.distributed import RayOptions, score_to_shards
        from beholder.distributed.output import ShardedOutput
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] != "ray":
            raise
        return _fail(f"--engine ray needs Ray Data, which is not installed: {EXTRA}", EXIT_FATAL)
    from beholder.io import InputError, InputPlan, OutputConflict

    out = ShardedOutput(args.output, overwrite=args.overwrite)
    if out.complete:
        totals = out.totals()
        print(
            f"{args.output} is complete ({totals.rows} rows, {totals.failed} failed); "
            "--overwrite scores everything again",
            file=sys.stderr,
        )
        return exit_status(totals.failed)
    options = RayOptions(
        address=args.address,
        actors=args.actors,
        gpus_per_actor=args.gpus_per_actor,
        cpus_per_actor=args.cpus_per_actor,
        shard_size=args.shard_size,
    )
    try:
        inputs = InputPlan(args.inputs, path_column=args.path_column)
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
            provenance={"inputs": inputs.inputs},
        )
    except (InputError, OutputConflict, OSError, ValueError) as exc:
        return _fail(str(exc), EXIT_FATAL)
    except (RayError, RuntimeError) as exc:
        return _fail(f"the run stopped: {_last_line(exc)}\nfinished shards are kept: run the same command again to "
                     "resume", EXIT_FATAL)
    except KeyboardInterrupt:
        print("\ninterrupted: finished shards are kept; run the same command again to resume", file=sys.stderr)
        return EXIT_FATAL
    print(format_summary(summary, args.output), file=sys.stderr)
    return exit_status(summary.failed)


def _last_line(exc: BaseException) -> str:
    """A Ray error carries the remote traceback; its last line names the cause."""
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


def _fail(message: str, status: int) -> int:
    print(f"beholder score: error: {message}", file=sys.stderr)
    return status
