"""`beholder` command line: a thin layer that parses flags and calls the library.

Each subcommand module exposes `register(subparsers)`, which adds its parser and sets `func`, a function of
the parsed args returning the process exit status.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Subcommand modules, in the order `beholder --help` lists them.
_COMMAND_MODULES = ("score", "curate", "evaluate", "annotate", "serve", "data", "train", "models", "convert")


def build_parser() -> argparse.ArgumentParser:
    from beholder import __version__

    parser = argparse.ArgumentParser(
        prog="beholder",
        description="Image aesthetic assessment with vision-language models: score, curate, evaluate.",
    )
    parser.add_argument("--version", action="version", version=f"beholder {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        importlib.import_module(f"beholder.cli.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
