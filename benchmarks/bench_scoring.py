"""Full-scoring throughput: beholder's prefix-shared batched path vs the naive official-style loop.

Both run on the same random-weight model in one process, on the same prepared images (decoding is excluded
from both; see bench_decode.py for that side):
  naive     one image at a time; two complete forward passes (overall prompt, 12-dim prompt), each re-encoding
            the image and computing logits over the whole vocabulary at every position, as the released
            HumanAesExpert run_metavoter() does
  beholder  Scorer.score_prepared(full=True): batched by tile count, the image prefix encoded once and its KV
            cache reused for both questions, only the read logits computed
It also checks that both give the same scores, so the speed-up is not bought with different results.

    python benchmarks/bench_scoring.py --size internvl2-1b --tiles 1 --images 8 --batch-size 8
"""

from __future__ import annotations

import argparse
import time

import torch
from machine import cpu_name  # sibling module: the script's folder is on sys.path when run

from beholder.scoring import Scorer
from beholder.testing import SIZES, build_model, make_image, naive_full


def _timed(fn, repeats: int) -> tuple[float, list[float]]:
    """(seconds per run, the last run's scores), after one untimed warm-up run."""
    fn()  # warm-up: allocator, kernels, caches
    start = time.perf_counter()
    for _ in range(repeats):
        scores = fn()
    return (time.perf_counter() - start) / repeats, scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="internvl2-1b", help="backbone shape")
    parser.add_argument("--tiles", type=int, default=1, help="448-tiles per image before the thumbnail")
    parser.add_argument("--images", type=int, default=8, help="images per timed run")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs after one warm-up run")
    args = parser.parse_args()

    model = build_model("internvl", seed=0, size=args.size, max_tiles=args.tiles)
    model = model.to(device=args.device)
    model.hf_model.to(getattr(torch, args.dtype))
    scorer = Scorer(model)
    side = model.config.preprocess.image_size
    prepared = [scorer.prepare(make_image(side * args.tiles, side, seed=i)) for i in range(args.images)]
    n_tiles = prepared[0].visual.pixels.shape[0]
    n_tokens = len(model.prefix_ids(prepared[0].visual.n_tokens))

    def naive() -> list[float]:
        return [naive_full(model, item.visual)["metavoter"].item() for item in prepared]

    def ours() -> list[float]:
        return [r.score for r in scorer.score_prepared(prepared, full=True, batch_size=args.batch_size)]

    def fast() -> list[float]:
        return [r.score for r in scorer.score_prepared(prepared, full=False, batch_size=args.batch_size)]

    params = sum(p.numel() for p in model.hf_model.parameters()) / 1e6
    print(f"machine: {cpu_name()} x{torch.get_num_threads()} threads | device {args.device} | torch {torch.__version__}")
    print(f"model: random {args.size} ({params:.0f}M params), {args.dtype}; {n_tiles} tile(s)/image "
          f"({args.tiles} + thumbnail if >1), prefix {n_tokens} tokens; {args.images} images, batch {args.batch_size}")
    t_naive, naive_scores = _timed(naive, args.repeats)
    t_ours, our_scores = _timed(ours, args.repeats)
    t_fast, _ = _timed(fast, args.repeats)
    diff = max(abs(a - b) for a, b in zip(naive_scores, our_scores))
    print(f"naive official-style full : {args.images / t_naive:8.3f} images/s")
    print(f"beholder full (MetaVoter) : {args.images / t_ours:8.3f} images/s   speed-up x{t_naive / t_ours:.2f}")
    print(f"beholder fast (one pass)  : {args.images / t_fast:8.3f} images/s   speed-up x{t_naive / t_fast:.2f}")
    print(f"max |naive - beholder| final score: {diff:.2e}")


if __name__ == "__main__":
    main()
