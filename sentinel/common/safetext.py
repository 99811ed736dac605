"""Text from runs made safe to show and to store. Stdlib only, imports nothing.

Every run name, label, option key and command line comes from a training
process, and in a shared spool from any local user. Two different dangers:

* Shown raw, control characters act on the reader's terminal or log: ESC
  sequences clear screens or retitle windows, a newline forges a second log
  line. ``printable`` escapes them for every human-facing output.
* Undecodable bytes (a file name or argv element that is not UTF-8 reaches
  Python as lone surrogates, PEP 383) cannot be written as UTF-8 at all.
  ``escape_undecodable`` turns them into backslash escapes before a record
  is written, and readers apply it to whatever a hostile file holds.
"""

from __future__ import annotations

import re

# C0 and C1 controls, DEL, lone surrogates, line/paragraph separators and the
# bidirectional overrides that reorder what a terminal shows ("Trojan source").
_UNPRINTABLE_RE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]")
_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_SURROGATE_RE = re.compile("[\ud800-\udfff]")


def _escape(match: re.Match) -> str:
    char = match.group(0)
    code = ord(char)
    if char in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[char]
    if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte, as surrogateescape carries it
        return f"\\x{code - 0xDC00:02x}"
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"


def printable(text: object) -> str:
    """``text`` as one line that cannot act on a terminal or a log: every
    control character shown as its backslash escape (``\\x1b``, ``\\n``)."""
    value = text if isinstance(text, str) else str(text)
    return _UNPRINTABLE_RE.sub(_escape, value)


def printable_lines(text: object) -> list[str]:
    """``text`` split at its line breaks, each line made ``printable``: for
    the few values that are multi-line by nature (a traceback, a message)."""
    value = text if isinstance(text, str) else str(text)
    return [printable(line) for line in value.splitlines()]


def escape_undecodable(text: str) -> str:
    """``text`` with lone surrogates as backslash escapes, so it encodes as
    UTF-8: an undecodable byte 0xff (``"\\udcff"``) becomes ``"\\xff"``."""
    if not _SURROGATE_RE.search(text):
        return text
    return _SURROGATE_RE.sub(_escape, text)
