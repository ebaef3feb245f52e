"""Scorer: images in, ScoreResults out, batched and grouped so no batch ever needs padding.

`prepare` (decode + preprocess, CPU, thread-safe) and `score_prepared` (batched inference) are separate so a
pipeline can decode in worker threads while the model runs; `score` chains them for small in-memory jobs.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from beholder.config import ModelConfig
from beholder.hub import resolve_folder
from beholder.images import ImageError, ImageSource
from beholder.model.backbones import Visual
from beholder.model.folder import ScoringModel, load_model, read_config
from beholder.model.heads import HeadOutputs
from beholder.model.weights import weights_sha256
from beholder.preprocess import decode_image
from beholder.results import Annotation, ScoreResult, parse_annotation
from beholder.standard import DIMENSIONS, score_to_level
from beholder.typedconfig import override


@dataclass
class PreparedImage:
    path: str | None  # identifier carried into the result
    visual: Visual


def _path_of(source: ImageSource, path: str | None) -> str | None:
    if path is not None:
        return path
    return None if isinstance(source, (bytes, bytearray)) or hasattr(source, "getpixel") else str(source)


class Scorer:
    def __init__(
        self,
        model: ScoringModel,
        *,
        source: str | None = None,
        folder: Path | None = None,
        overrides: dict[str, Any] | None = None,
    ):
        self.model = model
        self.config = model.config
        self.source = source or self.config.name  # what the user asked for: a hub id, a path or a preset
        self.folder = folder
        self.overrides = overrides or {}  # settings changed from the model folder's own at load, dotted name -> value

    @property
    def scale(self) -> tuple[float, float]:
        return tuple(self.config.scale)

    @property
    def annotates(self) -> bool:
        """Whether the model has a language model to write annotations with (image towers have none)."""
        return self.model.tokenizer is not None

    @property
    def has_full(self) -> bool:
        return self.config.has_full

    def full_scoring(self, full: bool | None) -> bool:
        """Whether to run full scoring (MetaVoter + 12 dimensions): `full`, or by default when the model can.
        Asking for it from a model without the heads it needs is an error, raised here and nowhere else."""
        if full is None:
            return self.has_full
        if full and not self.has_full:
            raise ValueError(
                f"{self.source}: full scoring needs the Expert head and the MetaVoter, which this model does not "
                "have; use fast scoring"
            )
        return full

    @cached_property
    def provenance(self) -> dict[str, Any]:
        import transformers

        from beholder.version import __version__

        hf = self.model.hf_model
        return {
            "model": self.config.name,
            "source": self.source,
            "hub_id": self.config.hub_id,
            "weights_sha256": weights_sha256(self.model.weights_files) if self.model.weights_files else None,
            "backbone": self.config.backbone,
            "scale": list(self.scale),
            "preprocess": dataclasses.asdict(self.config.preprocess),
            "overrides": self.overrides,
            "prompt": dataclasses.asdict(self.config.prompt) if self.model.tokenizer is not None else None,
            "dtype": str(hf.dtype).removeprefix("torch."),
            "fused": self.model.fused,  # layers running beholder's fused forward (empty: transformers' own)
            "device": str(hf.device),
            "beholder_version": __version__,
            "transformers_version": transformers.__version__,
            "torch_version": torch.__version__,
        }

    # ---- preparing ---------------------------------------------------------------------------------------------

    def prepare(self, source: ImageSource, path: str | None = None, *, raw: bool | None = None) -> PreparedImage:
        """Decode and preprocess one image. Raises ImageError for input that is not a usable image.

        raw: leave square views as uint8, to be normalised where the item is scored, on the model's device
        (Backbone.raw_visual), to the bit as here: a quarter of the bytes, for handing items to another process.
        None (the default): raw when the model is on a GPU, which then gets half the bytes of a bfloat16 copy and
        spares the decode threads the normalising; finished (float32) for a model on the CPU."""
        image = decode_image(source, self.config.preprocess)
        backbone = self.model.backbone
        if raw is None:
            raw = backbone.normalises_on_device
        try:
            visual = backbone.raw_visual(image) if raw else backbone.visual(image)
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
        full = self.full_scoring(full)
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
        named = {name: t.tolist() for name, t in out.scores.items()}
        dims = out.dimensions.tolist() if out.dimensions is not None else None
        results = []
        for i, item in enumerate(items):
            normalised = final[i]
            results.append(
                ScoreResult(
                    path=item.path,
                    score=lo + normalised * (hi - lo),
                    level=score_to_level(normalised),
                    dimensions=dict(zip(DIMENSIONS, dims[i])) if dims else {},
                    heads={name: values[i] for name, values in heads.items()},
                    scores={name: lo + values[i] * (hi - lo) for name, values in named.items()},
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
    decode: Mapping[str, Any] | None = None,
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
    revision: str | None = None,
    fused: bool = True,
) -> Scorer:
    """A Scorer for a local model folder, a released model (preset name or hub id, e.g. "baidu/ERNIE-Image-Aes":
    downloaded and converted once into beholder's cache) or the hub id of a beholder model folder.

    max_tiles: most tiles per image, replacing the model's (tiled models).
    decode: DecodeConfig fields replacing the model's, each a departure from what the reference code does:
        {"draft": True} (faster JPEG decoding at reduced scale), {"exif_transpose": True}, {"alpha": "white"}.
    allow_pickle: load backbone weights from pickle files when the folder has no safetensors (pickles can run code).
    fused: run the fused forward (beholder.model.fused: packed weights, fused kernels; the same maths, equal to
        transformers' to float32 rounding); False keeps transformers' layers.
    The changed settings are recorded in `Scorer.provenance["overrides"]`.
    """
    folder, config, overrides = configure(name, max_tiles=max_tiles, decode=decode, revision=revision)
    model = load_model(folder, device=device, dtype=dtype, config=config, trust_remote_code=trust_remote_code,
                       allow_pickle=allow_pickle, fused=fused)
    return Scorer(model, source=str(name), folder=folder, overrides=overrides)


def configure(
    name: str | Path,
    *,
    max_tiles: int | None = None,
    decode: Mapping[str, Any] | None = None,
    revision: str | None = None,
) -> tuple[Path, ModelConfig, dict[str, Any]]:
    """The folder `name` resolves to, its config with `load`'s changes applied, and those changes by dotted name."""
    folder = resolve_folder(name, revision=revision)
    overrides: dict[str, Any] = {} if max_tiles is None else {"preprocess.max_tiles": max_tiles}
    overrides.update({f"preprocess.decode.{key}": value for key, value in (decode or {}).items()})
    return folder, override(read_config(folder), overrides), overrides
