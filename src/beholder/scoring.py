"""Scorer: images in, ScoreResults out, batched and grouped so no batch ever needs padding.

`prepare` (decode + preprocess, CPU, thread-safe) and `score_prepared` (batched inference) are separate so a
pipeline can decode in worker threads while the model runs; `score` chains them for small in-memory jobs.
"""

from __future__ import annotations

import dataclasses
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from beholder.config import ModelConfig
from beholder.hub import resolve_folder
from beholder.images import ImageError, ImageSource
from beholder.model.aesthetic import AestheticModel, HeadOutputs
from beholder.model.backbones import Visual
from beholder.model.folder import load_model, read_config
from beholder.model.weights import weights_sha256
from beholder.preprocess import decode_image
from beholder.results import ScoreResult
from beholder.standard import DIMENSIONS, DISPLAY_NAMES, LEVELS, score_to_level
from beholder.typedconfig import override


@dataclass
class PreparedImage:
    path: str | None  # identifier carried into the result
    visual: Visual


@dataclass
class Annotation:
    path: str | None
    text: str | None = None  # the generated 12-line answer
    levels: dict[str, str] = dataclasses.field(default_factory=dict)  # dimension key -> level parsed from text
    error: str | None = None


def _path_of(source: ImageSource, path: str | None) -> str | None:
    if path is not None:
        return path
    return None if isinstance(source, (bytes, bytearray)) or hasattr(source, "getpixel") else str(source)


class Scorer:
    def __init__(
        self,
        model: AestheticModel,
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
        image = decode_image(source, self.config.preprocess)
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
        full = self.full_scoring(full)
        groups: dict[tuple, list[int]] = defaultdict(list)
        for i, item in enumerate(items):
            groups[self.batch_key(item)].append(i)
        results: list[ScoreResult | None] = [None] * len(items)
        step = batch_size or len(items) or 1
        for indices in groups.values():
            for start in range(0, len(indices), step):
                chunk = indices[start : start + step]
                for i, result in zip(chunk, self._run([items[i] for i in chunk], full)):
                    results[i] = result
        return results  # type: ignore[return-value]

    def _run(self, items: list[PreparedImage], full: bool) -> list[ScoreResult]:
        forward = self.model.score_full if full else self.model.score_fast
        try:
            return self._results(items, forward([it.visual for it in items]))
        except (RuntimeError, ValueError) as exc:
            if len(items) == 1:
                return [ScoreResult.failed(items[0].path, exc)]
            return [r for item in items for r in self._run([item], full)]

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
                    level=score_to_level(normalised),
                    dimensions=dict(zip(DIMENSIONS, dims[i])) if dims else {},
                    heads={name: values[i] for name, values in heads.items()},
                )
            )
        return results

    # ---- annotation --------------------------------------------------------------------------------------------

    def annotate(self, inputs: Iterable[ImageSource], *, max_new_tokens: int = 160, **generate_kwargs) -> list[Annotation]:
        """The 12-line expert annotation from the LM head; greedy (deterministic) unless sampling is asked for."""
        annotations = []
        for item in self._prepare_all(inputs):
            if isinstance(item, ScoreResult):
                annotations.append(Annotation(item.path, error=item.error))
                continue
            [text] = self.model.annotate([item.visual], max_new_tokens=max_new_tokens, **generate_kwargs)
            annotations.append(Annotation(item.path, text, parse_annotation(text)))
        return annotations


_LINE = re.compile(r"^\s*\d+\s*\.\s*(?P<name>[^:]+?)\s*:\s*(?P<level>\w+)", re.MULTILINE)
_KEY_BY_NAME = {name.lower(): key for key, name in DISPLAY_NAMES.items()}


def parse_annotation(text: str) -> dict[str, str]:
    """'{i}. {Name} : {level}' lines -> {dimension key: level}; lines that are not of that form are skipped."""
    levels = {}
    for match in _LINE.finditer(text):
        key, level = _KEY_BY_NAME.get(match["name"].lower()), match["level"].lower()
        if key and level in LEVELS:
            levels[key] = level
    return levels


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
) -> Scorer:
    """A Scorer for a local model folder, a released model (preset name or hub id, e.g. "baidu/ERNIE-Image-Aes":
    downloaded and converted once into beholder's cache) or the hub id of a beholder model folder.

    max_tiles: most tiles per image, replacing the model's (tiled models).
    decode: DecodeConfig fields replacing the model's, each a departure from what the reference code does:
        {"draft": True} (faster JPEG decoding at reduced scale), {"exif_transpose": True}, {"alpha": "white"}.
    allow_pickle: load backbone weights from pickle files when the folder has no safetensors (pickles can run code).
    The changed settings are recorded in `Scorer.provenance["overrides"]`.
    """
    folder, config, overrides = configure(name, max_tiles=max_tiles, decode=decode, revision=revision)
    model = load_model(folder, device=device, dtype=dtype, config=config, trust_remote_code=trust_remote_code,
                       allow_pickle=allow_pickle)
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
