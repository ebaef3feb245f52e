"""Decoding vs model throughput: does the decode stage of `beholder score` keep the model busy?

On realistic photos (1024x768 JPEGs, quality 90, gradients plus noise, read from disk) it times, at the
defaults of `beholder score` (batch 8, full scoring, decode workers = min(8, CPU count), full-size JPEG
decoding; --draft-decode for the opt-in reduced-scale decoding):

  decode    the pipeline's decode stage alone (read, decode, EXIF, tile, normalise) in its worker threads
  model     Scorer.score_prepared on already-decoded images (decoding excluded)
  pipeline  score_inputs end to end: decode threads and the model running together

Decoding keeps up when decode >= model; pipeline then runs at about the model's rate. Model sizes:
  tiny          the random test model (56-pixel tiles, up to 6 + thumbnail): the fastest model there is, so the
                hardest case for the decoders
  internvl2-1b  a random model the shape of InternVL2-1B / HumanAesExpert-1B, with its real preprocessing
                (448-pixel tiles, up to 12 + thumbnail: 13 tiles for a 4:3 photo)

    python benchmarks/bench_decode.py --size tiny --images 64
    python benchmarks/bench_decode.py --size internvl2-1b --images 16 --model-images 1 --repeats 1 --no-pipeline \
        --dtype bfloat16
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from machine import cpu_name  # sibling module: the script's folder is on sys.path when run

from beholder.images import DecodeConfig
from beholder.io import InputPlan
from beholder.model.aesthetic import AestheticModel
from beholder.pipeline import MemorySink, decode, default_decode_workers, score_inputs
from beholder.presets import preset
from beholder.results import ScoreResult
from beholder.scoring import Scorer
from beholder.testing import SIZES, build_model, make_image


def write_photos(folder: Path, n: int) -> list[str]:
    paths = []
    for i in range(n):
        path = folder / f"photo{i:04d}.jpg"
        make_image(1024, 768, seed=i).save(path, "JPEG", quality=90)
        paths.append(str(path))
    return paths


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def best_rate(n: int, run: Callable[[], object], repeats: int) -> float:
    """Images/s of the fastest of `repeats` runs: on a shared machine the best run is the least disturbed."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return n / best


def time_decode(scorer: Scorer, paths: list[str], workers: int, prefetch: int, repeats: int) -> float:
    def run() -> None:
        for _, prepared in decode(scorer, InputPlan(paths).items(), workers, prefetch):
            assert not isinstance(prepared, ScoreResult), prepared.error

    return best_rate(len(paths), run, repeats)


def time_model(scorer: Scorer, paths: list[str], batch_size: int, repeats: int) -> float:
    prepared = [scorer.prepare(p) for p in paths]
    scorer.score_prepared(prepared, full=True, batch_size=batch_size)  # warm-up: the first runs are far slower
    return best_rate(len(prepared), lambda: scorer.score_prepared(prepared, full=True, batch_size=batch_size), repeats)


def time_pipeline(scorer: Scorer, paths: list[str], batch_size: int, workers: int, repeats: int) -> float:
    def run() -> None:
        items = InputPlan(paths).items()
        summary = score_inputs(
            scorer, items, MemorySink(), batch_size=batch_size, decode_workers=workers, progress=False
        )
        assert summary.failed == 0

    return best_rate(len(paths), run, repeats)


def show(label: str, images_per_second: float, note: str = "") -> None:
    print(f"{label:<30}: {images_per_second:9.4g} images/s{note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny", help="model shape")
    parser.add_argument("--images", type=int, default=64, help="photos decoded (and scored, for pipeline)")
    parser.add_argument("--model-images", type=int, help="photos for the model timing (default: --images)")
    parser.add_argument("--max-tiles", type=int, help="tiles per image (default: the model's; 12 for internvl2-1b)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--decode-workers", type=int, default=default_decode_workers())
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per figure; the best is reported")
    parser.add_argument("--no-pipeline", action="store_true", help="skip the end-to-end run (slow big models)")
    parser.add_argument("--draft-decode", action="store_true", help="decode JPEGs at reduced DCT scale (opt-in)")
    args = parser.parse_args()

    max_tiles = args.max_tiles or (None if args.size == "tiny" else preset("humanaesexpert").preprocess.max_tiles)
    model = build_model("internvl", seed=0, size=args.size, max_tiles=max_tiles)
    if args.draft_decode:  # the same weights, with the opt-in in the preprocessing config
        preprocess = dataclasses.replace(model.config.preprocess, decode=DecodeConfig(draft=True))
        drafted = AestheticModel(model.hf_model, model.tokenizer, model.config.replace(preprocess=preprocess))
        drafted.heads.load_state_dict(model.heads.state_dict())
        model = drafted.eval()
    scorer = Scorer(model.to(torch.device("cpu")))
    scorer.model.hf_model.to(getattr(torch, args.dtype))
    prefetch = 4 * args.decode_workers  # enough look-ahead to keep every worker busy; more changes nothing
    preprocess = scorer.config.preprocess
    params = sum(p.numel() for p in scorer.model.hf_model.parameters()) / 1e6
    print(
        f"machine: {cpu_name()}, {os.cpu_count()} cores | torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    print(
        f"model: random {args.size} ({params:,.1f}M params, {args.dtype}), full scoring, batch {args.batch_size}; "
        f"tiles {preprocess.image_size}px, up to {preprocess.max_tiles} + thumbnail; "
        f"JPEG draft {preprocess.decode.draft}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_photos(Path(tmp), args.images)
        tiles = scorer.prepare(paths[0]).visual.pixels.shape[0]
        print(f"inputs: {args.images} JPEGs 1024x768 q90 on disk ({tiles} tiles each)")
        one = time_decode(scorer, paths, 1, prefetch, args.repeats)
        show("decode, 1 worker", one)
        dec = time_decode(scorer, paths, args.decode_workers, prefetch, args.repeats)
        show(f"decode, {args.decode_workers} workers (default)", dec)
        mod = time_model(scorer, paths[: args.model_images or args.images], args.batch_size, args.repeats)
        show("model, full scoring", mod)
        if not args.no_pipeline:
            e2e = time_pipeline(scorer, paths, args.batch_size, args.decode_workers, args.repeats)
            show("pipeline, end to end", e2e, f" ({e2e / mod:.0%} of the model alone)")
    verdict = "keeps up with the model" if dec >= mod else "is the bottleneck"
    print(f"decode / model = {dec / mod:.1f}x: decoding {verdict}")


if __name__ == "__main__":
    main()
