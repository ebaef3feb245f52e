"""The code's shape: the import graph has no cycles and its arrows point down the layers (ARCHITECTURE.md);
choice fields of the configs name what the registries hold."""

from __future__ import annotations

import ast
import typing
from pathlib import Path

import pytest

import beholder
from beholder.config import Activation, BackboneName, TemplateName
from beholder.model.adapters import ADAPTERS
from beholder.model.heads import ACTIVATIONS
from beholder.model.prompts import TEMPLATES

ROOT = Path(beholder.__file__).parent


def _modules() -> dict[str, Path]:
    modules = {}
    for path in ROOT.rglob("*.py"):
        parts = ("beholder", *path.relative_to(ROOT).with_suffix("").parts)
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The beholder modules `name` imports anywhere in its file (top level, functions, TYPE_CHECKING blocks)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join([*base, node.module] if node.module else base)
            submodules = {f"{module}.{alias.name}" for alias in node.names} & MODULES.keys()
            found.update(submodules)
            if len(submodules) < len(node.names):  # names defined in `module` itself
                found.add(module)
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "beholder"


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a path that returns to its start, or None."""
    state: dict[str, str] = {}

    def visit(node: str, trail: list[str]) -> list[str] | None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return trail[trail.index(nxt):] + [node, nxt] if nxt in trail else [node, nxt]
            if nxt not in state and (found := visit(nxt, [*trail, node])):
                return found
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node, [])):
            return found
    return None


def test_the_module_import_graph_has_no_cycles():
    assert _cycle(GRAPH) is None


def test_the_package_import_graph_has_no_cycles():
    packages: dict[str, set[str]] = {}
    for module, imported in GRAPH.items():
        own = _package(module)
        packages.setdefault(own, set()).update(_package(m) for m in imported if _package(m) != own)
    assert _cycle(packages) is None


def test_the_cycle_finder_finds_cycles():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("forbidden", ["convert", "presets", "hub"])
def test_the_model_package_knows_nothing_of_where_models_come_from(forbidden):
    """beholder.model is a leaf: neither it nor anything it imports reaches convert/, presets or hub/."""
    reached, todo = set(), [m for m in MODULES if m.startswith("beholder.model")]
    while todo:
        module = todo.pop()
        if module not in reached:
            reached.add(module)
            todo.extend(GRAPH[module])
    assert not {m for m in reached if _package(m) == forbidden}


def test_config_choices_are_the_registries_entries():
    assert set(typing.get_args(BackboneName)) == set(ADAPTERS)
    assert set(typing.get_args(TemplateName)) == set(TEMPLATES)
    assert set(typing.get_args(Activation)) == set(ACTIVATIONS)
