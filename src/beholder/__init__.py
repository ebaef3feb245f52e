"""beholder: image aesthetic assessment with vision-language models.

The light parts (the 12-dimension standard, result rows) import at once; the model stack (torch,
transformers) loads on first use of `load`, `Scorer`, `Annotation` or `testing`, so `beholder --help` and the
table-only commands start fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from beholder.results import ScoreResult
from beholder.standard import DIMENSIONS, LEVELS
from beholder.version import __version__

_LAZY = {"load": "beholder.scoring", "Scorer": "beholder.scoring", "Annotation": "beholder.scoring",
         "testing": "beholder.testing", "list_models": "beholder.presets"}

if TYPE_CHECKING:
    from beholder import testing
    from beholder.presets import list_models
    from beholder.scoring import Annotation, Scorer, load


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'beholder' has no attribute {name!r}")
    module = importlib.import_module(_LAZY[name])
    value = module if module.__name__ == f"beholder.{name}" else getattr(module, name)
    globals()[name] = value
    return value


__all__ = [
    "DIMENSIONS", "LEVELS", "Annotation", "ScoreResult", "Scorer", "list_models", "load", "testing", "__version__",
]
