"""A Scorer without weights: decoding, preprocessing and provenance for machines that never run the model.

Decode workers only need `Scorer.prepare` (the model folder's config, tokenizer and backbone adapter); the driver
only needs `Scorer.provenance` and the run settings. Neither needs gigabytes of weights, so the backbone is built
on PyTorch's meta device: shapes and config without storage. Calling the model on it fails; `prepare` and
`provenance` give exactly what the loaded model gives (the scoring actors check that they agree).
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache
from pathlib import Path

import torch

from beholder.model.aesthetic import AestheticModel
from beholder.model.folder import read_config, resolve_dtype, resolve_folder
from beholder.scoring import Scorer


def load_preprocessor(
    model: str | Path,
    *,
    device: str = "cpu",
    dtype: str = "float32",
    max_tiles: int | None = None,
    trust_remote_code: bool = False,
) -> Scorer:
    """A Scorer for `model` (as `beholder.load` takes it) whose weights are never read.

    device, dtype: what the scoring workers will use: they set the provenance's dtype (no tensor is allocated);
    its `device` entry says "meta".
    """
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoTokenizer

    folder = resolve_folder(model)
    config = read_config(folder)
    if max_tiles is not None:
        config = config.replace(preprocess=dataclasses.replace(config.preprocess, max_tiles=max_tiles))
    hf_config = AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code)
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)
    torch_dtype = resolve_dtype(dtype, torch.device(device))
    with torch.device("meta"):
        hf_model = AutoModelForImageTextToText.from_config(
            hf_config, dtype=torch_dtype, trust_remote_code=trust_remote_code
        )
        aesthetic = AestheticModel(hf_model.eval(), tokenizer, config)
    return Scorer(aesthetic, source=str(model), folder=folder)


@lru_cache(maxsize=4)
def cached_preprocessor(model: str, max_tiles: int | None, trust_remote_code: bool) -> Scorer:
    """One preprocessor per worker process and model: Ray reuses task workers, so it is built once per worker."""
    return load_preprocessor(model, max_tiles=max_tiles, trust_remote_code=trust_remote_code)
