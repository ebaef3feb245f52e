"""Independent restatements of what the reference pipelines do with an input (REFERENCE.md section 7), written from
their description, loop by loop, without beholder's code: the tests hold beholder's defaults to these.

  open_rgb           every reference: Image.open(path).convert("RGB")
  internvl_tiles     InternVL's dynamic_preprocess: grid by aspect ratio, bicubic resize, row-major tiles, thumbnail
  build_transform    ToTensor (x / 255) then Normalize((x - mean) / std), channel first
  expand2square      the pad-to-square helper of InternVL's and Q-Align's code; callers fill with int(c * 255)
  qalign_pixels      Q-Align: expand2square with the truncated CLIP mean, resized to a square, CLIP mean / std
"""

from __future__ import annotations

import numpy as np
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def open_rgb(path) -> Image.Image:
    return Image.open(path).convert("RGB")


def reference_grid(width, height, max_num, image_size, min_num=1):
    """The official InternVL grid choice, loop by loop."""
    candidates = set()
    for n in range(min_num, max_num + 1):
        for i in range(1, n + 1):
            for j in range(1, n + 1):
                if min_num <= i * j <= max_num:
                    candidates.add((i, j))
    ordered = sorted(candidates, key=lambda r: r[0] * r[1])
    aspect = width / height
    best, best_diff = (1, 1), float("inf")
    for ratio in ordered:
        diff = abs(aspect - ratio[0] / ratio[1])
        if diff < best_diff:
            best, best_diff = ratio, diff
        elif diff == best_diff and width * height > 0.5 * image_size * image_size * ratio[0] * ratio[1]:
            best = ratio
    return best


def internvl_tiles(image, image_size, max_num):
    cols, rows = reference_grid(*image.size, max_num, image_size)
    resized = image.resize((image_size * cols, image_size * rows))  # Pillow's default filter is bicubic
    tiles = []
    for i in range(cols * rows):
        x, y = (i % cols) * image_size, (i // cols) * image_size
        tiles.append(resized.crop((x, y, x + image_size, y + image_size)))
    if len(tiles) != 1:
        tiles.append(image.resize((image_size, image_size)))
    return tiles


def build_transform(images, mean, std) -> np.ndarray:
    """ToTensor then Normalize, in float32 as torchvision computes it: (n, 3, H, W)."""
    out = []
    for image in images:
        x = np.asarray(image, dtype=np.float32) / 255.0  # (H, W, 3)
        x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
        out.append(x.transpose(2, 0, 1))
    return np.stack(out)


def expand2square(image, background):
    width, height = image.size
    if width == height:
        return image
    if width > height:
        result = Image.new(image.mode, (width, width), background)
        result.paste(image, (0, (width - height) // 2))
        return result
    result = Image.new(image.mode, (height, height), background)
    result.paste(image, ((height - width) // 2, 0))
    return result


def pad_fill(mean):
    return tuple(int(x * 255) for x in mean)


def qalign_pixels(image, size):
    """Q-Align's processor on an RGB image: expand2square with the CLIP mean, then the CLIP image processor (for a
    square image its shortest-edge bicubic resize and centre crop are one resize to size x size), CLIP mean/std."""
    square = expand2square(image, pad_fill(CLIP_MEAN)).resize((size, size), Image.Resampling.BICUBIC)
    return build_transform([square], CLIP_MEAN, CLIP_STD)
