"""Image decoding: any input to an RGB PIL image, exactly as the released models' reference code reads files.

Every reference pipeline loads an image as `Image.open(path).convert("RGB")`: the full-size decode, no EXIF
rotation (a phone photo with orientation 6 is seen as stored), transparency dropped (the colour under a
transparent pixel is kept). That is the default here. The departures are opt-ins of `DecodeConfig`: turning
images upright, compositing transparency on white, and decoding JPEGs at a reduced DCT scale ("draft"), which is
faster and changes pixels. Oversized images are refused before their pixels are decoded. Everything here runs
on the CPU without torch so it can live in decode worker threads.
"""

from __future__ import annotations

import io
import os
import stat
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO, Literal, Union

from PIL import Image, ImageOps, UnidentifiedImageError

ImageSource = Union[str, os.PathLike, bytes, Image.Image]

# Refuse images above this many pixels before decoding them (a 24k x 24k decompression bomb is 1.7 GB of RGB).
DEFAULT_MAX_PIXELS = 178_956_970  # Pillow's own DecompressionBombError threshold (2x its warning limit)
_TRANSPARENT_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
EXIF_ORIENTATION = 0x0112


class ImageError(ValueError):
    """An input that cannot be turned into an image: missing, unreadable, corrupt, truncated or too large."""


@dataclass(frozen=True)
class DecodeConfig:
    """How a file becomes RGB pixels. The defaults are the references' `Image.open(p).convert("RGB")`; every
    other value is a departure from what the released models saw, chosen by the user and recorded in provenance."""

    draft: bool = False  # JPEGs decoded at the smallest DCT scale (1/2, 1/4, 1/8) still covering what
    #                      preprocessing needs: several times faster on large photos, but not the reference pixels
    exif_transpose: bool = False  # turn the image upright per its EXIF orientation (the references do not)
    alpha: Literal["drop", "white"] = "drop"  # transparency: "drop" keeps the colour under it, as convert("RGB");
    #                                           "white" composites the image on white first


# Given the image's (width, height) as decoded, the smallest (width, height) preprocessing needs (None: all).
SizeTarget = Callable[[int, int], "tuple[int, int] | None"]


def load_image(
    source: ImageSource,
    config: DecodeConfig = DecodeConfig(),
    *,
    target: SizeTarget | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    rgb: bool = True,
) -> Image.Image:
    """Decode `source` (a path, bytes or a PIL image) to an RGB PIL image as `config` says.

    rgb: False keeps the image's own mode (after the EXIF turn and alpha opt-ins), for preprocessing that converts
    to RGB itself after resizing, as OpenAI's CLIP preprocessing does.

    target: used only with `config.draft`: JPEGs are then decoded at the smallest DCT scale that keeps both sides
    at least `target(width, height)` (width and height as the image will be seen, upright or not per config).
    """
    if isinstance(source, Image.Image):
        return _to_rgb(source, config, rgb)
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
                if config.draft and target is not None and image.format == "JPEG":
                    _draft(image, target, upright=config.exif_transpose)
                image.load()
        except ImageError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageError(f"image too large: {exc}") from exc
        except UnidentifiedImageError:  # its message shows the file object, not the file
            raise ImageError("cannot decode image: no image format recognised (not an image, or corrupt)") from None
        except (OSError, SyntaxError, ValueError, EOFError) as exc:  # PIL's ways of saying corrupt or not an image
            raise ImageError(f"cannot decode image: {exc}") from exc
    return _to_rgb(image, config, rgb)


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


def _draft(image: Image.Image, target: SizeTarget, *, upright: bool) -> None:
    # When the image will be turned upright, EXIF rotation by 90/270 degrees swaps the sides between the file
    # and the image preprocessing sees.
    swapped = upright and image.getexif().get(EXIF_ORIENTATION, 1) in (5, 6, 7, 8)
    width, height = image.size[::-1] if swapped else image.size
    wanted = target(width, height)
    if wanted is None:
        return
    wanted = wanted[::-1] if swapped else wanted
    # draft() picks the largest reduction whose result is still >= the requested size on both sides.
    image.draft("RGB", (max(1, wanted[0]), max(1, wanted[1])))


def _to_rgb(image: Image.Image, config: DecodeConfig, rgb: bool = True) -> Image.Image:
    try:
        if config.exif_transpose:
            image = ImageOps.exif_transpose(image)
        if config.alpha == "white" and _has_alpha(image):
            rgba = image.convert("RGBA")
            image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
        return image if image.mode == "RGB" or not rgb else image.convert("RGB")
    except ValueError as exc:  # a mode Pillow cannot convert (e.g. "La")
        raise ImageError(f"cannot convert a {image.mode} image to RGB: {exc}") from exc


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in _TRANSPARENT_MODES or (image.mode == "P" and "transparency" in image.info)
