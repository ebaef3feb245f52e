"""Model forward speed: beholder's fused forward against plain transformers, and full scoring against the naive loop.

Every path runs on one random-weight model (InternVL2-1B's geometry by default; speed depends on shapes, not
weights), in one process, on the same prepared images and prompt ids; decoding is excluded (bench_decode.py):
  transformers  InternVLForConditionalGeneration(input_ids, pixel_values, logits_to_keep=1), the level score read
                from the last position's logits: what a user of plain transformers runs
  fast          beholder's one-pass score (Scorer.score_prepared(full=False)) on transformers' layers
                (beholder.load(..., fused=False))
  fast-fused    the same on beholder's fused forward (beholder.load's default)
  naive-full    the official-style full loop (beholder.testing.naive_full): one image at a time, two complete passes
                with whole-vocabulary logits
  full-fused    beholder's full scoring (Scorer.score_prepared(full=True)): the prefix once, both questions in one
                pass on its KV cache, fused forward
and, on request, a bound rather than a path:
  attention-free  fast-fused with every attention replaced by a stand-in that returns its queries (the right shape,
                nearly free; scores meaningless): the time fast-fused would take if attention cost nothing. Its rate is
                fast-fused's FLOPs (attention included) over that time, the most the rest of the forward allows
The paths run interleaved (A B C ..., then ... C B A) after one warm-up run each, which is also where their FLOPs
are counted (every matmul, convolution and attention; beholder/benchmarks/measure.py). The bf16 (or fp32) matmul
peak is measured in the same run (best torch.mm rate over a few sizes, before and after), and every path's rate is
given as a fraction of it. It prints the machine (CPU model, ISA, threads) and the load average before and after,
and checks that the paths agree on the scores.

    python benchmarks/bench_forward.py --tiles 1 --images 2 --repeats 5
    python benchmarks/bench_forward.py --tiles 13 --images 1 --repeats 3 --paths transformers fast fast-fused
    python benchmarks/bench_forward.py --paths transformers fast-fused attention-free
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
from contextlib import contextmanager

import torch
from machine import describe, load_average  # sibling modules: the script's folder is on sys.path when run
from measure import count_flops, interleaved, matmul_peak, paired_ratios, spread

from transformers import AttentionInterface

from beholder.model.fused import fuse
from beholder.scoring import Scorer
from beholder.testing import SIZES, build_model, make_image, naive_full

PATHS = ("transformers", "fast", "fast-fused", "naive-full", "full-fused")
BOUNDS = {"attention-free": "fast-fused"}  # bound -> the path whose work (FLOPs) it stands for
RATIOS = (("transformers", "fast-fused"), ("transformers", "fast"), ("fast", "fast-fused"),
          ("naive-full", "full-fused"))  # (baseline, path): baseline time / path time


def build_pair(size: str, tiles: int, device: torch.device, dtype: torch.dtype):
    """(transformers' model, beholder's fused copy of the same weights) of `size`, on `device` in `dtype`: moved,
    then fused (a fused model stays where it was fused)."""
    model = build_model("internvl", seed=0, size=size, max_tiles=tiles)
    model.hf_model.to(device=device, dtype=dtype)
    fused = copy.deepcopy(model)
    fused.fused = fuse(fused.hf_model)
    return model, fused


def _queries_as_output(module, query, key, value, attention_mask, **kwargs):
    """An attention function that attends to nothing: its queries, (B, heads, S, d) -> (B, S, heads, d), as
    transformers' attention functions return their output."""
    return query.transpose(1, 2), None


AttentionInterface.register("skipped", _queries_as_output)


@contextmanager
def attention_skipped(hf_model):
    """Every attention of `hf_model` (vision tower and language model) swapped for `_queries_as_output` meanwhile."""
    implementation = hf_model.config._attn_implementation
    hf_model.set_attn_implementation("skipped")
    try:
        yield
    finally:
        hf_model.set_attn_implementation(implementation)


def path_functions(model, fused, prepared, batch_size: int) -> dict:
    """name -> a function scoring every prepared image, returning its scores by head ({"lm": [...], "score": [...]};
    transformers gives only the level head's), so the paths can be checked against one another."""
    unfused, ours = Scorer(model), Scorer(fused)
    level = model.heads.level
    ids = model.prefix_ids(prepared[0].visual.n_tokens) + model.question_ids

    @torch.inference_mode()
    def transformers() -> dict[str, list[float]]:
        scores = []
        for start in range(0, len(prepared), batch_size):
            chunk = [item.visual for item in prepared[start : start + batch_size]]
            _, images = model._batch_inputs(chunk)
            out = model.hf_model(input_ids=model._ids(ids, len(chunk)), **images, logits_to_keep=1)
            scores += level.normalise(level.expectation(out.logits[:, -1, level.token_ids].float())).tolist()
        return {"lm": scores}

    def scores(scorer: Scorer, full: bool) -> dict[str, list[float]]:
        results = scorer.score_prepared(prepared, full=full, batch_size=batch_size)
        return {"score": [r.score for r in results], "lm": [r.heads["lm"] for r in results]}

    def attention_free() -> dict[str, list[float]]:
        with attention_skipped(fused.hf_model):
            scores(ours, False)
        return {}  # its scores mean nothing

    return {
        "transformers": transformers,
        "fast": lambda: scores(unfused, False),
        "fast-fused": lambda: scores(ours, False),
        "naive-full": lambda: {"score": [naive_full(model, item.visual)["metavoter"].item() for item in prepared]},
        "full-fused": lambda: scores(ours, True),
        "attention-free": attention_free,
    }


