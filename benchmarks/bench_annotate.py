"""Annotation throughput: one image per generate() call (what `beholder annotate` did) vs batched generation.

Both run Scorer.annotate_prepared on the same prepared images of one shape, greedy, a fixed number of new
tokens (no early stop: a random model's text has no end-of-turn, so every row generates them all), in one
process, interleaved A B A B so their ratio holds on a busy machine; median and spread are printed with the
load average. The texts must agree, so the speed-up is not bought with other output.

    python benchmarks/bench_annotate.py --size tiny --images 16 --batch-size 16 --tokens 64 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from machine import cpu_name  # sibling module: the script's folder is on sys.path when run

from beholder.scoring import Scorer
from beholder.testing import SIZES, build_model, make_image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny", help="backbone shape")
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=64, help="new tokens per annotation")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved timed runs of each, after a warm-up")
    args = parser.parse_args()

    model = build_model("internvl", seed=0, size=args.size, max_tiles=1)
    scorer = Scorer(model)
    side = model.config.preprocess.image_size
    prepared = [scorer.prepare(make_image(side, side, seed=i)) for i in range(args.images)]
    options = {"max_new_tokens": args.tokens, "min_new_tokens": args.tokens}

    def annotate(batch_size: int) -> list[str | None]:
        return [a.text for a in scorer.annotate_prepared(prepared, batch_size=batch_size, **options)]

    texts = {1: annotate(1), args.batch_size: annotate(args.batch_size)}  # warm-up, and the outputs compared
    seconds: dict[int, list[float]] = {1: [], args.batch_size: []}
    for _ in range(args.repeats):
        for batch_size in seconds:
            start = time.perf_counter()
            annotate(batch_size)
            seconds[batch_size].append(time.perf_counter() - start)
    print(f"machine: {cpu_name()} x{torch.get_num_threads()} threads | load average {os.getloadavg()[0]:.2f} "
          f"| torch {torch.__version__}")
    print(f"model: random {args.size}; {args.images} images of one shape, {args.tokens} new tokens each, greedy; "
          f"{args.repeats} interleaved runs")
    for batch_size, runs in seconds.items():
        median = statistics.median(runs)
        print(f"batch {batch_size:>3}: median {median:7.2f} s ({args.images / median:6.2f} img/s), "
              f"spread {min(runs):.2f}-{max(runs):.2f} s")
    ratio = statistics.median(seconds[1]) / statistics.median(seconds[args.batch_size])
    same = sum(a == b for a, b in zip(texts[1], texts[args.batch_size]))
    print(f"speed-up x{ratio:.1f}; identical texts: {same}/{args.images}")


if __name__ == "__main__":
    main()
