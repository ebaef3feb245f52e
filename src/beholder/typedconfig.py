"""Typed dataclass configs from YAML files and `key.sub=value` overrides, checked field by field.

YAML is loose where a config must not be: it reads `1e-4` as a string and `on` as a boolean. Every value is
therefore coerced to its field's declared type (int, float, bool, str, Literal choices, tuples, optional and
nested dataclasses), and an unknown key, a wrong type or a bad choice is an error naming the dotted field, so
a typo in a training config fails before any work starts, never silently trains with a default. NaN is no
value of any field, and a dataclass states its ranges in `__post_init__` with `positive` / `non_negative`.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from beholder.errors import UsageError, require

T = TypeVar("T")


class ConfigError(UsageError):
    """A config file or override that does not fit the config's dataclass."""


def positive(config: Any, *names: str) -> None:
    """Refuse unless every named field of `config` is > 0 (for use in `__post_init__`)."""
    for name in names:
        if not getattr(config, name) > 0:
            raise ConfigError(f"{name}: must be greater than 0, got {getattr(config, name)!r}")


def non_negative(config: Any, *names: str) -> None:
    """Refuse unless every named field of `config` is >= 0 (for use in `__post_init__`)."""
    for name in names:
        if not getattr(config, name) >= 0:
            raise ConfigError(f"{name}: must be 0 or more, got {getattr(config, name)!r}")


def from_dict(kind: type[T], data: Mapping[str, Any], where: str = "") -> T:
    """Build dataclass `kind` from plain data (as parsed from YAML/JSON), coercing and checking every field."""
    return _coerce(kind, data, where or kind.__name__)


def to_dict(config: Any) -> dict[str, Any]:
    """The plain-data form of a config dataclass (tuples become lists), ready for YAML or JSON."""
    return _plain(dataclasses.asdict(config))


def override(config: T, changes: Mapping[str, Any]) -> T:
    """A copy of dataclass `config` with dotted fields set (e.g. {"preprocess.decode.draft": True}), every value
    checked as a value read from a file is."""
    data = to_dict(config)
    for key, value in changes.items():
        _set_dotted(data, key, value)
    return from_dict(type(config), data)


def load(kind: type[T], path: str | Path | None = None, overrides: Sequence[str] = ()) -> T:
    """A config from an optional YAML file, then `dotted.key=value` overrides (values are parsed as YAML).

    A list item is addressed by its index: `sources.0.single_face=true`."""
    yaml = require("yaml", "train", "reading YAML configs")

    def parse(text: str, where: str) -> Any:
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{where}: not valid YAML: {exc}") from None

    data: dict[str, Any] = {}
    if path is not None:
        if not Path(path).is_file():
            raise ConfigError(f"{path}: no such config file")
        loaded = parse(Path(path).read_text(encoding="utf-8"), str(path))
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: a config file must be a mapping of field names to values")
        data = loaded or {}
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not of the form key.sub=value")
        _set_dotted(data, key.strip(), parse(text, f"override {item!r}"))
    return from_dict(kind, data)


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    *parents, last = key.split(".")
    node: dict[str, Any] | list[Any] = data
    for depth, part in enumerate(parents):
        where = ".".join(parents[: depth + 1])
        if isinstance(node, list):
            node = node[_list_index(node, part, where)]
        else:
            node = node.setdefault(part, {})
        if not isinstance(node, (dict, list)):
            raise ConfigError(f"override {key}: {where} is a value, not a section or a list")
    if isinstance(node, list):
        node[_list_index(node, last, key)] = value
    else:
        node[last] = value


def _list_index(items: list[Any], part: str, where: str) -> int:
    if not part.isdigit() or int(part) >= len(items):
        raise ConfigError(f"override {where}: the list has {len(items)} item(s), numbered from 0")
    return int(part)


def _coerce(kind: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(kind)
        if value is None:
            if type(None) in options:
                return None
            raise ConfigError(f"{where}: a value is required")
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return _coerce(option, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError("; ".join(errors))
    if origin is typing.Literal:
        choices = typing.get_args(kind)
        if value not in choices:
            raise ConfigError(f"{where}: {value!r} is not one of {list(choices)}")
        return value
    if origin is tuple:
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(kind)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(f"{where}: expected {len(args)} items, got {len(value)}")
        return tuple(_coerce(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        key_type, value_type = typing.get_args(kind)
        return {_coerce(key_type, k, where): _coerce(value_type, v, f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(kind):
        return _dataclass(kind, value, where)
    return _scalar(kind, value, where)


def _dataclass(kind: Any, value: Any, where: str) -> Any:
    if dataclasses.is_dataclass(value):
        value = dataclasses.asdict(value)
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a mapping of {kind.__name__} fields, got {value!r}")
    hints = typing.get_type_hints(kind)
    fields = {f.name: f for f in dataclasses.fields(kind)}
    unknown = sorted(set(value) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {unknown}; known: {sorted(fields)}")
    missing = [
        name
        for name, f in fields.items()
        if name not in value and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{where}: missing required field(s) {missing}")
    values = {name: _coerce(hints[name], v, f"{where}.{name}") for name, v in value.items()}
    try:
        return kind(**values)
    except ConfigError as exc:  # a range check of the dataclass: name the field by its full path
        raise ConfigError(f"{where}.{exc}") from None


def _scalar(kind: Any, value: Any, where: str) -> Any:
    if kind is Any:
        return value
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if kind in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            number = kind(value)  # "1e-4" (YAML reads it as a string) -> 0.0001
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected {kind.__name__}, got {value!r}") from None
        if kind is int and isinstance(value, float) and number != value:
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        if math.isnan(number):
            raise ConfigError(f"{where}: expected a number, got NaN")
        return number
    if kind is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    if isinstance(value, kind):
        return value
    raise ConfigError(f"{where}: expected {getattr(kind, '__name__', kind)}, got {value!r}")


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
