"""Planted-signal benchmark for two-stage training: can a small model, trained from scratch on a CPU, recover
a hidden 12-dimension hierarchy from what it sees?

Each image is a drawn human figure whose 9 leaf dimensions are set by visible properties (PLANTED below);
the parents and the overall score follow a hidden non-linear hierarchy (`hierarchy`). Two labelled sources are
written the way real ones come: "portraits", overall scores only on a 1-10 scale, mixed with distractor
images (two people, a back view) that the single-face filter (OpenCV Haar) has to remove; and "studio", raw
annotations of 6-12 raters per image on a 0-10 scale, some images below the 9-rater minimum. The dataset is
built with `beholder data build`, a random "small" InternVL-shaped model is trained with `beholder train` for
each ablation row, and the exported folders are scored on the held-out split.

    python benchmarks/synthetic_hiaa.py --out /tmp/hiaa          # everything; prints the BENCHMARKS.md tables
"""

from __future__ import annotations

import argparse
import colorsys
import csv
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from machine import cpu_name  # sibling module: the script's folder is on sys.path when run
from PIL import Image, ImageDraw, ImageFilter

from beholder import metrics
from beholder.cli import main as beholder
from beholder.data import read_labels
from beholder.standard import DIMENSIONS, LEAVES

SIZE = 224  # rendered side in pixels; the model squashes to its 112-pixel tile, Haar detects at this size

# leaf -> the visible property that sets it (u = 0 .. 1 maps monotonically onto the property).
PLANTED = {
    "facial_brightness": "brightness (HSV value) of the skin",
    "facial_feature_clarity": "Gaussian blur of the eyes and mouth (sharp at 1)",
    "facial_skin_tone": "hue of the skin, red to yellow",
    "facial_structure": "left-right symmetry of the face outline (symmetric at 1)",
    "facial_contour_clarity": "Gaussian blur of the face's outline (sharp at 1)",
    "outfit": "saturation of the outfit colour (hue is random)",
    "body_shape": "torso width",
    "looks": "hair volume above the head",
    "environment": "background clutter: number of shapes behind the figure (none at 1)",
}
HEADS = ("regression", "lm", "expert", "metavoter")
ROWS = {  # ablation row -> the heads trained (the paper's Table 4)
    "regression": ["regression"],
    "+ LM": ["regression", "lm"],
    "+ Expert": ["regression", "lm", "expert"],
    "+ MetaVoter": ["regression", "lm", "expert", "metavoter"],
}
# Stage 1 as the paper: LoRA (r=8, alpha=32, dropout 0.05) on the language model. From scratch the vision tower
# and projector are random, so they train fully. The heads' MSE is weighted up (lambda = mu = 10) so that it is
# not drowned by the cross-entropy over the ~90 answer tokens of a 12-dimension row. Chosen on a validation
# slice of the training split of another seed's data, never on the test split (see BENCHMARKS.md).
TRAIN_CONFIG = {
    "stage1": {"epochs": 6, "batch_size": 32, "micro_batch_size": 32, "lr": 2e-3, "weight_decay": 0.01,
               "warmup": 0.05, "vision": "full", "projector": "full", "language": "lora",
               "reg_weight": 10.0, "expert_weight": 10.0},
    "stage2": {"epochs": 10, "batch_size": 64, "lr": 1e-2},
    "eval_batch_size": 64,
    "log_every": 50,
}


def _smooth(x: float, sharpness: float) -> float:
    """A logistic S-curve through (0.5, 0.5) rescaled to map [0, 1] onto [0, 1]."""
    lo, hi = (1 / (1 + math.exp(sharpness / 2 * s)) for s in (1, -1))
    return (1 / (1 + math.exp(-sharpness * (x - 0.5))) - lo) / (hi - lo)


