r"""How an input's key (its path) is written as text in every table, losslessly, whatever bytes its name has.

POSIX file names are bytes, and not all of them are UTF-8; Python reads those with "surrogate escapes"
(PEP 383: byte 0xff becomes the lone surrogate U+DCFF), which is how keys are held in memory, so the file
opens again. Tables (Parquet and Arrow strings, CSV, JSON) hold UTF-8 text only, so a key is written as:

    a byte that is not valid UTF-8    \xHH (lowercase hex)     b"bad\xff.jpg" is written  bad\xff.jpg
    a backslash                       \\                       a\b.jpg        is written  a\\b.jpg
    anything else                     itself                   ordinary paths are written unchanged

`key_from_text` inverts it exactly, so `select --copy-to`, resuming and manifests made from a score table
reach the same file. A backslash that starts neither escape (a table written by another tool) reads as itself.
"""

from __future__ import annotations

import re

_UNESCAPE = re.compile(r"\\(\\|x[89a-f][0-9a-f])")


def key_to_text(key: str) -> str:
    """The written form of a key (see the module docstring); ordinary keys come back unchanged."""
    if "\\" not in key and _is_text(key):
        return key
    return _escape(key, double_backslash=True)


def key_from_text(text: str) -> str:
    """The key a table's text names: inverts key_to_text."""
    if "\\" not in text:
        return text
    return _UNESCAPE.sub(lambda m: "\\" if m[1] == "\\" else chr(0xDC00 + int(m[1][1:], 16)), text)


def printable(text: str) -> str:
    r"""`text` with any surrogate-escaped byte written as \xHH, so it can go into a table or a terminal (for
    messages that quote a path; unlike keys, they are not read back)."""
    return text if _is_text(text) else _escape(text, double_backslash=False)


def _is_text(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _escape(text: str, *, double_backslash: bool) -> str:
    out = []
    for char in text:
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8
            out.append(f"\\x{code - 0xDC00:02x}")
        elif 0xD800 <= code <= 0xDFFF:  # any other lone surrogate: never a file name's, kept visible
            out.append(f"\\u{code:04x}")
        elif char == "\\" and double_backslash:
            out.append("\\\\")
        else:
            out.append(char)
    return "".join(out)
