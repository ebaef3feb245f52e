"""Normalisation cost per image: beholder's fused `preprocess.normalize` vs the plain two-step formula.

Both turn RGB tiles into standardised channel-first float32; the plain one is kept here only as the baseline
it replaced. Timings are interleaved in one process, so their ratio holds on a busy machine too.

    python benchmarks/bench_normalize.py --tiles 13 --size 448 --repeats 20
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from machine import cpu_name  # sibling module: the script's folder is on sys.path when run

from beholder.preprocess import IMAGENET_MEAN, IMAGENET_STD, normalize
from beholder.testing import make_image


def plain(images, mean, std) -> np.ndarray:
    array = np.stack([np.asarray(im, dtype=np.float32) for im in images]) / 255.0
    array = (array - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(array.transpose(0, 3, 1, 2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiles", type=int, default=13, help="tiles per image (12 + thumbnail)")
    parser.add_argument("--size", type=int, default=448, help="tile side in pixels")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    tiles = [make_image(args.size, args.size, seed=i) for i in range(args.tiles)]
    elapsed = {"plain": 0.0, "fused": 0.0}
    results: dict[str, np.ndarray] = {}
    for _ in range(args.repeats):
        for name, fn in (("plain", plain), ("fused", normalize)):
            start = time.perf_counter()
            results[name] = fn(tiles, IMAGENET_MEAN, IMAGENET_STD)
            elapsed[name] += time.perf_counter() - start
    diff = float(np.abs(results["plain"] - results["fused"]).max())
    plain_ms, fused_ms = (elapsed[k] / args.repeats * 1000 for k in ("plain", "fused"))
    print(f"machine: {cpu_name()} | {args.tiles} tiles of {args.size} px, {args.repeats} interleaved runs")
    print(f"plain {plain_ms:.1f} ms | fused {fused_ms:.1f} ms | x{plain_ms / fused_ms:.2f} | max diff {diff:.1e}")


if __name__ == "__main__":
    main()