def hierarchy(u: dict[str, float]) -> dict[str, float]:
    """The hidden hierarchy: parents and overall are non-linear functions of their children."""
    face = [u[k] for k in LEAVES[:5]]
    facial = _smooth(0.3 * face[0] + 0.2 * face[1] + 0.15 * face[2] + 0.2 * face[3] + 0.15 * face[4], 6.0)
    facial = 0.8 * facial + 0.2 * min(face)  # one bad facial dimension drags the face down
    appearance = (0.45 * u["outfit"] + 0.35 * u["body_shape"] + 0.2 * u["looks"]) ** 0.7
    interaction = 0.1 * (facial * appearance - 0.3)  # a good face and a good appearance lift each other
    overall = _smooth(0.45 * facial + 0.35 * appearance + 0.2 * u["environment"] + interaction, 5.0)
    scores = dict(u, facial_aesthetic=facial, general_appearance_aesthetic=appearance, overall=overall)
    return {k: float(min(1.0, max(0.0, scores[k]))) for k in DIMENSIONS}


def random_leaves(rng: np.random.Generator) -> dict[str, float]:
    """Independent uniform leaves: the standard wants its smallest dimensions decoupled."""
    return {key: float(v) for key, v in zip(LEAVES, rng.uniform(size=len(LEAVES)))}


def _hsv(h: float, s: float, v: float) -> tuple[int, int, int]:
    return tuple(round(255 * c) for c in colorsys.hsv_to_rgb(h % 1.0, s, v))


def render(u: dict[str, float], rng: np.random.Generator, layout: str = "single") -> Image.Image:
    """One image: "single" (the labelled figure), "pair" (two figures) or "back" (seen from behind: no face)."""
    k = SIZE / 112  # drawing units are 112ths of the image
    image = Image.new("RGB", (SIZE, SIZE), _hsv(rng.uniform(), rng.uniform(0.05, 0.25), rng.uniform(0.75, 0.95)))
    draw = ImageDraw.Draw(image)
    for _ in range(round(40 * (1 - u["environment"]))):
        x, y, r = *rng.uniform(0, SIZE, 2), rng.uniform(3, 9) * k
        colour = _hsv(rng.uniform(), rng.uniform(0.4, 1), rng.uniform(0.2, 1))
        shape = draw.ellipse if rng.uniform() < 0.5 else draw.rectangle
        shape([x - r, y - r * 0.7, x + r, y + r * 0.7], fill=colour)
    if layout == "pair":
        for cx in (32, 80):
            _figure(image, u, rng, cx + rng.uniform(-2, 2), k * 0.7, layout)
    else:
        _figure(image, u, rng, 56 + rng.uniform(-3, 3), k, layout)
    return image


def _figure(image: Image.Image, u: dict[str, float], rng: np.random.Generator, cx: float, k: float,
            layout: str) -> None:
    draw = ImageDraw.Draw(image)
    cx, top, bottom = cx * SIZE / 112, 62 * k + (SIZE - 112 * k), SIZE
    head_y = top - 24 * k
    half = (14 + 16 * u["body_shape"]) * k  # torso half-width at the hem
    draw.polygon([(cx - half * 0.8, top), (cx + half * 0.8, top), (cx + half, bottom), (cx - half, bottom)],
                 fill=_hsv(rng.uniform(), 0.08 + 0.87 * u["outfit"], 0.8))
    skin = _hsv(0.11 * u["facial_skin_tone"], 0.5, 0.35 + 0.6 * u["facial_brightness"])
    draw.rectangle([cx - 5 * k, head_y + 14 * k, cx + 5 * k, top + 2 * k], fill=skin)
    fw, fh, volume = 15 * k, 19 * k, (2 + 12 * u["looks"]) * k
    hair = _hsv(rng.uniform(0.02, 0.12), 0.6, rng.uniform(0.1, 0.3))
    if layout == "back":  # the hair covers the whole head
        draw.ellipse([cx - fw - 3 * k, head_y - fh - volume, cx + fw + 3 * k, head_y + fh], fill=hair)
        return
    draw.ellipse([cx - fw - 3 * k, head_y - fh - volume, cx + fw + 3 * k, head_y + fh * 0.3], fill=hair)
    face = Image.new("RGBA", image.size, (0, 0, 0, 0))
    fd = ImageDraw.Draw(face)
    right = fw * (1 - 0.5 * (1 - u["facial_structure"]))
    fd.pieslice([cx - fw, head_y - fh, cx + fw, head_y + fh], 90, 270, fill=skin + (255,))
    fd.pieslice([cx - right, head_y - fh, cx + right, head_y + fh], -90, 90, fill=skin + (255,))
    face = face.filter(ImageFilter.GaussianBlur((0.2 + 2.8 * (1 - u["facial_contour_clarity"])) * k))
    image.paste(face, (0, 0), face)
    features = Image.new("RGBA", image.size, (0, 0, 0, 0))
    fd = ImageDraw.Draw(features)
    for dx in (-6, 6):
        fd.ellipse([cx + (dx - 2.5) * k, head_y - 5 * k, cx + (dx + 2.5) * k, head_y - 1 * k], fill=(25, 20, 20, 255))
    fd.rectangle([cx - 5 * k, head_y + 8 * k, cx + 5 * k, head_y + 10 * k], fill=(120, 30, 40, 255))
    features = features.filter(ImageFilter.GaussianBlur((0.1 + 2.2 * (1 - u["facial_feature_clarity"])) * k))
    image.paste(features, (0, 0), features)


