"""Make the example's inputs: images, two labelled sources and a tiny random model to start training from.

    python examples/make_example.py                # writes examples/data/ and examples/tiny-model/
    beholder data build examples/sources.yaml      # -> examples/dataset/
    beholder train examples/train.yaml             # -> examples/runs/example/model
    beholder score examples/data/studio -m examples/runs/example/model -o examples/scores.csv

The images are random pictures and the labels random numbers, so the trained model learns nothing about
aesthetics: the example shows every step's mechanics, offline, in about a minute on a laptop CPU. For a real
run, point sources.yaml at labelled images and train.yaml's `model` at a real model folder (`beholder models`
lists the released ones; `beholder convert` makes a folder of a downloaded checkpoint).
"""

from __future__ import annotations

import argparse
import csv
import os
import random
from pathlib import Path

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # no transformers bar while the tiny model is saved

from beholder.standard import DIMENSIONS  # noqa: E402
from beholder.testing import make_image, make_tiny_model  # noqa: E402

WEB_IMAGES = 12  # source "web": one overall score per image, on a 1-5 scale
STUDIO_IMAGES = 8  # source "studio": 3 raters score every image on 12 dimensions, on a 1-10 scale
RATERS = 3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", nargs="?", default=Path(__file__).parent, type=Path,
                        help="where sources.yaml and train.yaml are (default: this script's folder)")
    folder = parser.parse_args().folder
    rng = random.Random(0)
    web, studio = folder / "data" / "web", folder / "data" / "studio"
    web.mkdir(parents=True, exist_ok=True)
    studio.mkdir(parents=True, exist_ok=True)
    with open(web / "labels.csv", "w", newline="") as f:
        table = csv.writer(f)
        table.writerow(["path", "score"])
        for i in range(WEB_IMAGES):
            make_image(96 + 16 * (i % 3), 72, seed=i).save(web / f"web{i:02d}.jpg")
            table.writerow([f"web{i:02d}.jpg", rng.randint(1, 5)])
    with open(studio / "ratings.csv", "w", newline="") as f:
        table = csv.writer(f)
        table.writerow(["image", "rater", *DIMENSIONS])
        for i in range(STUDIO_IMAGES):
            make_image(80, 80 + 24 * (i % 2), seed=100 + i).save(studio / f"studio{i:02d}.png")
            for rater in range(RATERS):
                table.writerow([f"studio{i:02d}.png", f"r{rater}", *(rng.randint(1, 10) for _ in DIMENSIONS)])
    make_tiny_model(folder / "tiny-model", seed=0)
    print(f"wrote {folder / 'data'} ({WEB_IMAGES + STUDIO_IMAGES} images, 2 sources) and {folder / 'tiny-model'}")


if __name__ == "__main__":
    main()
