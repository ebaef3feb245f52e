"""What the benchmarks print about the machine they ran on (figures without the machine named are not kept)."""

from __future__ import annotations

import os
import platform

# /proc/cpuinfo flags that decide matmul speed, as benchmarks name them
_ISA = {"avx512f": "AVX-512", "avx512_bf16": "AVX512-BF16", "amx_bf16": "AMX-BF16", "avx2": "AVX2"}


def _cpuinfo(field: str) -> str | None:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith(field):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_name() -> str:
    return _cpuinfo("model name") or platform.processor() or "unknown CPU"


def isa() -> str:
    """The vector / matrix extensions of the CPU that matter for bf16 matmuls, e.g. "AVX-512, AVX512-BF16, AMX-BF16"."""
    flags = set((_cpuinfo("flags") or "").split())
    found = [name for flag, name in _ISA.items() if flag in flags]
    if "AVX-512" in found and "AVX2" in found:
        found.remove("AVX2")  # implied
    return ", ".join(found) or "ISA unknown"


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def describe() -> str:
    """One line naming the machine: CPU model, ISA, cores, torch and its threads (and the GPU when there is one)."""
    import torch

    line = (f"{cpu_name()} ({isa()}), {os.cpu_count()} cores, torch {torch.__version__} with "
            f"{torch.get_num_threads()} threads")
    if torch.cuda.is_available():
        line += f"; GPU {torch.cuda.get_device_name()} (CUDA {torch.version.cuda})"
    return line
