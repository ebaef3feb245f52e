"""Which files hold a model folder's weights, which of them may be loaded, and their sha256 for provenance.

Weights load from safetensors only: a pickle (`pytorch_model.bin`) can run code when it is loaded, so a folder
that has its backbone weights only as pickles is refused unless the caller passes allow_pickle=True. The
provenance hash covers exactly the files that were loaded.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from beholder.files import atomic_write

HEADS_NAME = "heads.safetensors"  # beholder's heads, beside the backbone's own weight files
PICKLE_PATTERN = "pytorch_model*.bin"  # transformers' pickled weights (one file or shards)
_HASH_CACHE = ".beholder-weights.sha256.json"


class PickleWeightsError(ValueError):
    """A folder whose weights exist only as pickle files, and the caller did not allow loading pickles."""


def weight_files(folder: str | Path, *, allow_pickle: bool = False) -> list[Path]:
    """The files a model folder's weights load from, heads included: its safetensors, or with allow_pickle and no
    safetensors backbone weights, its pickles. Raises PickleWeightsError or FileNotFoundError when there are none."""
    folder = Path(folder)
    heads = [folder / HEADS_NAME] if (folder / HEADS_NAME).is_file() else []
    backbone = sorted(p for p in folder.glob("*.safetensors") if p.name != HEADS_NAME)
    if backbone:
        return backbone + heads
    pickles = sorted(folder.glob(PICKLE_PATTERN))
    if pickles and not allow_pickle:
        raise PickleWeightsError(
            f"{folder} has its weights only as pickle files ({', '.join(p.name for p in pickles)}). Loading a pickle "
            "can run any code it contains, so beholder loads safetensors only. If you trust these files, pass "
            "allow_pickle=True (--allow-pickle); better, save the model once as safetensors."
        )
    if not pickles:
        raise FileNotFoundError(f"{folder} has no model weights (no *.safetensors)")
    return pickles + heads


def weights_sha256(files: Sequence[Path]) -> str:
    """sha256 over the files (name + bytes, in order), cached beside them by name, size and mtime."""
    files = [Path(f) for f in files]
    if not files:
        raise ValueError("no weight files to hash")
    stamp = [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in files]
    cache = files[0].parent / _HASH_CACHE
    try:
        cached = json.loads(cache.read_text())
        if cached["files"] == stamp:
            return cached["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.name.encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                digest.update(block)
    try:
        with atomic_write(cache) as tmp:
            tmp.write_text(json.dumps({"files": stamp, "sha256": digest.hexdigest()}))
    except OSError:
        pass  # a read-only folder only costs re-hashing next time
    return digest.hexdigest()
