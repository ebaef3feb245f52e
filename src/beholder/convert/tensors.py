"""The source tensors of a checkpoint, read lazily and accounted for: every tensor is taken exactly once.

A converter that silently drops a tensor (an unmapped LoRA delta, a head it does not know, a renamed layer)
produces a model that loads and scores plausibly but wrongly. TensorSource makes that impossible: `take`
fails on a tensor already used, and `check_all_used` fails listing every tensor never taken.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import torch
from safetensors import safe_open


class ConversionError(ValueError):
    """The source checkpoint cannot be converted faithfully; the message says what was found and why."""


def _listing(names: list[str], shapes: dict[str, tuple[int, ...]], limit: int = 40) -> str:
    lines = [f"  {name} {shapes[name]}" for name in sorted(names)[:limit]]
    if len(names) > limit:
        lines.append(f"  ... and {len(names) - limit} more")
    return "\n".join(lines)


class TensorSource:
    """All tensors of the safetensors files in a checkpoint folder (sharded or not), by name; close() when done.

    Pickle formats (.bin, .pt, .pth) are never read: weights from the hub are untrusted input.
    """

    def __init__(self, folder: str | Path):
        folder = Path(folder)
        files = sorted(folder.glob("*.safetensors"))
        if not files:
            pickles = sorted(p.name for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pth"))
            hint = (
                f" It has pickle weights ({', '.join(pickles)}), which beholder never loads: pickles can run code. "
                "Convert them to safetensors on a machine you trust, or use a release that ships safetensors."
                if pickles
                else ""
            )
            raise ConversionError(f"{folder} has no .safetensors weights.{hint}")
        self._stack = ExitStack()
        self._file_of: dict[str, object] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        for path in files:
            handle = self._stack.enter_context(safe_open(path, framework="pt"))
            for name in handle.keys():  # noqa: SIM118 (a safetensors handle is not a mapping)
                if name in self._file_of:
                    raise ConversionError(f"tensor {name} appears in more than one file of {folder}")
                self._file_of[name] = handle
                self.shapes[name] = tuple(handle.get_slice(name).get_shape())
        self._used: set[str] = set()

    def close(self) -> None:
        self._stack.close()

    def __contains__(self, name: str) -> bool:
        return name in self._file_of

    def names(self, prefix: str = "") -> list[str]:
        """Names starting with `prefix`, used or not, in sorted order."""
        return sorted(n for n in self._file_of if n.startswith(prefix))

    def take(self, name: str) -> torch.Tensor:
        """The tensor `name`, marked as used; a second take of the same name is an error."""
        if name not in self._file_of:
            raise ConversionError(f"the checkpoint has no tensor {name}")
        if name in self._used:
            raise ConversionError(f"tensor {name} would be used twice")
        self._used.add(name)
        return self._file_of[name].get_tensor(name)

    def take_all(self, prefix: str) -> Iterator[tuple[str, torch.Tensor]]:
        """(name without prefix, tensor) for every unused tensor under `prefix`."""
        for name in self.names(prefix):
            if name not in self._used:
                yield name[len(prefix) :], self.take(name)

    def describe(self, prefix: str) -> str:
        """A listing of every tensor under `prefix` with its shape, for error messages."""
        return _listing(self.names(prefix), self.shapes) or "  (none)"

    def check_all_used(self) -> None:
        left = [n for n in self._file_of if n not in self._used]
        if left:
            raise ConversionError(
                f"{len(left)} tensors of the checkpoint have no place in the converted model, so converting "
                f"would silently drop them:\n{_listing(left, self.shapes)}"
            )


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConversionError(f"{path.parent} has no {path.name}") from None
    except ValueError as exc:
        raise ConversionError(f"{path} is not valid JSON: {exc}") from None
