"""Image decoding and the preprocessing modes (InternVL dynamic tiles, square squash, pad-to-square).

Decoding is defensive: EXIF orientation is applied, every PIL mode becomes RGB (transparency composited on
white), oversized images are refused before their pixels are decoded, and JPEGs are decoded with libjpeg's
DCT scaling ("draft") to the smallest size that is still at least what preprocessing needs.
Everything here runs on the CPU without torch so it can live in decode worker threads.
"""

from __future__ import annotations

import io
import math
import os
import stat
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import BinaryIO, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

ImageSource = Union[str, os.PathLike, bytes, Image.Image]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
# Refuse images above this many pixels before decoding them (a 24k x 24k decompression bomb is 1.7 GB of RGB).
DEFAULT_MAX_PIXELS = 178_956_970  # Pillow's own DecompressionBombError threshold (2x its warning limit)


class ImageError(ValueError):
    """An input that cannot be turned into an image: missing, unreadable, corrupt, truncated or too large."""


SizeTarget = Callable[[int, int], "tuple[int, int] | None"]


def load_image(
    source: ImageSource, *, target: SizeTarget | None = None, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Image.Image:
    """Decode `source` to an RGB PIL image, upright per its EXIF orientation.

    target: given the upright (width, height) from the header, the smallest (width, height) the caller needs;
    JPEGs are then decoded at the smallest DCT scale (1/1, 1/2, 1/4, 1/8) that keeps both sides at least that
    large. None (or a target returning None) decodes at full size.
    """
    if isinstance(source, Image.Image):
        return _to_rgb(ImageOps.exif_transpose(source))
    fp = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else _open_regular(source)
    with fp:
        if not fp.read(1):
            raise ImageError(f"empty input (0 bytes): {source if not isinstance(source, bytes) else 'bytes'}")
        fp.seek(0)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                image = Image.open(fp)
                _check_size(image.size, max_pixels)
                if target is not None and image.format == "JPEG":
                    _draft(image, target)
                image.load()
        except ImageError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageError(f"image too large: {exc}") from exc
        except UnidentifiedImageError:  # its message shows the file object, not the file
            raise ImageError("cannot decode image: no image format recognised (not an image, or corrupt)") from None
        except (OSError, SyntaxError, ValueError, EOFError) as exc:  # PIL's ways of saying corrupt or not an image
            raise ImageError(f"cannot decode image: {exc}") from exc
    return _to_rgb(ImageOps.exif_transpose(image))


def _open_regular(path: str | os.PathLike) -> BinaryIO:
    """Open a regular file for reading; anything else (a FIFO, a device, a folder) is refused without blocking."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise ImageError(f"cannot open {os.fsdecode(path)!r}: {exc.strerror or exc}") from exc
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ImageError(f"not a regular file: {os.fsdecode(path)!r}")
    return os.fdopen(fd, "rb")


def _check_size(size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise ImageError(f"image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise ImageError(f"image too large: {width}x{height} = {width * height} pixels > limit {max_pixels}")


def _draft(image: Image.Image, target: SizeTarget) -> None:
    # EXIF rotation by 90/270 degrees swaps the sides between the file and the upright image.
    swapped = image.getexif().get(0x0112, 1) in (5, 6, 7, 8)
    width, height = image.size[::-1] if swapped else image.size
    wanted = target(width, height)
    if wanted is None:
        return
    wanted = wanted[::-1] if swapped else wanted
    # draft() picks the largest reduction whose result is still >= the requested size on both sides.
    image.draft("RGB", (max(1, wanted[0]), max(1, wanted[1])))


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # High bit-depth greyscale: rescale the actual range to 8 bits instead of clipping.
        array = np.asarray(image, dtype=np.float64)
        lo, hi = float(array.min()), float(array.max())
        array = (array - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(array)
        return Image.fromarray(array.round().astype(np.uint8)).convert("RGB")
    return image.convert("RGB")


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


def pad_to_square(image: Image.Image, fill: Sequence[float] = CLIP_MEAN) -> Image.Image:
    """Centre the image on a square canvas of `fill` (0..1 RGB), as Q-Align does before resizing."""
    width, height = image.size
    side = max(width, height)
    canvas = Image.new("RGB", (side, side), tuple(int(round(c * 255)) for c in fill))
    canvas.paste(image, ((side - width) // 2, (side - height) // 2))
    return canvas


def normalize(images: Sequence[Image.Image], mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """PIL RGB images of one size -> float32 array (n, 3, H, W), scaled to [0, 1] then standardised.

    (x / 255 - mean) / std is computed as one multiply-add per pixel, x * (1 / (255 std)) - mean / std, into the
    channel-first output: it is the hot loop of decoding (a 13-tile image is 7.8M values)."""
    pixels = np.stack([np.asarray(im, dtype=np.uint8) for im in images]).transpose(0, 3, 1, 2)  # (n, 3, H, W)
    std = np.asarray(std, np.float32)
    scale = (1.0 / (255.0 * std)).reshape(1, 3, 1, 1)
    offset = (np.asarray(mean, np.float32) / std).reshape(1, 3, 1, 1)
    out = np.empty(pixels.shape, dtype=np.float32)
    np.multiply(pixels, scale, out=out)
    out -= offset
    return out


@dataclass(frozen=True)
class PreprocessConfig:
    """How an image becomes pixel values; saved with the model so preprocessing travels with the weights."""

    mode: str = "tiles"  # "tiles" (InternVL dynamic tiling) | "squash" (resize to square) | "pad" (pad, resize)
    #                      | "qwen2_vl" (the backbone's own processor: dynamic resolution patches)
    image_size: int = 448  # tile / square side in pixels
    max_tiles: int = 12  # tiles mode: most tiles per image (the thumbnail comes on top)
    min_tiles: int = 1
    thumbnail: bool = True  # tiles mode: append a whole-image tile when there is more than one tile
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    pad_fill: tuple[float, float, float] = CLIP_MEAN  # pad mode: canvas colour, 0..1 RGB
    min_pixels: int = 56 * 56  # qwen2_vl mode: bounds on the resized image area
    max_pixels: int = 28 * 28 * 1280
    draft: bool = True  # decode JPEGs at reduced DCT scale when the target is smaller than the file

    def target_size(self, width: int, height: int) -> tuple[int, int] | None:
        """Smallest (w, h) a decoder must deliver for this preprocessing to see full detail."""
        if not self.draft:
            return None
        if self.mode == "tiles":
            cols, rows = choose_grid(width, height, self.max_tiles, self.image_size, self.min_tiles)
            return self.image_size * cols, self.image_size * rows
        if self.mode == "squash":
            return self.image_size, self.image_size
        if self.mode == "pad":  # the long side is resized to image_size, the short side in proportion
            scale = self.image_size / max(width, height)
            return math.ceil(width * scale), math.ceil(height * scale)
        return None  # qwen2_vl resizes by pixel budget; decode at full size

    def pixels(self, image: Image.Image) -> np.ndarray:
        """RGB image -> (n_tiles, 3, S, S) float32 for the tiles/squash/pad modes."""
        size = (self.image_size, self.image_size)
        if self.mode == "tiles":
            views = dynamic_tiles(
                image,
                tile_size=self.image_size,
                max_tiles=self.max_tiles,
                min_tiles=self.min_tiles,
                thumbnail=self.thumbnail,
            )
        elif self.mode == "squash":
            views = [image.resize(size, Image.Resampling.BICUBIC)]
        elif self.mode == "pad":
            views = [pad_to_square(image, self.pad_fill).resize(size, Image.Resampling.BICUBIC)]
        else:
            raise ValueError(f"preprocessing mode {self.mode!r} is done by the backbone's processor")
        return normalize(views, self.mean, self.std)
