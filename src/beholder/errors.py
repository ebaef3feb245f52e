"""The failures a user can act on, as types. The command line prints them as one message, never a traceback,
and maps them to its exit status (see `beholder.cli.exits`); the library raises them like any exception.

    BeholderError       the work could not run or finish: a missing file, a model that does not load, an output
                        another run holds, an interrupted run
      UsageError        what was asked is invalid: an option value, a config field of the wrong type or range
      MissingDependency an optional dependency is not installed; the message names the extra that brings it

An input that cannot be scored is not an error of this kind: it becomes a row with `error` set.
"""

from __future__ import annotations

import importlib
from types import ModuleType


class BeholderError(Exception):
    """The work could not run or finish, for a reason the message states."""


class UsageError(BeholderError, ValueError):
    """An invalid request: a bad option or config value. (A ValueError, as Python code would expect.)"""


class MissingDependency(BeholderError, ImportError):
    """An optional dependency is missing; the message says which `pip install 'beholder[extra]'` brings it."""


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import an optional dependency, or fail saying what needs it and which extra to install.

    `require("peft", "train", "LoRA training")` returns the module; without it: "LoRA training needs peft: pip
    install 'beholder[train]'"."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        package = exc.name or module.partition(".")[0]
        raise MissingDependency(f"{purpose} needs {package}: pip install 'beholder[{extra}]'") from exc
