"""`beholder models`: the model presets beholder knows, with their heads, scale and preprocessing."""

from __future__ import annotations

import argparse

from beholder.presets import PRESETS


def list_models() -> list[dict]:
    """One row per preset: name, scale, heads, preprocessing mode, hub id and licence."""
    rows = []
    for name, config in PRESETS.items():
        heads = [h for h in ("level", "regression", "expert", "metavoter") if getattr(config.heads, h)]
        rows.append({
            "name": name,
            "scale": f"{config.scale[0]:g}-{config.scale[1]:g}",
            "heads": "+".join(heads),
            "preprocess": config.preprocess.mode,
            "hub_id": config.hub_id or "-",
            "license": config.license or "-",
        })
    return rows


def _run(args: argparse.Namespace) -> int:
    rows = list_models()
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for row in rows:
        print("  ".join(str(row[c]).ljust(widths[c]) for c in columns))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("models", help="list the model presets", description=__doc__)
    parser.set_defaults(func=_run)
