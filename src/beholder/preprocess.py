"""How an image becomes pixel values: the preprocessing config saved with a model, and the square-view modes.

Modes, each handled where it belongs:
  tiles     InternVL dynamic tiling: a grid of square tiles plus a whole-image thumbnail  (SQUARE_VIEWS)
  squash    one square view, the image resized to it (ArtiMuse)                            (SQUARE_VIEWS)
  pad       one square view, the image centred on a square canvas, then resized (Q-Align)  (SQUARE_VIEWS)
  crop      one square view: the shortest side resized to the square's, the centre cut out (CLIP)  (SQUARE_VIEWS)
  qwen2_vl  the Qwen-VL processor: dynamic-resolution patches               (beholder.model.backbones)
Every step restates the reference's: bicubic resizes, row-major tiles, ToTensor (x / 255), then
(x - mean) / std; the pad colour is `tuple(int(c * 255) for c in mean)` (truncated), as InternVL's and Q-Align's
`expand2square` callers write it.

The crop mode follows torchvision's Resize(N) + CenterCrop(N), which OpenAI's `clip.load` and open_clip use: the
long side becomes int(N * long / short) (truncated), the crop starts at int(round((size - N) / 2)) (Python's round,
halves to even); with `convert_rgb="after_crop"` the image keeps its own mode (palette, grey, alpha) through the
resize and crop and becomes RGB last, as those pipelines do with a file opened without convert("RGB").
transformers' CLIPImageProcessor differs in two places: it converts to RGB first and floors the crop offset
(`crop_offset="floor"`, `convert_rgb="on_decode"`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from PIL import Image

from beholder.images import DecodeConfig, ImageSource, load_image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

Mode = Literal["tiles", "squash", "pad", "crop", "qwen2_vl"]


@dataclass(frozen=True)
class PreprocessConfig:
    """How a file becomes pixel values; saved with the model so preprocessing travels with the weights."""

    mode: Mode = "tiles"  # see the module docstring
    image_size: int = 448  # tile / square side in pixels
    max_tiles: int = 12  # tiles mode: most tiles per image (the thumbnail comes on top)
    min_tiles: int = 1
    thumbnail: bool = True  # tiles mode: append a whole-image tile when there is more than one tile
    mean: tuple[float, float, float] = IMAGENET_MEAN  # per-channel, of pixels in [0, 1]
    std: tuple[float, float, float] = IMAGENET_STD
    pad_fill: tuple[float, float, float] = CLIP_MEAN  # pad mode: canvas colour, 0..1 RGB
    pad_rounding: Literal["truncate", "round"] = "truncate"  # pad_fill to 0..255: int(c * 255) as the references;
    #                                                          "round" gives e.g. (123, 117, 104) for the CLIP mean
    crop_offset: Literal["round", "floor"] = "round"  # crop mode: where the centre crop starts, (size - N) / 2
    #   "round": Python's round (halves to even), torchvision's CenterCrop; "floor": transformers' CLIPImageProcessor
    convert_rgb: Literal["on_decode", "after_crop"] = "on_decode"  # when the image becomes RGB: at decoding
    #   (Image.open(p).convert("RGB")), or in crop mode after the resize and crop (clip.load's preprocess on a file
    #   opened as it is: a palette image is then resized nearest-neighbour, transparency premultiplied)
    min_pixels: int = 56 * 56  # qwen2_vl mode: bounds on the resized image area
    max_pixels: int = 28 * 28 * 1280
    decode: DecodeConfig = field(default_factory=DecodeConfig)  # file -> RGB; the default is the references'

    def fill_colour(self) -> tuple[int, int, int]:
        """pad_fill as 0..255 RGB."""
        convert = int if self.pad_rounding == "truncate" else round
        return tuple(convert(c * 255) for c in self.pad_fill)  # type: ignore[return-value]

    def draft_size(self, width: int, height: int) -> tuple[int, int] | None:
        """Smallest (w, h) a draft decode must deliver for the views to be made from full detail."""
        if self.mode == "tiles":
            cols, rows = choose_grid(width, height, self.max_tiles, self.image_size, self.min_tiles)
            return self.image_size * cols, self.image_size * rows
        if self.mode == "squash":
            return self.image_size, self.image_size
        if self.mode in ("pad", "crop"):  # pad: the long side becomes image_size; crop: the short side
            scale = self.image_size / (max if self.mode == "pad" else min)(width, height)
            return math.ceil(width * scale), math.ceil(height * scale)
        return None  # qwen2_vl resizes by pixel budget; decode at full size


def decode_image(source: ImageSource, config: PreprocessConfig) -> Image.Image:
    """`source` decoded as the model's preprocessing says (see beholder.images.DecodeConfig): in RGB, or in its own
    mode when the crop mode converts it after cropping."""
    if config.convert_rgb == "after_crop" and config.mode != "crop":
        raise ValueError(f"preprocess.convert_rgb='after_crop' needs the crop mode, not {config.mode!r}")
    return load_image(source, config.decode, target=config.draft_size, rgb=config.convert_rgb == "on_decode")


# ---------------------------------------------------------------------------------------------------------------
# InternVL dynamic tiling


def tile_grids(max_tiles: int, min_tiles: int = 1) -> list[tuple[int, int]]:
    """Every (cols, rows) grid with min_tiles <= cols*rows <= max_tiles, ordered by tile count.

    Grids of equal tile count keep the iteration order of a set built exactly as the official code builds it:
    that order decides exact ties such as (1, 2) vs (2, 1) for a 5:4 image, so it is part of the algorithm.
    """
    grids = {
        (i, j)
        for n in range(min_tiles, max_tiles + 1)
        for i in range(1, n + 1)
        for j in range(1, n + 1)
        if min_tiles <= i * j <= max_tiles
    }
    return sorted(grids, key=lambda g: g[0] * g[1])


def choose_grid(width: int, height: int, max_tiles: int, tile_size: int, min_tiles: int = 1) -> tuple[int, int]:
    """The grid whose aspect ratio is closest to the image's; on a tie the later (larger) grid wins when the
    image area exceeds half the grid's pixel area (the official InternVL rule)."""
    aspect = width / height
    best, best_diff = (1, 1), float("inf")
    for cols, rows in tile_grids(max_tiles, min_tiles):
        diff = abs(aspect - cols / rows)
        if diff < best_diff:
            best, best_diff = (cols, rows), diff
        elif diff == best_diff and width * height > 0.5 * tile_size * tile_size * cols * rows:
            best = (cols, rows)
    return best


