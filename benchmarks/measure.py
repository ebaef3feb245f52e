"""Measuring helpers the speed benchmarks share: interleaved timing, FLOP counts, the measured matmul peak."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import TypeVar

import torch
from torch.utils.flop_counter import FlopCounterMode, mm_flop, sdpa_flop_count

T = TypeVar("T")


def interleaved(
    paths: dict[str, Callable[[], object]],
    repeats: int,
    sync: Callable[[], None] = lambda: None,
    warm_up: bool = True,
) -> dict[str, list[float]]:
    """Seconds per run of each path: one untimed warm-up run each (unless the caller ran them), then `repeats`
    rounds running every path once, in order in even rounds and reversed in odd ones (A B C, C B A, ...), so a
    change in the machine's load falls on all paths alike. `sync` waits for queued device work
    (torch.cuda.synchronize on a GPU)."""
    for run in paths.values() if warm_up else ():
        run()
    sync()
    times: dict[str, list[float]] = {name: [] for name in paths}
    for round_ in range(repeats):
        for name in list(paths) if round_ % 2 == 0 else list(reversed(paths)):
            sync()
            start = time.perf_counter()
            paths[name]()
            sync()
            times[name].append(time.perf_counter() - start)
    return times


def spread(values: list[float], unit: str = "s", digits: int = 3) -> str:
    """"median [min-max] unit"."""
    return f"{statistics.median(values):.{digits}f} [{min(values):.{digits}f}-{max(values):.{digits}f}] {unit}"


def paired_ratios(times: dict[str, list[float]], slower: str, faster: str) -> list[float]:
    """slower / faster, round by round (each pair ran back to back)."""
    return [a / b for a, b in zip(times[slower], times[faster])]


def _onednn_linear_flops(x_shape, *args, out_shape=None, **kwargs) -> int:
    """mkldnn::_linear_pointwise(X, W, B, attr, ...) and its .binary(X, other, W, B, attr): X (..., in) @ W (out, in)^T."""
    weight_shape = args[0] if isinstance(args[2], str) else args[1]
    rows = 1
    for size in x_shape[:-1]:
        rows *= size
    return mm_flop((rows, x_shape[-1]), (weight_shape[1], weight_shape[0]))


def _cpu_attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


# Kernels FlopCounterMode has no formula for: CPU flash attention (what SDPA runs on CPU) and oneDNN's fused linear
# (what beholder's fused layers run on CPU). Without them a CPU count misses every attention and every fused matmul.
_CPU_FORMULAS = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention_flops,
    torch.ops.mkldnn._linear_pointwise: _onednn_linear_flops,
}


def count_flops(fn: Callable[[], T]) -> tuple[int, T]:
    """(FLOPs, fn's result): 2 FLOPs per multiply-add of every matmul, convolution and attention `fn` runs;
    attention counted in full (L x L, as FlopCounterMode counts it), norms, activations and softmax not at all."""
    with FlopCounterMode(display=False, custom_mapping=_CPU_FORMULAS) as counter:
        result = fn()
    return counter.get_total_flops(), result


def matmul_peak(device: torch.device, dtype: torch.dtype, sizes: tuple[int, ...], repeats: int = 5,
                sync: Callable[[], None] = lambda: None) -> tuple[float, int]:
    """(FLOP/s, n): the best median rate of torch.mm on n x n matrices over `sizes`, the measured matmul peak
    every model figure is set against."""
    best = (0.0, sizes[0])
    for n in sizes:
        a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
        seconds = interleaved({"mm": lambda: torch.mm(a, b)}, repeats, sync)["mm"]
        best = max(best, (2 * n**3 / statistics.median(seconds), n))
    return best
