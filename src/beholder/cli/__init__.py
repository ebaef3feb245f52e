"""`beholder` command line: a thin layer that parses flags and calls the library.

Each subcommand module exposes `register(subparsers)`, which adds its parser and sets `func`, a function of
the parsed args returning the number of inputs that failed (or None); whatever it raises is mapped to the one
exit-status table of `beholder.cli.exits`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from beholder.cli.exits import EXIT_USAGE, run_command

# Each command and the module that registers it, in the order `beholder --help` lists them.
_COMMANDS = {
    "score": "score", "select": "curate", "compare": "curate", "review": "review", "evaluate": "evaluate",
    "annotate": "annotate", "serve": "serve", "data": "data", "train": "train", "models": "models", "convert": "convert",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or of `command` alone: a command starts without importing the others'
    dependencies (evaluate's scipy and matplotlib do not slow down `select`)."""
    from beholder import __version__

    parser = argparse.ArgumentParser(
        prog="beholder",
        description="Image aesthetic assessment with vision-language models: score, curate, evaluate.",
    )
    parser.add_argument("--version", action="version", version=f"beholder {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = [_COMMANDS[command]] if command in _COMMANDS else _COMMANDS.values()
    for name in dict.fromkeys(modules):
        importlib.import_module(f"beholder.cli.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    # transformers' own loading and saving bars and advisories are noise in beholder's output; set before
    # transformers is imported (also by the processes a command starts), a user's own setting wins.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    if "transformers" in sys.modules:  # imported already (main called from Python): tell it directly
        from transformers.utils import logging

        logging.set_verbosity_error()
        logging.disable_progress_bar()
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(next((a for a in argv if not a.startswith("-")), None))
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    args.command_name = getattr(args, "command_name", args.command)
    return run_command(args)


if __name__ == "__main__":
    sys.exit(main())
