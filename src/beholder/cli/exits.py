"""One exit-status table for every command, and the one place failures become it.

A command returns the number of inputs that failed (0 when there are none, or when it has no inputs) and
raises for everything else; `run_command` maps what it raises to a status and a one-line message:

    0       done: every input succeeded
    1-100   that many inputs failed (capped at 100); each has a row (or a report line) with its error
    101     could not run or finish: BeholderError, a file-system error (OSError), an interrupt (Ctrl-C,
            SIGTERM), stdout closed by its reader, or a bug (the only case with a traceback)
    2       invalid arguments: argparse's own errors, UsageError (a bad option, config field or value)
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager

from beholder.errors import BeholderError, UsageError

EXIT_OK = 0
EXIT_USAGE = 2
MAX_FAILED = 100
EXIT_FATAL = 101

EXIT_STATUS_HELP = f"""\
exit status:
  {EXIT_OK}        done; no input failed
  1-{MAX_FAILED}    that many inputs failed (capped at {MAX_FAILED}); each has a row with its error
  {EXIT_FATAL}      could not run or finish (a message says why); an interrupted run keeps its work
  {EXIT_USAGE}        invalid arguments"""


def failed_status(failed: int) -> int:
    """The exit status of a run in which `failed` inputs failed: capped so it never reads as 101 or a signal."""
    return min(failed, MAX_FAILED)


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled as Ctrl-C is: the command stops, saves what it can and exits 101."""


def run_command(args: argparse.Namespace) -> int:
    """Call the parsed command and map its outcome to the exit-status table above.

    The command's parser may set `interrupt_hint` (what an interrupted run left, how to resume)."""
    name = f"beholder {args.command_name}"
    try:
        with _sigterm_as_interrupt():
            status = int(args.func(args) or 0)
            sys.stdout.flush()  # a closed pipe shows here, not as a warning at interpreter exit
            return status
    except UsageError as exc:
        return _fail(name, str(exc), EXIT_USAGE)
    except KeyboardInterrupt as exc:
        what = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
        hint = getattr(args, "interrupt_hint", None)
        return _fail(name, what + (f"; {hint}" if hint else ""), EXIT_FATAL, prefix="")
    except BrokenPipeError:
        # Whoever read stdout stopped (`beholder ... | head`): nothing more can be said to it.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FATAL
    except (BeholderError, OSError) as exc:
        return _fail(name, describe(exc), EXIT_FATAL)
    except Exception as exc:  # a bug: the traceback is what a report needs
        traceback.print_exc()
        return _fail(name, f"internal error ({type(exc).__name__}); please report it with the traceback above",
                     EXIT_FATAL)


def describe(exc: BaseException) -> str:
    """One line for an error: an OSError as `file: reason`, anything else by its message."""
    if isinstance(exc, OSError) and exc.strerror and not isinstance(exc, BeholderError):
        files = [str(f) for f in (exc.filename, exc.filename2) if f is not None]
        return f"{' -> '.join(files)}: {exc.strerror}" if files else exc.strerror
    return str(exc) or type(exc).__name__


def _fail(name: str, message: str, status: int, prefix: str = "error: ") -> int:
    print(f"{name}: {prefix}{message}", file=sys.stderr)
    return status


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """While a command runs, SIGTERM raises Terminated, so `kill` stops it as cleanly as Ctrl-C does."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: object) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
