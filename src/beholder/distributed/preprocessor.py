"""A Scorer without weights: decoding, preprocessing and provenance for machines that never run the model.

Decode workers only need `Scorer.prepare` (the model folder's config, backbone adapter and, for a chat model, its
tokenizer); the driver only needs `Scorer.provenance` and the run settings. Neither needs gigabytes of weights, so
the backbone is built on PyTorch's meta device: shapes and config without storage. Calling the model on it fails; `prepare` and
`provenance` give what the loaded model gives (the scoring actors check that they agree), except `device`,
which says "meta".
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from beholder.model.devices import resolve_device, resolve_dtype
from beholder.model.folder import assemble, empty_backbone
from beholder.model.weights import weight_files
from beholder.scoring import Scorer, configure


def load_preprocessor(
    name: str | Path,
    *,
    device: str = "cpu",
    dtype: str = "float32",
    max_tiles: int | None = None,
    decode: Mapping[str, Any] | None = None,
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
    revision: str | None = None,
) -> Scorer:
    """A Scorer for `name`, taking `beholder.load`'s arguments, whose weights are never read.

    device, dtype: what the scoring workers will use: they set the provenance's dtype (nothing is allocated, and
    "cuda" needs no GPU here)."""
    folder, config, overrides = configure(name, max_tiles=max_tiles, decode=decode, revision=revision)
    torch_dtype = resolve_dtype(dtype, resolve_device(device) if device == "auto" else torch.device(device))
    with torch.device("meta"):
        hf_model = empty_backbone(folder, config, dtype=torch_dtype, trust_remote_code=trust_remote_code)
        model = assemble(folder, config, hf_model, trust_remote_code=trust_remote_code)
    model.weights_files = tuple(weight_files(folder, allow_pickle=allow_pickle))  # hashed for the provenance
    return Scorer(model, source=str(name), folder=folder, overrides=overrides)


@lru_cache(maxsize=4)
def cached_preprocessor(name: str, options: str) -> Scorer:
    """`load_preprocessor(name, **json.loads(options))`, built once per worker process (Ray reuses task workers)
    for each model and options; the options travel as sorted JSON, a hashable key."""
    return load_preprocessor(name, **json.loads(options))
