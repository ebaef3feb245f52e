"""Strict JSON for reports: statistics that cannot be computed are NaN, and JSON has no NaN or Infinity."""

from __future__ import annotations

import json
import math
from typing import Any


def nan_to_none(value: Any) -> Any:
    """`value` with every non-finite float, at any depth of dicts, lists and tuples, replaced by None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: nan_to_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [nan_to_none(v) for v in value]
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """json.dumps of `value` with non-finite floats as null, refusing anything else JSON cannot hold."""
    return json.dumps(nan_to_none(value), allow_nan=False, **kwargs)
