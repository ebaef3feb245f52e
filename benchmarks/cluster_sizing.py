"""GPU-cluster sizing for `beholder score --engine ray`, from FLOPs counted per image and decode time measured here.

Measured on this machine:
  FLOPs per image   measure.count_flops (torch's FlopCounterMode, plus the CPU flash-attention kernel it has no
                    formula for) around AestheticModel.score_full / score_fast for one image (batch 1), on
                    random-weight models. The InternVL2-1B geometry is counted on the whole model.
                    The 8B geometries (32 GB in float32) are counted on models of the same widths with 1 and 2
                    layers per tower and extrapolated in depth: every layer of a tower has the same shapes, so
                    FLOPs = a + b * vision_layers + c * text_layers exactly; the 1B model checks this (its direct
                    and extrapolated counts are printed side by side). Every matmul, convolution and attention is
                    counted; elementwise work (norms, activations, softmax) is not.
  decode CPU time   what a decode task of `--engine ray` does per photo (file read, JPEG decode, tiling, the views
                    as uint8 bytes; the normalising runs on the GPU), CPU seconds of this process on one thread,
                    reference-exact full-size decoding (and with the opt-in draft decoding).
Derived (no GPU is measured here):
  images/s per GPU  = MFU x peak / FLOPs per image, at the MFU and peak given (defaults: 40% of 989 TFLOP/s, the
                      dense bf16 peak of an H100 SXM or H200)
  decode CPUs/GPU   = images/s per GPU x decode CPU seconds per image
  GPU-hours / 100M  = 1e8 / images/s per GPU / 3600
  pixels per GPU    = images/s per GPU x tiles x 3 x 448 x 448 bytes (uint8 views between the stages)

    python benchmarks/cluster_sizing.py
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from machine import cpu_name  # sibling modules: the script's folder is on sys.path when run
from measure import count_flops

from beholder.images import DecodeConfig
from beholder.preprocess import SQUARE_VIEWS, PreprocessConfig, decode_image, stack_views
from beholder.scoring import Scorer
from beholder.testing import SIZES, build_model, make_image

# Model geometries (testing.SIZES form) and the preset whose heads, prompts and preprocessing they run with.
QWEN25_7B = dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                 num_key_value_heads=4)
MODELS = {
    "HumanAesExpert-1B (InternVL2-1B)": ("internvl2-1b", "humanaesexpert"),
    "HumanAesExpert-8B (InternVL2-8B)": ("internvl2-8b", "humanaesexpert"),
    # InternVL3-8B = InternViT-300M (as above) + Qwen2.5-7B; one 448 squash, token-as-score one pass
    "ERNIE-Image-Aes (InternVL3-8B)": (
        dict(SIZES["internvl2-8b"], text=QWEN25_7B, vocab_size=151674), "artimuse"),
}
PHOTOS = {1: (448, 448), 13: (1024, 768)}  # tiles -> a photo that gives that many 448 tiles (4:3: 12 + thumbnail)
PHOTO_SIZES = ((1024, 768), (3264, 2448))  # decode timings: a web photo, an 8 MP 4:3 camera photo


def shape_of(size: str | dict) -> dict:
    return SIZES[size] if isinstance(size, str) else size


def with_depth(shape: dict, vision: int, text: int) -> dict:
    return dict(shape, vision=dict(shape["vision"], num_hidden_layers=vision),
                text=dict(shape["text"], num_hidden_layers=text))


def count(shape: dict, preset: str, modes: list[tuple[int, bool]]) -> dict[tuple[int, bool], int]:
    """FLOPs of one image at each (tiles, full) on a random model of `shape`."""
    model = build_model("internvl", size=shape, preset_name=preset, max_tiles=12)
    scorer = Scorer(model)
    flops = {}
    for tiles, full in modes:
        visual = scorer.prepare(make_image(*PHOTOS[tiles])).visual
        assert visual.pixels.shape[0] == tiles, visual.pixels.shape
        flops[tiles, full], _ = count_flops(lambda: (model.score_full if full else model.score_fast)([visual]))
    return flops


def extrapolated(shape: dict, preset: str, modes: list[tuple[int, bool]]) -> dict[tuple[int, bool], int]:
    f11, f21, f12 = (count(with_depth(shape, v, t), preset, modes) for v, t in ((1, 1), (2, 1), (1, 2)))
    layers_v, layers_t = shape["vision"]["num_hidden_layers"], shape["text"]["num_hidden_layers"]
    out = {}
    for key in modes:
        per_vision, per_text = f21[key] - f11[key], f12[key] - f11[key]
        out[key] = f11[key] - per_vision - per_text + per_vision * layers_v + per_text * layers_t
    return out


def decode_seconds(photo: tuple[int, int], tiles: int, draft: bool, n: int) -> float:
    """CPU seconds per photo of what a Ray decode task does for InternVL (read, decode, tile or squash, the uint8
    views as bytes: Scorer.prepare(raw=True) and the stage's encoding) with 448-pixel views: 12 tiles + thumbnail
    (HumanAesExpert) or one squash (ArtiMuse / ERNIE-Image-Aes)."""
    config = PreprocessConfig(mode="tiles" if tiles > 1 else "squash", max_tiles=12, decode=DecodeConfig(draft=draft))

    def prepare(path: Path):
        views = stack_views(SQUARE_VIEWS[config.mode](config, decode_image(path, config)))
        return views, np.ascontiguousarray(views).tobytes()

    with tempfile.TemporaryDirectory() as tmp:
        paths = [Path(tmp, f"{i}.jpg") for i in range(n)]
        for i, path in enumerate(paths):
            make_image(*photo, seed=i).save(path, "JPEG", quality=90)
        prepare(paths[0])  # warm-up
        start = time.process_time()
        for path in paths:
            views, _ = prepare(path)
        seconds = (time.process_time() - start) / n
    assert views.shape == (tiles, 3, 448, 448), views.shape
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak per GPU (H100 SXM, H200)")
    parser.add_argument("--mfu", type=float, default=0.4, help="assumed model FLOPs utilisation")
    parser.add_argument("--photos", type=int, default=16, help="photos per decode timing")
    parser.add_argument("--images", type=float, default=1e8, help="images to score, for the GPU-hours column")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores | torch {torch.__version__}, 1 thread")
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    decode = {}
    for photo in PHOTO_SIZES:
        for tiles in (1, 13):
            for draft in (False, True):
                decode[photo, tiles, draft] = decode_seconds(photo, tiles, draft, args.photos)
                print(f"decode {photo[0]}x{photo[1]} JPEG -> {tiles:>2} tiles, draft {draft!s:<5}: "
                      f"{1000 * decode[photo, tiles, draft]:6.1f} ms CPU per photo")

    rows = []
    for name, (size, preset) in MODELS.items():
        shape = shape_of(size)
        modes = [(1, False)] if preset == "artimuse" else [(t, full) for t in (1, 13) for full in (True, False)]
        if size == "internvl2-1b":
            flops = count(shape, preset, modes)
            check = extrapolated(shape, preset, modes)
            for key in modes:
                print(f"{name} {key}: direct {flops[key]:.6e}, depth-extrapolated {check[key]:.6e} FLOPs")
        else:
            flops = extrapolated(shape, preset, modes)
        rows += [(name, tiles, full, flops[tiles, full]) for tiles, full in modes]

    peak = args.peak_tflops * 1e12
    print(f"\nAssumed: {args.mfu:.0%} MFU of {args.peak_tflops:g} TFLOP/s; {args.images:.0e} images; decode CPUs for "
          "full-size (reference-exact) decoding of 1024x768 web photos / 8 MP camera photos")
    print("| model | tiles | scoring | GFLOP/image (counted) | images/s per GPU | GPU-hours | decode CPUs per GPU "
          "| uint8 views between stages, MB/s per GPU |")
    print("|---|---|---|---|---|---|---|---|")
    for name, tiles, full, flops in rows:
        rate = args.mfu * peak / flops
        cpus = " / ".join(f"{rate * decode[photo, tiles, False]:.1f}" for photo in PHOTO_SIZES)
        pixels = rate * tiles * 3 * 448 * 448 / 1e6
        print(f"| {name} | {tiles} | {'full' if full else 'fast'} | {flops / 1e9:,.0f} | {rate:,.1f} "
              f"| {args.images / rate / 3600:,.0f} | {cpus} | {pixels:,.0f} |")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
