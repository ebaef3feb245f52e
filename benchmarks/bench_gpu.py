"""Scoring throughput on a GPU: images/s and the fraction of the measured bf16 matmul peak, at 1 and 13 views per
image, over a batch sweep, for plain transformers and beholder's paths in the same run.

The paths are bench_forward.py's (transformers = InternVLForConditionalGeneration with logits_to_keep=1; fast;
fast-fused; full-fused; on request naive-full, and fast-compiled: the fast path on transformers' layers with the
vision tower, most of the time, under torch.compile with --compile-mode, "reduce-overhead" = CUDA graphs), on one random-weight model of a released geometry (speed depends on
shapes, not weights), on the same prepared images; decoding is excluded. For each (views, batch) the paths run
interleaved (A B C, C B A, ...) after a warm-up run that also counts their FLOPs, with torch.cuda.synchronize around
every timed run. A batch that runs out of GPU memory is recorded as such and ends the sweep for that view count.

    python benchmarks/bench_gpu.py                               # InternVL2-1B geometry, bf16, 1 and 13 views
    python benchmarks/bench_gpu.py --size internvl2-8b --batches 1 4 16 --json gpu-8b.json
    python benchmarks/bench_gpu.py --device cpu --size tiny-448 --batches 1 2 --repeats 1   # a smoke run, no GPU

Run it as one prepared command on a machine with an accelerator; record the printed table in BENCHMARKS.md with the
GPU it names.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics

import torch
from bench_forward import build_pair, path_functions  # sibling modules: the script's folder is on sys.path when run
from machine import describe
from measure import count_flops, interleaved, matmul_peak, spread

from beholder.scoring import Scorer
from beholder.testing import SIZES, make_image

PATHS = ("transformers", "fast", "fast-fused", "full-fused", "naive-full", "fast-compiled")


def build(size: str, tiles: int, device: torch.device, dtype: torch.dtype, compile_mode: str | None):
    """(transformers' model, beholder's fused copy, a copy whose vision tower is compiled or None) on `device` in
    `dtype`."""
    model, fused = build_pair(size, tiles, device, dtype)
    compiled = None
    if compile_mode:
        compiled = copy.deepcopy(model)
        tower = compiled.hf_model.model.vision_tower
        compiled.hf_model.model.vision_tower = torch.compile(tower, mode=compile_mode, dynamic=False)
    return model, fused, compiled


def sweep(args, device: torch.device, dtype: torch.dtype, sync, peak: float) -> list[dict]:
    rows = []
    for tiles in args.tiles:
        model, fused, compiled = build(args.size, tiles, device, dtype,
                                       args.compile_mode if "fast-compiled" in args.paths else None)
        side = model.config.preprocess.image_size
        for batch in args.batches:
            images = batch * args.batches_per_run
            prepared = [Scorer(model).prepare(make_image(side * tiles, side, seed=i)) for i in range(images)]
            views = prepared[0].visual.pixels.shape[0]
            functions = path_functions(model, fused, prepared, batch)
            if compiled is not None:  # compiled for this batch's shapes in its warm-up run (not timed)
                functions["fast-compiled"] = path_functions(compiled, fused, prepared, batch)["fast"]
            paths = {name: functions[name] for name in args.paths}
            try:
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                flops = {name: count_flops(run)[0] / images for name, run in paths.items()}  # the warm-up runs
                times = interleaved(paths, args.repeats, sync, warm_up=False)
            except torch.OutOfMemoryError:
                rows.append({"views": views, "batch": batch, "out_of_memory": True})
                print(f"| {views} | {batch} | out of GPU memory: larger batches skipped |  |  |  |")
                torch.cuda.empty_cache()
                break
            memory = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
            for name, seconds in times.items():
                rate = flops[name] * images / statistics.median(seconds)
                rows.append({"views": views, "batch": batch, "path": name, "images": images, "seconds": seconds,
                             "flops_per_image": flops[name], "peak_memory_gib": memory})
                print(f"| {views} | {batch} | {name} | {images / statistics.median(seconds):.2f} | "
                      f"{spread(seconds)} | {rate / 1e12:.1f} | {rate / peak:.0%} | "
                      f"{'-' if memory is None else f'{memory:.1f}'} |", flush=True)
        del model, fused, compiled
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="internvl2-1b", help="backbone shape")
    parser.add_argument("--tiles", type=int, nargs="+", default=[1, 12],
                        help="448-tiles per image before the thumbnail: 1 -> 1 view, 12 -> 13 views")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16, 64], help="batch sizes swept")
    parser.add_argument("--batches-per-run", type=int, default=2, help="batches in one timed run of a path")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved timed rounds per (views, batch)")
    parser.add_argument("--paths", nargs="+", choices=PATHS, default=["transformers", "fast", "fast-fused",
                                                                     "full-fused"])
    parser.add_argument("--compile-mode", default="max-autotune",
                        help="torch.compile mode of the fast-compiled path (reduce-overhead: CUDA graphs)")
    parser.add_argument("--dtype", choices=("bfloat16", "float16"), default="bfloat16")
    parser.add_argument("--device", default="cuda", help="cuda (cpu only for a smoke run of the script)")
    parser.add_argument("--peak-sizes", type=int, nargs="+", default=[4096, 8192],
                        help="square torch.mm sizes whose best rate is the measured matmul peak")
    parser.add_argument("--json", help="write every measurement to this file")
    args = parser.parse_args()

    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench_gpu.py measures a GPU and torch sees none (--device cpu runs it as a smoke test)")
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    torch.backends.cuda.matmul.allow_tf32 = False  # bf16 paths; fp32 matmuls (heads) stay fp32 as in the reference
    print(f"machine: {describe()}")
    peak, peak_n = matmul_peak(device, dtype, tuple(args.peak_sizes), sync=sync)
    print(f"measured {args.dtype} matmul peak: {peak / 1e12:.0f} TFLOP/s (torch.mm {peak_n}^2)\n")
    print("| views | batch | path | images/s | seconds per run: median [min-max] | TFLOP/s | of peak | peak GiB |")
    print("|---|---|---|---|---|---|---|---|")
    rows = sweep(args, device, dtype, sync, peak)
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"machine": describe(), "args": vars(args), "peak_flops": peak, "rows": rows}, out, indent=1)


if __name__ == "__main__":
    main()
