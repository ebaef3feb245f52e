"""The two Ray Data stages of distributed scoring: decode on CPU tasks, score on (GPU) actors.

    import ray, beholder.distributed as bd
    ds = ray.data.read_parquet("manifest.parquet")  # a `path` column; or read_binary_files(include_paths=True)
    prepared = ds.map_batches(bd.prepare_batch, fn_kwargs={"model": MODEL}, batch_size=16, batch_format="pyarrow")
    scored = prepared.map_batches(bd.ScoreBatch, fn_constructor_kwargs={"model": MODEL}, batch_size=32,
                                  batch_format="pyarrow", num_gpus=1, compute=ray.data.ActorPoolStrategy(size=4))

Rows in: `path` (the file to open, and the key written out) and/or `bytes` (an encoded image, e.g. from
`ray.data.read_binary_files(include_paths=True)` or a WebDataset member, opened instead of the path); an optional
`error` (a row that already failed passes through); any other column is carried to the output, renamed
`input_<name>` where it would clash with a score column, as `beholder score` does with manifest columns.
Rows out: `beholder score`'s columns (path, score, level, error, dim_<key>, head_<name>), then the carried ones.
An input that cannot be decoded or scored gets its `error` and null scores: a bad image never raises.

`ScoreBatch` also takes rows that were not prepared (it then decodes them itself); splitting the stages keeps
GPUs from waiting on JPEG decoding. Between the stages an image travels as its preprocessed pixels before
normalising (`Scorer.prepare(raw=True)`: uint8 square views, raw bytes + shape + dtype; 0.6 MB per 448-pixel tile
where float32 takes 2.4 MB), which the actor normalises on its device to the bit as the decode task would have.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
from PIL import Image

from beholder.distributed.preprocessor import cached_preprocessor
from beholder.errors import BeholderError
from beholder.io.readers import carried_names
from beholder.io.tables import changed_settings
from beholder.model.backbones import Visual
from beholder.results import ScoreResult
from beholder.scoring import PreparedImage, Scorer

# Columns of a prepared image between the stages (dropped from the output).
PIXELS, DTYPE, SHAPE, TOKENS, VISUAL_KEY, GRID = (
    f"__beholder_{name}" for name in ("pixels", "dtype", "shape", "tokens", "key", "grid")
)
PREPARED_COLUMNS = (PIXELS, DTYPE, SHAPE, TOKENS, VISUAL_KEY, GRID)
_CARRIED_DTYPES = ("uint8", "float32")  # raw square views; Qwen's patches
_INTS = pa.list_(pa.int64())
_STRING_COLUMNS = ("path", "level", "error")


def prepare_batch(
    batch: pa.Table,
    *,
    model: str,
    path_column: str = "path",
    bytes_column: str = "bytes",
    source_column: str | None = None,
    **load_options: Any,
) -> pa.Table:
    """map_batches function (CPU tasks): decode and preprocess every row as `model` does (`Scorer.prepare`).

    load_options: `beholder.load`'s keyword arguments that shape preprocessing (max_tiles, decode, ...), as the
        scoring actors get them.
    source_column: a column of files to open when it differs from the key in `path_column` (absolute paths
        for workers whose working folder is not the driver's).
    """
    scorer = cached_preprocessor(str(model), json.dumps(load_options, sort_keys=True))
    return _prepared(scorer, batch, path_column, bytes_column, source_column)


class ScoreBatch:
    """map_batches callable class (actors, one model each): score prepared rows, or raw `path`/`bytes` rows.

    model, load_options: as `beholder.load` takes them (device, dtype, max_tiles, decode, ...; device "auto",
        the default, is the actor's GPU when Ray gives it one).
    full: MetaVoter + 12 dimensions (default when the model has those heads) or the single-pass score.
    batch_size: images per forward pass; a map_batches batch is grouped by tile count into such passes, so a
        map_batches batch a few times larger makes fuller passes.
    expected_settings: the run settings the driver planned with (`beholder.pipeline.run_settings`): an actor
        whose model or preprocessing differs (another copy of the weights on this node, say) refuses to start.
    """

    def __init__(
        self,
        model: str,
        *,
        full: bool | None = None,
        batch_size: int = 8,
        path_column: str = "path",
        bytes_column: str = "bytes",
        expected_settings: dict[str, Any] | None = None,
        **load_options: Any,
    ):
        from transformers.utils import logging

        from beholder.pipeline import run_settings
        from beholder.scoring import load

        logging.set_verbosity_error()
        logging.disable_progress_bar()
        self.scorer: Scorer = load(model, **{"device": "auto", "dtype": "auto", **load_options})
        self.full = self.scorer.full_scoring(full)
        if expected_settings is not None:
            _check_settings(run_settings(self.scorer, self.full), expected_settings)
        self.batch_size = batch_size
        self.path_column, self.bytes_column = path_column, bytes_column
        self.score_columns = self._score_columns()

    def __call__(self, batch: pa.Table) -> pa.Table:
        if PIXELS not in batch.column_names:
            batch = _prepared(self.scorer, batch, self.path_column, self.bytes_column)
        keys = _values(batch, self.path_column)
        visuals = _visuals(batch)
        ready = [PreparedImage(key, visual) for key, visual in zip(keys, visuals) if visual is not None]
        scored = iter(self.scorer.score_prepared(ready, full=self.full, batch_size=self.batch_size))
        rows = [
            next(scored).to_row() if visual is not None else {"error": error}
            for visual, error in zip(visuals, _values(batch, "error"))
        ]
        columns = {name: pa.array([row.get(name) for row in rows], _type(name)) for name in self.score_columns}
        columns["path"] = pa.array(keys, pa.string())
        internal = {self.path_column, "error", *PREPARED_COLUMNS}
        carried = [name for name in batch.column_names if name not in internal]
        for name, output_name in carried_names(carried).items():
            columns[output_name] = batch[name]
        return pa.table(columns)

    def _score_columns(self) -> list[str]:
        """The score columns this model writes, from scoring one plain image: every output batch carries all of
        them (null on error rows), so blocks and shards all have one schema. Also a warm-up and a health check."""
        [probe] = self.scorer.score([Image.new("RGB", (64, 64), (128, 128, 128))], full=self.full, batch_size=1)
        if not probe.ok:
            raise BeholderError(f"the model cannot score a plain grey test image: {probe.error}")
        return list(probe.to_row())


def _prepared(
    scorer: Scorer, batch: pa.Table, path_column: str, bytes_column: str, source_column: str | None = None
) -> pa.Table:
    """`batch` with each row's visual inputs (or its error) in place of its image bytes / source."""
    keys = _values(batch, path_column)
    sources = _values(batch, bytes_column)
    if source_column is not None:
        sources = [blob if blob is not None else path for blob, path in zip(sources, _values(batch, source_column))]
    visuals: list[Visual | None] = []
    errors: list[str | None] = []
    for key, source, error in zip(keys, sources, _values(batch, "error")):
        visual = None
        if error is None:  # a row that failed upstream is not opened
            source = source if source is not None else key
            if source is None:
                error = "InputError: the row has neither a path nor image bytes"
            else:
                try:
                    visual = scorer.prepare(source, path=key, raw=True).visual
                except Exception as exc:  # any failure to decode one input becomes its row, never the end of the run
                    error = ScoreResult.failed(key, exc).error
                    if isinstance(source, str) and key and source != key:
                        error = error.replace(source, key)  # name the input as the user wrote it
        visuals.append(visual)
        errors.append(error)
    consumed = [c for c in (bytes_column, source_column, "error") if c is not None and c in batch.column_names]
    table = batch.drop_columns(consumed).append_column("error", pa.array(errors, pa.string()))

    for name, encode, type_ in _ENCODERS:
        table = table.append_column(name, pa.array([None if v is None else encode(v) for v in visuals], type_))
    return table


def _pixel_bytes(visual: Visual) -> bytes:
    if visual.pixels.dtype.name not in _CARRIED_DTYPES:
        raise TypeError(f"preprocessing gave {visual.pixels.dtype} pixels; the stages carry {_CARRIED_DTYPES}")
    return np.ascontiguousarray(visual.pixels).tobytes()


_ENCODERS = (
    (PIXELS, _pixel_bytes, pa.large_binary()),
    (DTYPE, lambda v: v.pixels.dtype.name, pa.string()),
    (SHAPE, lambda v: list(v.pixels.shape), _INTS),
    (TOKENS, lambda v: v.n_tokens, pa.int64()),
    (VISUAL_KEY, lambda v: list(v.key), _INTS),
    (GRID, lambda v: v.grid_thw and list(v.grid_thw), _INTS),
)


def _visuals(batch: pa.Table) -> list[Visual | None]:
    pixels, dtypes = batch[PIXELS], batch[DTYPE].to_pylist()
    shapes, tokens = batch[SHAPE].to_pylist(), batch[TOKENS].to_pylist()
    keys, grids = batch[VISUAL_KEY].to_pylist(), batch[GRID].to_pylist()
    visuals: list[Visual | None] = []
    for i, shape in enumerate(shapes):
        if shape is None:
            visuals.append(None)
            continue
        array = np.frombuffer(pixels[i].as_buffer(), dtype=dtypes[i]).reshape(shape)
        visuals.append(Visual(array, tokens[i], tuple(keys[i]), tuple(grids[i]) if grids[i] else None))
    return visuals


def _values(batch: pa.Table, name: str) -> list[Any]:
    return batch[name].to_pylist() if name in batch.column_names else [None] * batch.num_rows


def _type(name: str) -> pa.DataType:
    return pa.string() if name in _STRING_COLUMNS else pa.float64()


def _check_settings(actual: dict[str, Any], expected: dict[str, Any]) -> None:
    actual, expected = (json.loads(json.dumps(s, default=str)) for s in (actual, expected))
    if actual != expected:
        a, e = actual.get("scorer", {}), expected.get("scorer", {})
        differ = changed_settings(a, e) or ["mode"]
        raise BeholderError(
            f"this worker's model differs from the one the run was planned with (differ: {', '.join(differ)}): "
            "every node must see the same model files"
        )
