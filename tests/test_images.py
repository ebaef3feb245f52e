import io

import numpy as np
import pytest
from PIL import Image
from references import internvl_tiles, reference_grid

from beholder.images import DecodeConfig, ImageError, load_image
from beholder.preprocess import (
    SQUARE_VIEWS,
    PreprocessConfig,
    choose_grid,
    dynamic_tiles,
    normalize,
    pad_to_square,
    stack_views,
)
from beholder.testing import make_image


SIZES = [(w, h) for w in (1, 7, 100, 224, 447, 448, 449, 500, 640, 896, 1000, 1344, 1920, 4000)
         for h in (1, 3, 100, 360, 448, 480, 560, 1080, 2000, 5000)]
# Exact ties between grids: 5:4 sits halfway between 1:1 and 3:2; 1.25 between (1,1) and (3,2) ... and areas
# on both sides of the 0.5 * grid-area rule.
TIES = [(500, 400), (1000, 800), (5, 4), (560, 448), (672, 448), (3, 2), (1500, 1000), (300, 200), (448 * 3, 448 * 2)]


@pytest.mark.parametrize("max_tiles", [1, 4, 6, 12, 24])
def test_grid_choice_matches_reference(max_tiles):
    for width, height in SIZES + TIES:
        assert choose_grid(width, height, max_tiles, 448) == reference_grid(width, height, max_tiles, 448), (
            width, height, max_tiles)


@pytest.mark.parametrize("size", [(640, 480), (500, 400), (300, 1000), (100, 100), (2000, 300)])
def test_tiles_match_reference_pixels(size):
    image = make_image(*size, seed=3)
    ours = dynamic_tiles(image, tile_size=112, max_tiles=12)
    ref = internvl_tiles(image, 112, 12)
    assert len(ours) == len(ref)
    for a, b in zip(ours, ref):
        assert a.size == (112, 112)
        assert np.array_equal(np.asarray(a), np.asarray(b))


def pixels(config, image):
    return normalize(stack_views(SQUARE_VIEWS[config.mode](config, image)), config.mean, config.std)


def test_single_tile_has_no_thumbnail_and_tiles_mode_shapes():
    config = PreprocessConfig(image_size=56, max_tiles=6)
    assert pixels(config, make_image(56, 56)).shape == (1, 3, 56, 56)
    wide = pixels(config, make_image(224, 56))  # 4x1 grid + thumbnail
    assert wide.shape == (5, 3, 56, 56)
    assert wide.dtype == np.float32


def test_normalisation_is_imagenet_standardisation():
    config = PreprocessConfig(mode="squash", image_size=8)
    white = Image.new("RGB", (8, 8), (255, 255, 255))
    expected = (1 - np.array(config.mean)) / np.array(config.std)
    assert np.allclose(pixels(config, white)[0, :, 0, 0], expected, atol=1e-6)


def test_pad_to_square_centres_on_fill():
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    padded = pad_to_square(image, fill=(0, 0, 255))
    assert padded.size == (40, 40)
    assert padded.getpixel((0, 0)) == (0, 0, 255) and padded.getpixel((20, 20)) == (255, 0, 0)
    assert pixels(PreprocessConfig(mode="pad", image_size=16), image).shape == (1, 3, 16, 16)


def _jpeg(image, **kwargs):
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **kwargs)
    return buffer.getvalue()


def test_exif_orientation_is_applied_only_when_asked():
    image = make_image(80, 40)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    assert load_image(_jpeg(image, exif=exif)).size == (80, 40)  # as stored, like the references
    assert load_image(_jpeg(image, exif=exif), DecodeConfig(exif_transpose=True)).size == (40, 80)


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "CMYK", "I;16", "1", "I", "F"])
def test_every_mode_becomes_rgb(mode):
    image = make_image(16, 16).convert("RGBA" if mode in ("LA", "RGBA") else "RGB")
    if mode == "I;16":
        image = Image.fromarray((np.asarray(image.convert("L"), np.uint16) * 257))
    elif mode in ("I", "F"):
        image = image.convert("L").convert(mode)
    else:
        image = image.convert(mode)
    loaded = load_image(image)
    assert loaded.mode == "RGB" and loaded.size == (16, 16)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "PA", "P"])
def test_transparency_is_dropped_or_composited_on_white(mode):
    image = Image.new("RGBA", (4, 4), (10, 200, 30, 0))  # fully transparent green
    if mode == "P":
        image = Image.new("P", (4, 4), 1)
        image.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
        image.info["transparency"] = 1
    elif mode != "RGBA":
        image = image.convert(mode)
    dropped = load_image(image).getpixel((0, 0))
    assert dropped == image.convert("RGB").getpixel((0, 0)) and dropped != (255, 255, 255)
    assert load_image(image, DecodeConfig(alpha="white")).getpixel((0, 0)) == (255, 255, 255)


def test_bad_inputs_raise_image_error(tmp_path):
    truncated = _jpeg(make_image(64, 64))[:200]
    text = tmp_path / "fake.jpg"
    text.write_text("not an image")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    for source, message in [(truncated, "decode"), (str(text), "decode"), (str(empty), "empty input"), (b"", "empty"),
                            (str(tmp_path / "missing.jpg"), "cannot open")]:
        with pytest.raises(ImageError, match=message):
            load_image(source)


def test_decompression_bomb_is_refused_before_decoding():
    with pytest.raises(ImageError, match="too large"):
        load_image(_jpeg(make_image(300, 200)), max_pixels=300 * 200 - 1)


def test_jpeg_draft_decodes_only_what_is_needed_when_asked():
    data = _jpeg(make_image(1600, 1200), quality=90)
    config = PreprocessConfig(image_size=56, max_tiles=6)
    drafted = load_image(data, DecodeConfig(draft=True), target=config.draft_size)
    cols, rows = choose_grid(1600, 1200, 6, 56)
    assert drafted.size == (200, 150)  # 1/8 DCT scale, still >= the (56*cols, 56*rows) grid
    assert drafted.size[0] >= 56 * cols and drafted.size[1] >= 56 * rows
    assert load_image(data, target=config.draft_size).size == (1600, 1200)  # the default decodes in full
    # Turned upright by EXIF: the requested sides are swapped before asking libjpeg.
    exif = Image.Exif()
    exif[0x0112] = 6
    half = lambda w, h: (w // 2, h // 2)  # noqa: E731
    rotated = load_image(_jpeg(make_image(1600, 400), exif=exif), DecodeConfig(draft=True, exif_transpose=True),
                         target=half)
    assert rotated.size == (200, 800)  # file 1600x400 drafted at 1/2 to 800x200, then turned upright
    as_stored = load_image(_jpeg(make_image(1600, 400), exif=exif), DecodeConfig(draft=True), target=half)
    assert as_stored.size == (800, 200)