def write_sources(root: Path, n_portraits: int, n_studio: int, seed: int) -> Path:
    """Images, the two sources' label tables and the build config; returns the config's path."""
    rng = np.random.default_rng(seed)
    (root / "portraits").mkdir(parents=True, exist_ok=True)
    (root / "studio").mkdir(parents=True, exist_ok=True)
    with open(root / "portraits" / "labels.csv", "w", newline="") as f:
        table = csv.writer(f)
        table.writerow(["image", "score"])
        for i in range(n_portraits):
            u = random_leaves(rng)
            layout = rng.choice(["single", "pair", "back"], p=[0.9, 0.05, 0.05])
            name = f"p{i:05d}.png"
            render(u, rng, layout).save(root / "portraits" / name, compress_level=1)
            raw = 1 + 9 * hierarchy(u)["overall"] + rng.normal(0, 0.25) if layout == "single" else rng.uniform(1, 10)
            table.writerow([name, round(raw, 2)])
    raters = np.arange(40)
    bias = rng.normal(0, 0.4, len(raters))
    with open(root / "studio" / "ratings.csv", "w", newline="") as f:
        table = csv.writer(f)
        table.writerow(["image", "rater", *DIMENSIONS])
        for i in range(n_studio):
            u = random_leaves(rng)
            name = f"s{i:05d}.png"
            render(u, rng).save(root / "studio" / name, compress_level=1)
            truth = np.array([hierarchy(u)[k] for k in DIMENSIONS])
            count = rng.integers(6, 9) if rng.uniform() < 0.05 else rng.integers(9, 13)
            for r in rng.choice(raters, count, replace=False):
                rating = np.clip(10 * truth + bias[r] + rng.normal(0, 0.6, len(truth)), 0, 10)
                table.writerow([name, f"r{r:02d}", *np.round(rating, 1)])
    config = {
        "output": "dataset", "seed": seed, "test_fraction": 0.1, "min_raters": 9,
        "faces": {"detector": "haar", "options": {"min_neighbors": 5}, "workers": 2},
        "sources": [
            {"name": "portraits", "kind": "overall", "labels": "portraits/labels.csv", "single_face": True},
            {"name": "studio", "kind": "raters", "labels": "studio/ratings.csv", "scale": [0, 10]},
        ],
    }
    path = root / "build.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def base_model(folder: Path, seed: int) -> Path:
    """A random "small" InternVL-shaped model, one 112-pixel tile per image: every row's starting point."""
    from beholder.model.folder import save_model
    from beholder.testing import build_model

    return save_model(build_model("internvl", seed, size="small", max_tiles=1), folder)


