"""Make docs/review.png, the README's picture of `beholder review`, from scratch and offline.

Draws 24 landscapes (4 prompts x 6, procedurally: sky, sun, ridges, water), scores them with a tiny random model
through `beholder score` (so the numbers are a real model's, if a meaningless one), opens `beholder review` on them
and photographs the page in Debian's headless chromium after a few keyboard decisions.

    PYTHONPATH=src python docs/review_screenshot.py            # writes docs/review.png
"""

from __future__ import annotations

import csv
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from beholder.serve.launch import BeholderProcess
from beholder.testing import make_tiny_model

OUT = Path(__file__).with_name("review.png")
SIZE = (640, 427)
# prompt -> (sky top, sky horizon, sun, nearest ridge, farthest ridge, water?)
PROMPTS = {
    "sunset over layered hills": ((43, 29, 79), (247, 157, 101), (255, 214, 140), (40, 22, 54), (168, 96, 128), False),
    "misty mountains at dawn": ((120, 150, 196), (232, 238, 245), (255, 246, 220), (38, 58, 92), (170, 186, 210), True),
    "desert dunes at noon": ((52, 132, 210), (200, 228, 246), (255, 255, 235), (170, 104, 50), (230, 184, 120), False),
    "a northern lake at dusk": ((16, 40, 66), (96, 168, 168), (250, 230, 170), (10, 30, 36), (60, 110, 120), True),
}


def landscape(palette: tuple, seed: int) -> Image.Image:
    top, horizon, sun, near, far, water = palette
    rng = np.random.default_rng(seed)
    w, h = SIZE
    t = np.linspace(0, 1, h)[:, None, None] ** rng.uniform(0.6, 1.4)
    sky = (np.array(top) * (1 - t) + np.array(horizon) * t).repeat(w, axis=1)
    image = Image.fromarray(sky.clip(0, 255).astype(np.uint8))
    glow = Image.new("L", SIZE, 0)
    cx, cy, r = rng.uniform(0.2, 0.8) * w, rng.uniform(0.25, 0.55) * h, rng.uniform(18, 34)
    ImageDraw.Draw(glow).ellipse((cx - 3 * r, cy - 3 * r, cx + 3 * r, cy + 3 * r), fill=90)
    image.paste(Image.new("RGB", SIZE, sun), mask=glow.filter(ImageFilter.GaussianBlur(r * 1.5)))
    ImageDraw.Draw(image).ellipse((cx - r, cy - r, cx + r, cy + r), fill=sun)
    layers = int(rng.integers(3, 6))
    base = 0.62 if water else 0.9
    for k in range(layers):  # far to near: higher, paler ridges, then lower, darker ones
        f = k / max(layers - 1, 1)
        colour = tuple(int(a * f + b * (1 - f)) for a, b in zip(near, far))
        walk = np.cumsum(rng.normal(0, 1, w // 4 + 2))
        walk = np.convolve(walk - walk.mean(), np.ones(9) / 9, mode="same")
        ridge = (base - 0.32 + 0.22 * f) * h - walk * rng.uniform(3, 7)
        xs = np.linspace(0, w, len(ridge))
        ImageDraw.Draw(image).polygon([(0, h), *zip(xs, ridge), (w, h)], fill=colour)
    if water:
        cut = int(base * h)
        reflection = image.crop((0, 2 * cut - h, w, cut)).transpose(Image.Transpose.FLIP_TOP_BOTTOM)
        reflection = Image.blend(reflection, Image.new("RGB", reflection.size, top), 0.35)
        image.paste(reflection.filter(ImageFilter.GaussianBlur(1.5)), (0, cut))
    return image.filter(ImageFilter.GaussianBlur(0.6))


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="beholder-review-shot-"))
    rows = []
    for p, (prompt, palette) in enumerate(PROMPTS.items()):
        for i in range(6):
            name = f"images/{p}-{i}.jpg"
            (work / "images").mkdir(exist_ok=True)
            landscape(palette, seed=100 * p + i).save(work / name, quality=90)
            rows.append({"path": name, "prompt": prompt})
    with open(work / "renders.csv", "w", newline="") as f:
        csv.DictWriter(f, ["path", "prompt"]).writeheader()
        csv.writer(f).writerows([r["path"], r["prompt"]] for r in rows)
    model = make_tiny_model(work / "tiny", seed=6)
    scores = work / "scores.parquet"
    run = [sys.executable, "-m", "beholder"]
    subprocess.run([*run, "score", str(work / "renders.csv"), "-m", str(model), "-o", str(scores), "--no-progress"],
                   check=True)  # fmt: skip
    from playwright.sync_api import sync_playwright

    args = ("review", str(scores), "--group-by", "prompt", "--top-k", "5", "--port", "0")
    with BeholderProcess(*args, env={"BEHOLDER_CACHE": str(work / "cache"), **dict(__import__("os").environ)}) as server:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1360, "height": 860}, device_scale_factor=1)
            page.goto(server.url)
            page.wait_for_selector("body[data-ready=true]", state="attached")
            for key in ("y", "s", "n", "ArrowRight", "y", "ArrowLeft"):
                page.keyboard.press(key)
                page.wait_for_timeout(150)
            page.wait_for_timeout(2200)  # the toast fades, the thumbnails settle
            page.screenshot(path=str(work / "shot.png"))
            browser.close()
    Image.open(work / "shot.png").convert("RGB").quantize(192, dither=Image.Dither.FLOYDSTEINBERG).save(OUT, optimize=True)
    print(f"wrote {OUT} ({OUT.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
