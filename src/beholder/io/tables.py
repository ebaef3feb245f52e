"""Score tables on disk: one flat schema, three formats (.jsonl, .csv, .parquet), provenance alongside.

Every column has one type in every file: a carried column whose values have different types (1 in one
manifest, "hello" in another) is written as text, values that are not strings as JSON. Keys in the `path`
column are written in the escaped form of `beholder.io.keys`, so a file name of any bytes survives.

Every score table carries its provenance (which model, weights, preprocessing and beholder version made it)
in a sidecar `OUT.provenance.json` that any user can open; Parquet files also hold the same JSON in their
schema metadata under `beholder.provenance`, so the file stays self-describing when copied alone.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from beholder.errors import BeholderError, UsageError
from beholder.files import atomic_write
from beholder.io.keys import key_to_text, printable
from beholder.results import BASE_COLUMNS, DIM_PREFIX, HEAD_PREFIX, SCORE_PREFIX, STAGE1_SCORE
from beholder.standard import DIMENSIONS

FORMATS: dict[str, str] = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}
PROVENANCE_KEY = b"beholder.provenance"
PROVENANCE_SUFFIX = ".provenance.json"
# Columns whose type is fixed by the schema, whatever a CSV or JSONL reader would guess from the values.
_STRING_COLUMNS = ("path", "level", "error")


class TableError(BeholderError, ValueError):
    """A file that is not a readable table of the format its name says."""


def table_format(path: str | os.PathLike) -> str:
    """ "jsonl" | "csv" | "parquet" from the file name; a clear error for anything else."""
    suffix = Path(path).suffix.lower()
    try:
        return FORMATS[suffix]
    except KeyError:
        raise UsageError(f"{path}: unknown table format {suffix!r}; use one of {', '.join(FORMATS)}") from None


def provenance_path(path: str | os.PathLike) -> Path:
    return Path(f"{os.fspath(path)}{PROVENANCE_SUFFIX}")


def is_score_column(name: str) -> bool:
    return name.startswith((DIM_PREFIX, HEAD_PREFIX, SCORE_PREFIX)) or name in ("score", STAGE1_SCORE)


def order_columns(names: Iterable[str]) -> list[str]:
    """Canonical column order: path, score, level, error, score_<name> in first-seen (the model's) order,
    dim_<key> in official order, head_<name>, then the rest (carried columns) in first-seen order. Keeps every
    output the same shape whatever came first."""
    names = list(dict.fromkeys(names))
    scores = [n for n in names if n.startswith(SCORE_PREFIX)]
    dims = [DIM_PREFIX + key for key in DIMENSIONS if DIM_PREFIX + key in names]
    heads = [n for n in names if n.startswith(HEAD_PREFIX)]
    base = [n for n in BASE_COLUMNS if n in names]
    placed = {*base, *scores, *dims, *heads}
    return base + scores + dims + heads + [n for n in names if n not in placed]


def rows_to_table(rows: Sequence[dict[str, Any]]) -> pa.Table:
    """Rows with possibly different keys (error rows have no dim_ columns) -> one table, missing cells null.

    Row values are as the pipeline holds them: keys in `path` are written in their escaped text form."""
    names = order_columns(name for row in rows for name in row)
    columns = {name: [row.get(name) for row in rows] for name in names}
    if "path" in columns:
        columns["path"] = [None if key is None else key_to_text(key) for key in columns["path"]]
    return pa.table({name: to_array(values) for name, values in columns.items()})


def to_array(values: Sequence[Any]) -> pa.Array:
    """Python values -> an Arrow array; values of different types become one text column (JSON for the ones
    that are not strings), text any terminal and table can hold."""
    values = [printable(v) if isinstance(v, str) else v for v in values]
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([_as_text(v) for v in values], pa.string())


def _as_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def unify(schemas: Sequence[pa.Schema]) -> pa.Schema:
    """One schema for tables written at different times: null columns take the type seen elsewhere, ints
    widen to floats, a column with types that do not widen into one another becomes text, and columns come in
    canonical order."""
    fields: dict[str, list[pa.Field]] = {}
    for schema in schemas:
        for f in schema:
            fields.setdefault(f.name, []).append(f)
    merged = {name: _unify_field(name, found) for name, found in fields.items()}
    return pa.schema([merged[name] for name in order_columns(merged)])


def _unify_field(name: str, fields: list[pa.Field]) -> pa.Field:
    try:
        return pa.unify_schemas([pa.schema([f]) for f in fields], promote_options="permissive").field(0)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.field(name, pa.string())


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` with exactly `schema`'s columns (absent ones null), cast to its types."""
    columns = [
        _cast(table[field.name], field.type) if field.name in table.column_names else pa.nulls(len(table), field.type)
        for field in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def _cast(column: pa.ChunkedArray, type_: pa.DataType) -> pa.ChunkedArray:
    if column.type == type_:
        return column
    if pa.types.is_string(type_) and pa.types.is_nested(column.type):  # Arrow has no cast from nested to text
        return pa.chunked_array([pa.array([_as_text(v) for v in column.to_pylist()], pa.string())])
    return column.cast(type_)


def read_table(
    path: str | os.PathLike, *, columns: Sequence[str] | None = None, string_columns: Sequence[str] = ()
) -> pa.Table:
    """Read any .jsonl/.csv/.parquet table (a manifest, say), or a folder of Parquet shards named *.parquet (as
    `score --engine ray` writes). `string_columns` stay strings even where a CSV value looks like a number (a path
    "001" is not the number 1)."""
    path = Path(path)
    fmt = table_format(path)
    if not (path.is_file() or (fmt == "parquet" and path.is_dir())):
        raise FileNotFoundError(errno.ENOENT, "no such file" if not path.exists() else "not a file", str(path))
    strings = dict.fromkeys(string_columns, pa.string())
    wanted = list(columns) if columns else None
    try:
        if fmt == "parquet":
            table = pq.read_table(path, columns=wanted)
        elif fmt == "csv":
            options = pa_csv.ConvertOptions(column_types=strings, strings_can_be_null=True, include_columns=wanted)
            quoted_newlines = pa_csv.ParseOptions(newlines_in_values=True)  # a file name may hold a newline
            table = pa_csv.read_csv(path, parse_options=quoted_newlines, convert_options=options)
        else:
            table = _read_jsonl_table(path)
            if wanted:
                table = table.select([c for c in wanted if c in table.column_names])
        return _cast_columns(table, lambda name: strings.get(name))
    except (pa.ArrowException, ValueError) as exc:  # not a table of its format, or a column of the wrong type
        raise TableError(f"{path}: cannot read it as a {fmt} table: {exc}") from exc


def _read_jsonl_table(path: Path) -> pa.Table:
    try:
        return pa_json.read_json(path)
    except pa.ArrowInvalid:  # a column whose values change type between rows: read row by row, as text
        rows = list(read_jsonl(path))
        names = list(dict.fromkeys(name for row in rows for name in row))
        return pa.table({name: to_array([row.get(name) for row in rows]) for name in names})


def read_scores(
    path: str | os.PathLike, *, columns: Sequence[str] | None = None, string_columns: Sequence[str] = ()
) -> pa.Table:
    """Read a score table: `path`, `level`, `error` (and `string_columns`) as strings, `score`, `dim_` and
    `head_` columns as float64, whatever a CSV or JSONL reader would guess from the values."""
    table = read_table(path, columns=columns, string_columns=(*_STRING_COLUMNS, *string_columns))
    return _cast_columns(table, lambda name: pa.float64() if is_score_column(name) else None)


def _cast_columns(table: pa.Table, type_of: Callable[[str], pa.DataType | None]) -> pa.Table:
    for i, name in enumerate(table.column_names):
        target = type_of(name)
        if target is not None and table.schema.field(i).type != target:
            table = table.set_column(i, name, table[name].cast(target))
    return table


def read_provenance(path: str | os.PathLike) -> dict[str, Any] | None:
    """The provenance of a score table: the sidecar if present, else Parquet metadata, else None."""
    sidecar = provenance_path(path)
    if sidecar.exists():
        return json.loads(sidecar.read_text())
    if table_format(path) == "parquet":
        metadata = pq.read_schema(path).metadata or {}
        if PROVENANCE_KEY in metadata:
            return json.loads(metadata[PROVENANCE_KEY])
    return None


def paths_base(path: str | os.PathLike, provenance: dict[str, Any] | None) -> str:
    """The folder a score table's relative paths are relative to: the one recorded when it was scored
    (`paths_relative_to` in its provenance), else the table's own folder."""
    return (provenance or {}).get("paths_relative_to") or os.path.dirname(os.path.abspath(path))


class TableWriter:
    """Streams tables of one schema into a .jsonl/.csv/.parquet file.

    Parquet keeps types and provenance metadata; CSV writes nested values (lists, dicts from a manifest) as
    JSON text since CSV has no nesting; JSONL writes one JSON object per row.
    """

    def __init__(self, path: str | os.PathLike, schema: pa.Schema, *, fmt: str, provenance: dict[str, Any] | None):
        self.path = Path(path)
        self.format = fmt
        self.schema = schema
        self._file = open(self.path, "wb")
        self._writer: pq.ParquetWriter | pa_csv.CSVWriter | None = None
        if fmt == "parquet":
            metadata = {PROVENANCE_KEY: json.dumps(provenance).encode()} if provenance else None
            self._writer = pq.ParquetWriter(self._file, schema.with_metadata(metadata))
        elif fmt == "csv":
            self._writer = pa_csv.CSVWriter(self._file, pa.schema([_csv_field(f) for f in schema]))

    def write(self, table: pa.Table) -> None:
        table = conform(table, self.schema)
        if self.format == "parquet":
            self._writer.write_table(table)
        elif self.format == "csv":
            self._writer.write_table(_flatten_nested(table))
        else:
            for row in table.to_pylist():
                self._file.write(json.dumps(row, ensure_ascii=False, default=str).encode() + b"\n")

    def close(self) -> None:
        """Finish the file and force it to disk (callers rename it into place next)."""
        if self._writer is not None:
            self._writer.close()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()

    def __enter__(self) -> TableWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _is_nested(type_: pa.DataType) -> bool:
    return pa.types.is_nested(type_) or pa.types.is_null(type_)


def _csv_field(field: pa.Field) -> pa.Field:
    return field.with_type(pa.string()) if _is_nested(field.type) else field


def _flatten_nested(table: pa.Table) -> pa.Table:
    for i, field in enumerate(table.schema):
        if _is_nested(field.type):
            text = [None if v is None else json.dumps(v, ensure_ascii=False, default=str) for v in table[i].to_pylist()]
            table = table.set_column(i, field.name, pa.array(text, pa.string()))
    return table


def write_table(path: str | os.PathLike, table: pa.Table, provenance: dict[str, Any] | None = None) -> None:
    """Write a whole table atomically (temp file, fsync, rename) with its provenance sidecar."""
    path = Path(path)
    with atomic_write(path) as tmp:
        with TableWriter(tmp, table.schema, fmt=table_format(path), provenance=provenance) as writer:
            writer.write(table)
        if provenance is not None:
            write_json_atomic(provenance_path(path), provenance)


def changed_settings(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """The settings two runs' records disagree on, as dotted paths into nested dicts ("scorer.dtype"), sorted:
    what a refused resume names."""
    stored, current = _dotted(stored), _dotted(current)
    return sorted(key for key in stored.keys() | current.keys() if stored.get(key) != current.get(key))


def _dotted(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_dotted(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON whole or not at all. A lone surrogate (a file name that is not UTF-8) is written as the JSON
    escape \\udcXX, which reads back as the same string."""
    text = json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n"
    with atomic_write(path) as tmp:
        tmp.write_bytes(text.encode("utf-8", "backslashreplace"))


def read_jsonl(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """Rows of a jsonl file; blank lines are skipped, a malformed line is an error naming its line number."""
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    raise TableError(f"{path}:{number}: not a JSON object: {exc}") from None