def evaluate(model_folder: Path, test_labels: list, train_labels: list) -> dict:
    """Held-out SRCC/PLCC of the model's score (what `beholder.load(...).score` returns) and of each head on
    the overall label of every test image; MAE per dimension on the 12-dimension test images."""
    import beholder
    from beholder.train import predict_heads

    model = beholder.load(model_folder).model
    out = predict_heads(model, [label.image for label in test_labels], batch_size=64)
    overall = np.array([label.overall for label in test_labels])
    result = {
        "score": {"srcc": metrics.srcc(out["score"], overall), "plcc": metrics.plcc(out["score"], overall)},
        "score_head": "metavoter" if "metavoter" in out else model.config.heads.fast,
        "heads_srcc": {h: metrics.srcc(out[h], overall) for h in HEADS if h in out},
    }
    if "dimensions" in out:
        expert = np.array([label.is_expert for label in test_labels])
        truth = np.array([label.scores for label in test_labels if label.is_expert])
        mean = np.array([label.scores for label in train_labels if label.is_expert]).mean(axis=0)
        result["mae"] = {k: metrics.mae(out["dimensions"][expert, i], truth[:, i]) for i, k in enumerate(DIMENSIONS)}
        result["mae_train_mean"] = {k: metrics.mae(np.full(len(truth), mean[i]), truth[:, i])
                                    for i, k in enumerate(DIMENSIONS)}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="working folder (images, dataset, runs, results)")
    parser.add_argument("--portraits", type=int, default=3000, help="images of the overall-only source")
    parser.add_argument("--studio", type=int, default=3000, help="images of the 12-dimension (raters) source")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    args = parser.parse_args()
    timings, started = {}, time.perf_counter()

    def lap(name: str, since: float) -> float:
        timings[name] = round(time.perf_counter() - since, 1)
        print(f"[{name}: {timings[name]:.0f}s]", flush=True)
        return time.perf_counter()

    t = time.perf_counter()
    build_config = write_sources(args.out, args.portraits, args.studio, args.seed)
    t = lap("render images", t)
    beholder(["data", "build", str(build_config)])
    t = lap("data build", t)
    start = base_model(args.out / "base", args.seed)
    train_yaml = args.out / "train.yaml"
    train_yaml.write_text(yaml.safe_dump({"model": str(start), "train": str(args.out / "dataset/train.jsonl"),
                                          "seed": args.seed, **TRAIN_CONFIG}, sort_keys=False))
    train_labels = read_labels(args.out / "dataset/train_labels.jsonl")
    test_labels = read_labels(args.out / "dataset/test_labels.jsonl")
    results = {}
    for row in args.rows:
        run = args.out / "runs" / row.strip("+ ").replace(" ", "_").lower()
        beholder(["train", str(train_yaml), "-o", str(run), "--set", f"heads=[{','.join(ROWS[row])}]"])
        t = lap(f"train {row}", t)
        results[row] = evaluate(run / "model", test_labels, train_labels)
        t = lap(f"evaluate {row}", t)
    timings["total"] = round(time.perf_counter() - started, 1)
    summary = {"machine": _machine(), "timings_s": timings, "results": results,
               "dataset": json.loads((args.out / "dataset/report.json").read_text())}
    (args.out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(markdown(summary))


def _machine() -> str:
    return f"{cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__} with {torch.get_num_threads()} threads"


def markdown(summary: dict) -> str:
    """The BENCHMARKS.md tables: correlations per ablation row, then MAE per dimension against the baseline."""
    results = summary["results"]
    lines = ["| row | heads trained | score read | SRCC | PLCC | " + " | ".join(f"SRCC {h}" for h in HEADS) + " |",
             "|---" * (5 + len(HEADS)) + "|"]
    for row, r in results.items():
        heads = " | ".join(f"{r['heads_srcc'][h]:.3f}" if h in r["heads_srcc"] else "–" for h in HEADS)
        lines.append(f"| {row} | {', '.join(ROWS[row])} | {r['score_head']} | {r['score']['srcc']:.3f} | "
                     f"{r['score']['plcc']:.3f} | {heads} |")
    rows = [row for row, r in results.items() if "mae" in r]
    if rows:
        lines += ["", "| dimension | MAE of the training mean | " + " | ".join(f"MAE, {row}" for row in rows)
                  + f" | reduction ({rows[-1]}) |", "|---" * (3 + len(rows)) + "|"]
        for key in DIMENSIONS:
            base, maes = results[rows[0]]["mae_train_mean"][key], [results[row]["mae"][key] for row in rows]
            cells = " | ".join(f"{m:.4f}" for m in maes)
            lines.append(f"| {key} | {base:.4f} | {cells} | {100 * (1 - maes[-1] / base):.0f}% |")
    return "\n".join(lines)

if __name__ == "__main__":
    main()
