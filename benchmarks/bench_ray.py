"""The Ray engine on one machine: 1 vs 2 scoring actors.

Two measurements per configuration and repeat:
  engine  `score_to_shards` end to end on a fresh output folder, as `beholder score --engine ray` runs it:
          planning, decode tasks, actors started (model loaded, probed), rows collected, shards written
  stages  the same two map_batches stages (prepare_batch on CPU tasks, ScoreBatch on the actors) over the
          same photos, timing when each scored batch arrives: steady state = the images after the first batch
          / the time from the first batch to the last (actor start-up excluded), so it says what the actors and
          the decoders sustain together
Runs are interleaved (1 actor, 2 actors, 1 actor, ...) after one warm-up run each and repeated; medians and
ranges are printed with the load average before and after.

Each actor reserves --cpus-per-actor CPUs of the local Ray (all cores); decode tasks take one CPU each from
what is left. The model is random (speed does not depend on the weight values); `small` at 13 tiles takes
~17 ms per image on one core.

    python benchmarks/bench_ray.py --size small --images 300 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import ray
import torch
from machine import cpu_name  # sibling module: the script's folder is on sys.path when run

import beholder
from beholder.distributed import RayOptions, ScoreBatch, connect, prepare_batch, score_to_shards
from beholder.io import InputPlan
from beholder.model.folder import save_model
from beholder.testing import SIZES, build_model, make_image

CONFIGS = (1, 2)  # scoring actors
DECODE_BATCH = 16  # the engine's (RayOptions.decode_batch)


def write_photos(folder: Path, n: int) -> list[str]:
    folder.mkdir(parents=True)
    paths = [str(folder / f"photo{i:05d}.jpg") for i in range(n)]
    for i, path in enumerate(paths):
        make_image(640, 480, seed=i).save(path, "JPEG", quality=90)
    return paths


def engine_rate(model: Path, photos: list[str], out: Path, actors: int, args: argparse.Namespace) -> float:
    """Images/s of one `score_to_shards` run, end to end."""
    options = RayOptions(actors=actors, cpus_per_actor=args.cpus_per_actor, shard_size=args.shard_size)
    start = time.perf_counter()
    summary = score_to_shards(str(model), InputPlan(photos), out, batch_size=args.batch_size, overwrite=True,
                              options=options, progress=False)
    seconds = time.perf_counter() - start
    assert summary.failed == 0 and summary.scored == len(photos), summary
    return len(photos) / seconds


def stages_rate(model: Path, photos: list[str], actors: int, args: argparse.Namespace) -> float:
    """Steady-state images/s of the two stages: from the first scored batch to the last."""
    blocks = max(1, len(photos) // DECODE_BATCH)
    rows = ray.data.from_items([{"path": p} for p in photos], override_num_blocks=blocks)
    scored = rows.map_batches(
        prepare_batch, fn_kwargs={"model": str(model)}, batch_size=DECODE_BATCH, batch_format="pyarrow", num_cpus=1
    ).map_batches(
        ScoreBatch, fn_constructor_kwargs={"model": str(model), "batch_size": args.batch_size},
        batch_size=4 * args.batch_size, batch_format="pyarrow", num_cpus=args.cpus_per_actor,
        compute=ray.data.ActorPoolStrategy(size=actors),
    )
    arrivals = []
    for batch in scored.iter_batches(batch_format="pyarrow", batch_size=None):
        assert batch["error"].null_count == len(batch)
        arrivals.append((time.perf_counter(), len(batch)))
    assert sum(n for _, n in arrivals) == len(photos)
    return (len(photos) - arrivals[0][1]) / (arrivals[-1][0] - arrivals[0][0])


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3g} ({min(values):.3g}-{max(values):.3g})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="small", help="model shape")
    parser.add_argument("--max-tiles", type=int, default=12, help="tiles per image (+ thumbnail)")
    parser.add_argument("--images", type=int, default=300, help="photos per run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--cpus-per-actor", type=float, default=0.5)
    parser.add_argument("--shard-size", type=int, default=100)
    args = parser.parse_args()

    cores = os.cpu_count()
    print(f"machine: {cpu_name()}, {cores} cores | torch {torch.__version__} | ray {ray.__version__}")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = save_model(build_model("internvl", size=args.size, max_tiles=args.max_tiles), tmp / "model")
        photos = write_photos(tmp / "photos", args.images)
        tiles = beholder.load(model).prepare(photos[0]).visual.pixels.shape[0]
        print(f"model: random {args.size}, full scoring, batch {args.batch_size}; inputs: {args.images} 640x480 "
              f"JPEGs q90, {tiles} tiles each; actors reserve {args.cpus_per_actor:g} CPU")
        connect()  # a local Ray on every core, shared by all runs
        runs = {"engine": lambda a: engine_rate(model, photos, tmp / "out", a, args),
                "stages": lambda a: stages_rate(model, photos, a, args)}
        try:
            for run in runs.values():  # warm-up: worker processes start and import torch once
                for actors in CONFIGS:
                    run(actors)
            rates: dict[tuple[str, int], list[float]] = {(name, a): [] for name in runs for a in CONFIGS}
            for _ in range(args.repeats):
                for name, run in runs.items():
                    for actors in CONFIGS:
                        rates[name, actors].append(run(actors))
        finally:
            ray.shutdown()
    print(f"load average after:  {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("\n| actors | engine, end to end (img/s) | stages, steady state (img/s) |")
    print("|---|---|---|")
    for a in CONFIGS:
        print(f"| {a} | {spread(rates['engine', a])} | {spread(rates['stages', a])} |")
    for name in runs:
        ratios = [two / one for one, two in zip(rates[name, 1], rates[name, 2])]
        print(f"2 actors / 1 actor, {name}, per repeat (interleaved pairs): {spread(ratios)}")


if __name__ == "__main__":
    main()
