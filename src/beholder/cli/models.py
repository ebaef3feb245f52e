"""`beholder models`: the model presets beholder knows, with their heads, scale and preprocessing."""

from __future__ import annotations

import argparse

from beholder.presets import list_models


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
