"""Scorer: images in, ScoreResults out, batched and grouped so no batch ever needs padding.

`prepare` (decode + preprocess, CPU, thread-safe) and `score_prepared` (batched inference) are separate so a
pipeline can decode in worker threads while the model runs; `score` chains them for small in-memory jobs.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from beholder.images import ImageError, ImageSource, load_image
from beholder.model.aesthetic import AestheticModel, HeadOutputs
from beholder.model.backbones import Visual
from beholder.model.folder import load_model, read_config, resolve_folder, weights_sha256
from beholder.results import Annotation, ScoreResult, parse_annotation
from beholder.standard import DIMENSIONS, score_to_level


@dataclass
class PreparedImage:
    path: str | None  # identifier carried into the result
    visual: Visual


def _path_of(source: ImageSource, path: str | None) -> str | None:
    if path is not None:
        return path
    return None if isinstance(source, (bytes, bytearray)) or hasattr(source, "getpixel") else str(source)


class Scorer:
    def __init__(self, model: AestheticModel, *, source: str | None = None, folder: Path | None = None):
        self.model = model
        self.config = model.config
        self.source = source or self.config.name  # what the user asked for: a hub id, a path or a preset
        self.folder = folder

    @property
    def scale(self) -> tuple[float, float]:
        return tuple(self.config.scale)

    @property
    def has_full(self) -> bool:
        return self.config.has_full

    @cached_property
    def provenance(self) -> dict[str, Any]:
        import transformers

        from beholder import __version__

        hf = self.model.hf_model
        return {
            "model": self.config.name,
            "source": self.source,
            "hub_id": self.config.hub_id,
            "weights_sha256": weights_sha256(self.folder) if self.folder else None,
            "backbone": self.config.backbone,
            "scale": list(self.scale),
            "preprocess": dataclasses.asdict(self.config.preprocess),
            "prompt": dataclasses.asdict(self.config.prompt),
            "dtype": str(hf.dtype).removeprefix("torch."),
            "device": str(hf.device),
            "beholder_version": __version__,
            "transformers_version": transformers.__version__,
            "torch_version": torch.__version__,
        }

    # ---- preparing ---------------------------------------------------------------------------------------------

    def prepare(self, source: ImageSource, path: str | None = None) -> PreparedImage:
        """Decode and preprocess one image. Raises ImageError for input that is not a usable image."""
        image = load_image(source, target=self.config.preprocess.target_size)
        try:
            visual = self.model.backbone.visual(image)
        except (ValueError, OSError) as exc:
            raise ImageError(f"cannot preprocess image: {exc}") from exc
        return PreparedImage(_path_of(source, path), visual)

    def batch_key(self, item: PreparedImage) -> tuple:
        """Items with equal keys can share a batch (same tile count or patch grid)."""
        return item.visual.key

    def _prepare_all(self, inputs: Iterable[ImageSource]) -> list[PreparedImage | ScoreResult]:
        out: list[PreparedImage | ScoreResult] = []
        for source in inputs:
            try:
                out.append(self.prepare(source))
            except ImageError as exc:
                out.append(ScoreResult.failed(_path_of(source, None), exc))
        return out

    # ---- scoring -----------------------------------------------------------------------------------------------

    def score(
        self, inputs: ImageSource | Iterable[ImageSource], *, full: bool | None = None, batch_size: int = 8
    ) -> list[ScoreResult]:
        """Score images (paths, bytes or PIL images); bad inputs come back as error rows, order kept."""
        if isinstance(inputs, (str, Path, bytes)) or hasattr(inputs, "getpixel"):
            inputs = [inputs]
        prepared = self._prepare_all(inputs)
        ok = [p for p in prepared if isinstance(p, PreparedImage)]
        scored = iter(self.score_prepared(ok, full=full, batch_size=batch_size))
        return [next(scored) if isinstance(p, PreparedImage) else p for p in prepared]

    def score_prepared(
        self, items: Sequence[PreparedImage], *, full: bool | None = None, batch_size: int | None = None
    ) -> list[ScoreResult]:
        """Batched inference over prepared images, grouped by batch key; results in input order.

        A batch that fails (e.g. out of memory) is retried one image at a time, so one bad item costs one row.
        """
        full = self.has_full if full is None else full
        if full and not self.has_full:
            raise ValueError(f"model {self.config.name!r} has no expert head and MetaVoter: full scoring needs both")
        forward = self.model.score_full if full else self.model.score_fast
        return self._batched(
            items, batch_size, lambda chunk: self._results(chunk, forward([it.visual for it in chunk])), ScoreResult
        )

    def _batched(self, items: Sequence[PreparedImage], batch_size: int | None, run: Callable, result: type) -> list:
        """`run` over batches of one batch key (so no batch needs padding), results in input order; a batch that
        fails is retried one item at a time, and an item that still fails becomes `result.failed(path, exc)`."""
        groups: dict[tuple, list[int]] = defaultdict(list)
        for i, item in enumerate(items):
            groups[self.batch_key(item)].append(i)
        results: list = [None] * len(items)
        step = batch_size or len(items) or 1
        for indices in groups.values():
            for start in range(0, len(indices), step):
                chunk = indices[start : start + step]
                for i, out in zip(chunk, self._guarded([items[i] for i in chunk], run, result)):
                    results[i] = out
        return results

    def _guarded(self, items: list[PreparedImage], run: Callable, result: type) -> list:
        try:
            return run(items)
        except (RuntimeError, ValueError) as exc:
            if len(items) == 1:
                return [result.failed(items[0].path, exc)]
            return [out for item in items for out in self._guarded([item], run, result)]

    def _results(self, items: list[PreparedImage], out: HeadOutputs) -> list[ScoreResult]:
        lo, hi = self.scale
        final = self.model.final_score(out).tolist()
        heads = {name: t.tolist() for name, t in out.named().items()}
        dims = out.dimensions.tolist() if out.dimensions is not None else None
        results = []
        for i, item in enumerate(items):
            normalised = final[i]
            results.append(
                ScoreResult(
                    path=item.path,
                    score=lo + normalised * (hi - lo),
                    level=score_to_level(min(max(normalised, 0.0), 1.0)),
                    dimensions=dict(zip(DIMENSIONS, dims[i])) if dims else {},
                    heads={name: values[i] for name, values in heads.items()},
                )
            )
        return results

    # ---- annotation --------------------------------------------------------------------------------------------

    def annotate(
        self, inputs: Iterable[ImageSource], *, batch_size: int = 8, max_new_tokens: int = 160, **generate_kwargs
    ) -> list[Annotation]:
        """The 12-line expert annotation from the LM head, batched; greedy (deterministic) unless sampling is
        asked for (`do_sample=True`); bad inputs come back with `error` set, order kept."""
        prepared = self._prepare_all(inputs)
        ok = [p for p in prepared if isinstance(p, PreparedImage)]
        notes = iter(self.annotate_prepared(ok, batch_size=batch_size, max_new_tokens=max_new_tokens, **generate_kwargs))
        return [next(notes) if isinstance(p, PreparedImage) else Annotation(p.path, error=p.error) for p in prepared]

    def annotate_prepared(
        self, items: Sequence[PreparedImage], *, batch_size: int | None = None, max_new_tokens: int = 160,
        **generate_kwargs,
    ) -> list[Annotation]:
        """Batched generation over prepared images (batches of one batch key: no padding); input order."""

        def generate(chunk: list[PreparedImage]) -> list[Annotation]:
            visuals = [it.visual for it in chunk]
            texts = self.model.annotate(visuals, max_new_tokens=max_new_tokens, **generate_kwargs)
            return [Annotation(it.path, text, parse_annotation(text)) for it, text in zip(chunk, texts)]

        return self._batched(items, batch_size, generate, Annotation)


def load(
    name: str | Path,
    *,
    device: str = "cpu",
    dtype: str = "float32",
    max_tiles: int | None = None,
    trust_remote_code: bool = False,
    revision: str | None = None,
) -> Scorer:
    """Load a scorer from a local model folder, a released model (preset name or hub id, e.g. "baidu/ERNIE-Image-Aes":
    downloaded and converted once into beholder's cache) or the hub id of a beholder model folder."""
    folder = resolve_folder(name, revision=revision)
    config = read_config(folder)
    if max_tiles is not None:
        config = config.replace(preprocess=dataclasses.replace(config.preprocess, max_tiles=max_tiles))
    model = load_model(folder, device=device, dtype=dtype, trust_remote_code=trust_remote_code, config=config)
    return Scorer(model, source=str(name), folder=folder)
