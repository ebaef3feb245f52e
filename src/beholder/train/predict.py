"""Head outputs for many images through the model's own scoring paths: what the MetaVoter is trained on in
stage 2, and what a held-out evaluation compares with the labels."""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
from tqdm import tqdm

from beholder.preprocess import decode_image
from beholder.model.aesthetic import AestheticModel

_WINDOW_BATCHES = 16  # batches' worth of images decoded at a time: bounds memory, leaves room to group


def window_size(batch_size: int) -> int:
    """Images decoded and grouped together; sharding whole windows reproduces the unsharded batches exactly."""
    return batch_size * _WINDOW_BATCHES


def predict_heads(
    model: AestheticModel, images: Sequence[str], batch_size: int = 16, *, progress: bool = False
) -> dict[str, np.ndarray]:
    """Every head's output for each image, in input order: "lm", "regression", "expert", "metavoter" (N,)
    and "dimensions" (N, 12) for the heads the model has, and "score" (N,), the model's final score in [0, 1]
    (what the Scorer reports, before mapping onto the native scale). Full scoring (both questions over one shared image
    prefix) when it has the Expert head, else the one-pass overall question. Images are decoded a window at a
    time and grouped by visual key within it, so no batch is padded, as the Scorer batches them. `progress`
    shows a bar on stderr."""
    forward = model.score_full if model.heads.expert is not None else model.score_fast
    preprocess = model.config.preprocess
    columns: dict[str, np.ndarray] = {}
    window = window_size(batch_size)
    bar = tqdm(total=len(images), desc="head outputs", unit="img", disable=not progress, file=sys.stderr,
               dynamic_ncols=True)
    for offset in range(0, len(images), window):
        visuals = [model.backbone.visual(decode_image(path, preprocess)) for path in images[offset : offset + window]]
        groups: dict[tuple, list[int]] = defaultdict(list)
        for i, visual in enumerate(visuals):
            groups[visual.key].append(i)
        for indices in groups.values():
            for start in range(0, len(indices), batch_size):
                chunk = indices[start : start + batch_size]
                out = forward([visuals[i] for i in chunk])
                named = {**out.named(), "score": model.final_score(out)}
                if out.dimensions is not None:
                    named["dimensions"] = out.dimensions
                for name, values in named.items():
                    column = columns.setdefault(name, np.zeros((len(images), *values.shape[1:])))
                    column[[offset + i for i in chunk]] = values.float().cpu().numpy()
                bar.update(len(chunk))
    bar.close()
    return columns
