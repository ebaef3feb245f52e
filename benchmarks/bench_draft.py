"""Draft JPEG decoding (`--draft-decode`): what it saves per image, and how far it moves scores.

The default decodes every JPEG at full size, as the released models' reference code does. The opt-in decodes
at the smallest DCT scale (1/2, 1/4, 1/8) still covering what preprocessing needs. On large synthetic camera-like
photos (default 12 MP, 4000x3000, JPEG quality 92, with EXIF, read from disk), for each preprocessing mode of
the presets at the released models' 448-px geometry (tiles: HumanAesExpert, up to 12 + thumbnail; squash:
ArtiMuse / ERNIE-Image-Aes; pad: Q-Align style) it measures:

  prepare time   Scorer.prepare (read, decode, views, normalisation) per image, full vs draft, interleaved
                 (full, draft, full, draft ...) over every photo and repeat; median and interquartile range
  |delta pixels| the normalised views of the two paths compared, in 0..255 units: max and mean
  |delta score|  the model's score of the two paths (a random "tiny-448" model with 448-px tiles: real input
                 geometry, tiny widths), on its native scale: max and mean, beside the spread (std) of the
                 scores over the photos

    python benchmarks/bench_draft.py --photos 8 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from machine import cpu_name  # sibling module: the script's folder is on sys.path when run
from PIL import Image, ImageDraw
from transformers.utils import logging as transformers_logging

import beholder
from beholder.model.folder import save_model
from beholder.scoring import Scorer
from beholder.testing import build_model, make_image

MODES = {"tiles": "humanaesexpert", "squash": "artimuse", "pad": "qalign"}  # mode -> preset using it


def camera_photo(path: Path, size: tuple[int, int], seed: int) -> None:
    """Smooth gradients and sensor-like noise, plus hard-edged shapes and fine stripes: the detail a DCT-scaled
    decode loses first. Saved as a camera would: JPEG q92 with 4:2:0 chroma and an EXIF block."""
    rng = np.random.default_rng(seed)
    image = make_image(*size, seed=seed)
    draw = ImageDraw.Draw(image)
    width, height = size
    for _ in range(40):
        x, y = rng.integers(0, width), rng.integers(0, height)
        w, h = rng.integers(width // 40, width // 6), rng.integers(height // 40, height // 6)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape((x, y, x + w, y + h), fill=colour, outline=(0, 0, 0), width=int(rng.integers(1, 6)))
    for i in range(0, width, 6):  # a band of 3-pixel stripes
        draw.line((i, height // 2, i, height // 2 + height // 10), fill=(250, 250, 250), width=3)
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "beholder", "synthetic camera"
    image.save(path, "JPEG", quality=92, subsampling=2, exif=exif)


def interleaved_times(full: Scorer, draft: Scorer, paths: list[str], repeats: int) -> dict[str, list[float]]:
    """Seconds per Scorer.prepare call of each path, alternating the two on every photo of every repeat."""
    times: dict[str, list[float]] = {"full": [], "draft": []}
    for repeat in range(repeats):
        for path in paths:
            order = (("full", full), ("draft", draft)) if repeat % 2 == 0 else (("draft", draft), ("full", full))
            for name, scorer in order:
                start = time.perf_counter()
                scorer.prepare(path)
                times[name].append(time.perf_counter() - start)
    return times


def quartiles(values: list[float]) -> tuple[float, float, float]:
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    return float(q1), float(median), float(q3)


def compare(mode: str, paths: list[str], repeats: int, folder: Path) -> dict[str, float]:
    """The same model folder loaded twice, as a user would: by default and with decode={"draft": True}."""
    model = build_model("internvl", seed=0, preset_name=MODES[mode], size="tiny-448", max_tiles=12)
    save_model(model, folder)
    full, draft = beholder.load(folder), beholder.load(folder, decode={"draft": True})
    times = interleaved_times(full, draft, paths, repeats)
    full_items, draft_items = [full.prepare(p) for p in paths], [draft.prepare(p) for p in paths]
    std = np.asarray(model.config.preprocess.std, np.float32).reshape(1, 3, 1, 1) * 255
    pixel_deltas = [np.abs((a.visual.pixels - b.visual.pixels) * std) for a, b in zip(full_items, draft_items)]
    scores_full = [r.score for r in full.score_prepared(full_items, full=False)]
    scores_draft = [r.score for r in draft.score_prepared(draft_items, full=False)]
    score_deltas = np.abs(np.subtract(scores_full, scores_draft))
    ratios = [f / d for f, d in zip(times["full"], times["draft"])]
    return {
        "tiles": full_items[0].visual.pixels.shape[0],
        "full": quartiles(times["full"]),
        "draft": quartiles(times["draft"]),
        "ratio": quartiles(ratios),
        "pixel_max": max(float(d.max()) for d in pixel_deltas),
        "pixel_mean": float(np.mean([d.mean() for d in pixel_deltas])),
        "score_max": float(score_deltas.max()),
        "score_mean": float(score_deltas.mean()),
        "score_spread": float(np.std(scores_full)),
        "scale": model.config.scale,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=8, help="distinct photos")
    parser.add_argument("--size", default="4000x3000", help="photo width x height")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes over every photo, per path")
    parser.add_argument("--modes", nargs="+", choices=sorted(MODES), default=list(MODES))
    args = parser.parse_args()
    size = tuple(int(x) for x in args.size.split("x"))
    torch.set_grad_enabled(False)
    transformers_logging.disable_progress_bar()
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores | torch {torch.__version__}, {torch.get_num_threads()} "
          f"threads | load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"inputs: {args.photos} synthetic camera photos {size[0]}x{size[1]}, JPEG q92 4:2:0, from disk; "
          f"{args.repeats} interleaved repeats; model: random tiny-448 (448-px tiles, tiny widths), fast scoring")
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i in range(args.photos):
            path = Path(tmp) / f"IMG_{i:04d}.jpg"
            camera_photo(path, size, seed=i)
            paths.append(str(path))
        print(f"\n{'mode':<7} {'views':>5}  {'full ms/img':>19}  {'draft ms/img':>19}  {'full/draft':>17}  "
              f"{'|d pixel| max/mean':>18}  {'|d score| max/mean':>19}  {'score std':>9}  scale")
        for mode in args.modes:
            r = compare(mode, paths, args.repeats, Path(tmp) / f"model-{mode}")
            lo, hi = r["scale"]

            def ms(q):
                return f"{q[1] * 1e3:7.1f} [{q[0] * 1e3:.0f}-{q[2] * 1e3:.0f}]"

            print(f"{mode:<7} {r['tiles']:>5}  {ms(r['full']):>19}  {ms(r['draft']):>19}  "
                  f"{r['ratio'][1]:6.2f}x [{r['ratio'][0]:.2f}-{r['ratio'][2]:.2f}]  "
                  f"{r['pixel_max']:8.1f} / {r['pixel_mean']:5.2f}  "
                  f"{r['score_max']:.2e} / {r['score_mean']:.2e}  {r['score_spread']:9.2e}  {lo:g}-{hi:g}")
    print(f"\nload average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("ms/img: median [interquartile range] of Scorer.prepare; full/draft: median of per-call ratios;\n"
          "|d pixel|: views of the two paths in 0..255 units; score std: spread of the full-decode scores over the\n"
          "photos, the scale |d score| is to be read against (random weights: a trained model's sensitivity differs)")


if __name__ == "__main__":
    main()
