"""Real encoded image files and every kind of broken one, for the batch-scoring tests."""

from __future__ import annotations

import io
import struct
import tarfile
import zlib
from pathlib import Path

from beholder.testing import make_image

FORMATS = {"jpg": "JPEG", "png": "PNG", "webp": "WEBP"}


def encode(seed: int, fmt: str = "jpg", size: tuple[int, int] = (64, 48)) -> bytes:
    buffer = io.BytesIO()
    make_image(*size, seed=seed).save(buffer, FORMATS[fmt])
    return buffer.getvalue()


def write_photos(folder: Path, n: int, *, start: int = 0, size: tuple[int, int] = (64, 48)) -> list[Path]:
    """n images cycling through JPEG, PNG and WebP, named img0000.jpg, img0001.png, ..."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(start, start + n):
        fmt = list(FORMATS)[i % len(FORMATS)]
        path = folder / f"img{i:04d}.{fmt}"
        path.write_bytes(encode(i, fmt, size))
        paths.append(path)
    return paths


def huge_png() -> bytes:
    """A valid small PNG whose header claims 100000 x 100000 pixels: a decompression bomb."""
    data = encode(0, "png", (8, 8))
    width_height = struct.pack(">II", 100_000, 100_000)
    ihdr = data[12:16] + width_height + data[24:29]  # chunk type + patched fields
    return data[:8] + data[8:12] + ihdr + struct.pack(">I", zlib.crc32(ihdr)) + data[33:]


def write_broken(folder: Path) -> dict[str, Path]:
    """One file of each broken kind: zero-byte, truncated JPEG, text named .jpg, decompression bomb."""
    folder.mkdir(parents=True, exist_ok=True)
    jpeg = encode(99, "jpg", (64, 64))
    files = {
        "zero": (folder / "zero.jpg", b""),
        "truncated": (folder / "truncated.jpg", jpeg[: len(jpeg) // 2]),
        "text": (folder / "text.jpg", b"this is not an image\n"),
        "huge": (folder / "huge.png", huge_png()),
    }
    for path, data in files.values():
        path.write_bytes(data)
    return {kind: path for kind, (path, _) in files.items()}


def write_shard(path: Path, members: dict[str, bytes]) -> Path:
    """A WebDataset-style tar with the given members, in order."""
    with tarfile.open(path, "w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def write_mixed_inputs(root: Path) -> dict:
    """The batch-scoring test inputs: a folder of 9 photos and every broken kind, a CSV manifest (a duplicate of a
    photo, an extra image, a missing file, a folder posing as an image; carried `prompt` and `score` columns)
    and a WebDataset shard with two images and a sidecar. Six inputs fail."""
    photos = write_photos(root / "photos", 9)
    broken = write_broken(root / "photos" / "broken")
    (root / "data" / "not-an-image.jpg").mkdir(parents=True)
    manifest = root / "data" / "manifest.csv"
    manifest.write_text(
        "path,prompt,score\n"
        "../photos/img0000.jpg,a cat,5\n"  # also in the folder: scored once
        "extra.png,a cat,4\n"
        "missing.jpg,a dog,3\n"
        "not-an-image.jpg,a dog,2\n"
    )
    (root / "data" / "extra.png").write_bytes(encode(42, "png"))
    shard = write_shard(root / "shard.tar", {"s1.jpg": encode(50), "s1.json": b"{}", "s2.webp": encode(51, "webp")})
    return {"root": root, "photos": photos, "broken": broken, "manifest": manifest, "shard": shard}