def dynamic_tiles(
    image: Image.Image, *, tile_size: int = 448, max_tiles: int = 12, min_tiles: int = 1, thumbnail: bool = True
) -> list[Image.Image]:
    """Resize to the chosen grid, cut row-major tiles, and append a whole-image thumbnail when >1 tile."""
    cols, rows = choose_grid(*image.size, max_tiles, tile_size, min_tiles)
    resized = image.resize((tile_size * cols, tile_size * rows), Image.Resampling.BICUBIC)
    tiles = [
        resized.crop((c * tile_size, r * tile_size, (c + 1) * tile_size, (r + 1) * tile_size))
        for r in range(rows)
        for c in range(cols)
    ]
    if thumbnail and len(tiles) > 1:
        tiles.append(image.resize((tile_size, tile_size), Image.Resampling.BICUBIC))
    return tiles


def pad_to_square(image: Image.Image, fill: tuple[int, int, int]) -> Image.Image:
    """Centre the image on a square canvas of colour `fill` (0..255 RGB), as `expand2square` does."""
    width, height = image.size
    side = max(width, height)
    canvas = Image.new("RGB", (side, side), fill)
    canvas.paste(image, ((side - width) // 2, (side - height) // 2))
    return canvas


def stack_views(images: Sequence[Image.Image]) -> np.ndarray:
    """PIL RGB images of one size -> their uint8 pixels (n, 3, H, W), channel first (a view of the stacked
    channel-last array): the views as cut, before `normalize`."""
    return np.stack([np.asarray(im, dtype=np.uint8) for im in images]).transpose(0, 3, 1, 2)


def normalization(mean: Sequence[float], std: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """(scale, offset), float32 (3,): (x / 255 - mean) / std == x * scale - offset, one multiply-add per pixel."""
    std = np.asarray(std, np.float32)
    return 1.0 / (255.0 * std), np.asarray(mean, np.float32) / std


def normalize(pixels: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """uint8 views (n, 3, H, W) -> float32, scaled to [0, 1] then standardised: x * scale, rounded to float32, then
    minus offset (`normalization`), into a new channel-first array. It is the hot loop of decoding (a 13-tile image
    is 7.8M values); beholder.model.backbones does the same two roundings on the model's device."""
    scale, offset = normalization(mean, std)
    out = np.empty(pixels.shape, dtype=np.float32)
    np.multiply(pixels, scale.reshape(1, 3, 1, 1), out=out)
    out -= offset.reshape(1, 3, 1, 1)
    return out


def _tiles(config: PreprocessConfig, image: Image.Image) -> list[Image.Image]:
    return dynamic_tiles(
        image,
        tile_size=config.image_size,
        max_tiles=config.max_tiles,
        min_tiles=config.min_tiles,
        thumbnail=config.thumbnail,
    )


def _squash(config: PreprocessConfig, image: Image.Image) -> list[Image.Image]:
    return [image.resize((config.image_size, config.image_size), Image.Resampling.BICUBIC)]


def _pad(config: PreprocessConfig, image: Image.Image) -> list[Image.Image]:
    square = pad_to_square(image, config.fill_colour())
    return [square.resize((config.image_size, config.image_size), Image.Resampling.BICUBIC)]


def _crop(config: PreprocessConfig, image: Image.Image) -> list[Image.Image]:
    side = config.image_size
    width, height = image.size
    long_side = int(side * max(width, height) / min(width, height))
    size = (side, long_side) if width <= height else (long_side, side)
    if size != image.size:
        image = image.resize(size, Image.Resampling.BICUBIC)
    left, top = (_crop_start(extra, config.crop_offset) for extra in (size[0] - side, size[1] - side))
    view = image.crop((left, top, left + side, top + side))
    return [view if view.mode == "RGB" else view.convert("RGB")]


def _crop_start(extra: int, rounding: str) -> int:
    """Where a centre crop starts on a side `extra` pixels longer than the crop."""
    return int(round(extra / 2)) if rounding == "round" else extra // 2


# The square-view modes: mode -> (config, decoded image) -> RGB views of config.image_size, normalised by the
# adapter.
SQUARE_VIEWS: dict[str, Callable[[PreprocessConfig, Image.Image], list[Image.Image]]] = {
    "tiles": _tiles,
    "squash": _squash,
    "pad": _pad,
    "crop": _crop,
}
