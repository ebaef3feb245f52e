"""Independent restatements of what the reference pipelines do with an input (REFERENCE.md section 7), written from
their description, loop by loop, without beholder's code: the tests hold beholder's defaults to these.

  open_rgb           every reference: Image.open(path).convert("RGB")
  internvl_tiles     InternVL's dynamic_preprocess: grid by aspect ratio, bicubic resize, row-major tiles, thumbnail
  build_transform    ToTensor (x / 255) then Normalize((x - mean) / std), channel first
  expand2square      the pad-to-square helper of InternVL's and Q-Align's code; callers fill with int(c * 255)
  qalign_pixels      Q-Align: expand2square with the truncated CLIP mean, resized to a square, CLIP mean / std
  clip_preprocess    OpenAI clip.load's / open_clip's eval transform on a file as opened: torchvision Resize(n, bicubic)
                     (the long side int(n * long / short)), CenterCrop(n) at int(round((size - n) / 2)), RGB last
  predictor_head     LAION's / aesthetic-predictor-v2.5's head: x / ||x||, then the Linears in order, no activations
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


def clip_preprocess(image, size):
    """torchvision's Resize(size) + CenterCrop(size), then convert("RGB"), ToTensor, Normalize(CLIP): (1, 3, n, n)."""
    width, height = image.size
    if width <= height:
        new_width, new_height = size, int(size * height / width)
    else:
        new_width, new_height = int(size * width / height), size
    if (new_width, new_height) != image.size:
        image = image.resize((new_width, new_height), Image.Resampling.BICUBIC)
    top = int(round((new_height - size) / 2.0))
    left = int(round((new_width - size) / 2.0))
    image = image.crop((left, top, left + size, top + size)).convert("RGB")
    return build_transform([image], CLIP_MEAN, CLIP_STD)


def predictor_head(embedding, layers):
    """embedding (B, D); layers: [(weight (out, in), bias (out,)), ...] in order -> (B,)."""
    x = embedding / embedding.norm(dim=-1, keepdim=True)
    for weight, bias in layers:
        x = x @ weight.T + bias
    return x[:, 0]