def profile(fn, rows: int = 12) -> None:
    """Where the time of one run goes: self CPU time by kind of kernel, then the top operators."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        fn()
    events = prof.key_averages(group_by_input_shape=True)
    kinds = {"attention": ("attention",), "matmul": ("linear_pointwise", "addmm", "aten::mm", "bmm", "convolution")}
    total = sum(e.self_cpu_time_total for e in events)
    shares = {kind: sum(e.self_cpu_time_total for e in events if any(k in e.key for k in keys))
              for kind, keys in kinds.items()}
    shares["other (norms, activations, copies, ...)"] = total - sum(shares.values())
    print("  " + ", ".join(f"{kind} {t / total:.0%}" for kind, t in shares.items()) + f" of {total / 1e6:.3f} s")
    print(events.table(sort_by="self_cpu_time_total", row_limit=rows, max_name_column_width=45,
                       max_shapes_column_width=70))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="internvl2-1b", help="backbone shape")
    parser.add_argument("--tiles", type=int, default=1, help="448-tiles per image before the thumbnail (1 or 12 "
                        "-> 13 views are the usual figures)")
    parser.add_argument("--images", type=int, default=2, help="images per timed run of each path")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--dtype", choices=("bfloat16", "float32"), default="bfloat16")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved timed rounds")
    parser.add_argument("--paths", nargs="+", choices=PATHS + tuple(BOUNDS), default=list(PATHS))
    parser.add_argument("--peak-sizes", type=int, nargs="+", default=[2048, 3072, 4096],
                        help="square torch.mm sizes whose best rate is the measured matmul peak")
    parser.add_argument("--profile", action="store_true", help="also profile one run of transformers / fast-fused")
    parser.add_argument("--json", help="write every measurement to this file")
    args = parser.parse_args()

    dtype = getattr(torch, args.dtype)
    print(f"machine: {describe()}\nload average before: {load_average()}")
    model, fused = build_pair(args.size, args.tiles, torch.device("cpu"), dtype)
    side = model.config.preprocess.image_size
    prepared = [Scorer(model).prepare(make_image(side * args.tiles, side, seed=i)) for i in range(args.images)]
    views = prepared[0].visual.pixels.shape[0]
    prefix = len(model.prefix_ids(prepared[0].visual.n_tokens))
    print(f"model: random {args.size} ({sum(p.numel() for p in model.hf_model.parameters()) / 1e6:.0f}M params), "
          f"{args.dtype}; fused layers {fused.fused}\ninputs: {args.images} images x {views} views of {side} px, "
          f"prefix {prefix} tokens; batch {args.batch_size}; {args.repeats} interleaved rounds")

    functions = path_functions(model, fused, prepared, args.batch_size)
    paths = {name: functions[name] for name in args.paths}
    flops, scores = {}, {}
    for name, run in paths.items():  # the warm-up run of each path, counted
        total, scores[name] = count_flops(run)
        flops[name] = total / args.images
    for bound, path in BOUNDS.items():
        if bound in paths:  # the work it stands for, not the little it does (counted already if that path runs)
            flops[bound] = flops[path] if path in flops else count_flops(functions[path])[0] / args.images
    peak_before = matmul_peak(torch.device("cpu"), dtype, tuple(args.peak_sizes))
    times = interleaved(paths, args.repeats, warm_up=False)
    peak_after = matmul_peak(torch.device("cpu"), dtype, tuple(args.peak_sizes))
    peak, peak_n = max(peak_before, peak_after)
    print(f"load average after: {load_average()}")
    print(f"measured {args.dtype} matmul peak: {peak / 1e12:.2f} TFLOP/s (torch.mm {peak_n}^2; before "
          f"{peak_before[0] / 1e12:.2f}, after {peak_after[0] / 1e12:.2f})\n")

    print("| path | seconds per run: median [min-max] | images/s | GFLOP per image | TFLOP/s | of peak |")
    print("|---|---|---|---|---|---|")
    for name, seconds in times.items():
        rate = flops[name] * args.images / statistics.median(seconds)
        print(f"| {name} | {spread(seconds)} | {args.images / statistics.median(seconds):.3f} | "
              f"{flops[name] / 1e9:,.4g} | {rate / 1e12:.2f} | {rate / peak:.0%} |")
    ratios = {f"{base} / {path}": paired_ratios(times, base, path) for base, path in RATIOS
              if base in times and path in times}
    for label, values in ratios.items():
        print(f"speed-up {label}: x{spread(values, unit='', digits=2)} (per round)")
    for a, b in (("fast", "transformers"), ("fast-fused", "transformers"), ("full-fused", "naive-full")):
        for head in set(scores.get(a, {})) & set(scores.get(b, {})):
            difference = max(abs(x - y) for x, y in zip(scores[a][head], scores[b][head]))
            print(f"max |{a} - {b}| {head}: {difference:.2e}")

    if args.profile:
        for name in ("transformers", "fast-fused"):
            print(f"\nprofile of one {name} run:")
            profile(functions[name])
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"machine": describe(), "args": vars(args), "peak_flops": [peak_before[0], peak_after[0]],
                       "flops_per_image": flops, "seconds": times, "ratios": ratios}, out, indent=1)


if __name__ == "__main__":
    main()
