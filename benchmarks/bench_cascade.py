"""A cascade against the expensive model alone: how much faster is `beholder score --cascade CHEAP:top=P% -m EXP`
than `beholder score -m EXP` on the same inputs?

Both paths run end to end from JPEG files on disk, as the command would, with the models already loaded (loading
is a one-off cost outside both):
  alone    the expensive model's one-pass score of every image (score_inputs into a resumable table)
  cascade  beholder.cascade.run_cascade: the cheap model on every image, select, the expensive model on the
           survivors, the merged table written (all its files included)
  cheap    the cheap model's score of every image alone, to state the cost ratio the speed-up comes from
They run interleaved (alone, cascade, cheap, alone, cascade, cheap, ...) so drift of a shared machine hits both; each reports its
median and spread over the repeats, and the speed-up is the ratio of the medians. Models have random weights and
the released geometry (speed depends on shapes, not on weights):
  cheap      laion-aesthetic-v2: CLIP ViT-L/14 image tower at 224 px + the LAION MLP (305M parameters)
  expensive  artimuse's reading (one 448-px squash, 101 score tokens) on InternVL2-1B's geometry (802M); the
             released ArtiMuse / ERNIE-Image-Aes are 8B, so the real ratio is larger
The ideal speed-up is 1 / (fraction + cheap / expensive cost per image).

    python benchmarks/bench_cascade.py --images 8 --fraction 0.25 --repeats 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from machine import cpu_name  # sibling module: the script's folder is on sys.path when run

from beholder.cascade import CascadeRule, LocalStages, run_cascade
from beholder.io import InputPlan, ResumableWriter
from beholder.pipeline import score_inputs
from beholder.scoring import Scorer
from beholder.testing import build_model, make_image


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--fraction", type=float, default=0.25, help="the cascade keeps the top fraction (0.25)")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs of each path, interleaved")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--cheap-size", choices=("tiny", "released"), default="released")
    parser.add_argument("--expensive-size", choices=("tiny", "internvl2-1b"), default="internvl2-1b")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    args = parser.parse_args()

    cheap = Scorer(build_model("clip", size=args.cheap_size))
    expensive = Scorer(build_model("internvl", preset_name="artimuse", size=args.expensive_size))
    for scorer in (cheap, expensive):
        scorer.model.hf_model.to(getattr(torch, args.dtype))  # the backbone, as beholder.load(dtype=...) does
    models = {"cheap": cheap, "expensive": expensive}
    options = {"batch_size": args.batch_size, "progress": False}
    rule = CascadeRule(top_fraction=args.fraction)
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__} x{torch.get_num_threads()} "
          f"threads | load average before: {load_average()}")
    print(f"cheap: {cheap.config.name}; expensive: {expensive.config.name}; {args.dtype}; {args.images} JPEGs "
          f"1024x768; cascade rule {rule}; batch {args.batch_size}")

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for i in range(args.images):
            make_image(1024, 768, seed=i).save(root / f"{i:04d}.jpg", "JPEG", quality=90)
        plan = InputPlan([str(root)])

        def alone(out: Path, scorer: Scorer = expensive) -> None:
            with ResumableWriter(out) as writer:
                summary = score_inputs(scorer, plan.items(), writer, full=False, **options)
            if summary.failed:
                raise RuntimeError(f"{summary.failed} images failed: the timing would not be of scoring")

        def cascade(out: Path) -> None:
            runner = LocalStages(load=models.__getitem__, score_options=options)
            summary = run_cascade(plan, out, cheap="cheap", expensive="expensive", rule=rule, runner=runner)
            if summary.failed or summary.survivors != -(-args.images * args.fraction // 1):
                raise RuntimeError(f"cascade: {summary.failed} failed, {summary.survivors} survivors")

        paths = {"alone": alone, "cascade": cascade, "cheap": lambda out: alone(out, cheap)}
        alone(root / "warm.parquet")  # warm-up: allocator, kernels, page cache
        cascade(root / "warm-cascade.parquet")
        times: dict[str, list[float]] = {name: [] for name in paths}
        for repeat in range(args.repeats):
            for name, run in paths.items():
                start = time.perf_counter()
                run(root / f"{name}-{repeat}.parquet")
                times[name].append(time.perf_counter() - start)
    for name, seconds in times.items():
        spread = f"{min(seconds):.1f}-{max(seconds):.1f}"
        print(f"{name:8s}: median {statistics.median(seconds):7.1f} s  (runs {spread} s) "
              f"= {args.images / statistics.median(seconds):.3f} img/s")
    median = {name: statistics.median(seconds) for name, seconds in times.items()}
    survivors = -(-args.images * args.fraction // 1)
    ideal = 1 / (survivors / args.images + median["cheap"] / median["alone"])
    print(f"speed-up of the cascade over the expensive model alone: x{median['alone'] / median['cascade']:.2f} "
          f"(survivors: {survivors:.0f} of {args.images}; cheap / expensive cost per image "
          f"{median['cheap'] / median['alone']:.3f}, so at most x{ideal:.2f})")
    print(f"load average after: {load_average()}")


if __name__ == "__main__":
    main()
