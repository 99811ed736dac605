"""The rules for values a user gives sentinel, shared by the config file and
every in-process argument (``watch``, ``SentinelCallback``, the drop-ins,
``sentinel run``): the same value is accepted or refused, with the same
message, wherever it is given. Stdlib only (the training process imports it).

Each rule takes a value and returns it normalised, or raises ``ValueError``
(or ``TypeError`` for a value of the wrong kind) with a message that does not
name the key: the caller knows the key path and prefixes it, as
``stall_timeout (line 2): ...`` in the config or ``sentinel.watch:
stall_timeout: ...`` at a call.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, Sequence

LANGUAGES = ("en", "zh")
# Longer than any run or retention anyone means; short enough that every
# consumer (timers, deadlines, formatting) stays in range.
MAX_DURATION = 10 * 365 * 86400.0
MAX_RUN_CHANNELS = 32
MAX_LABELS = 64
LABEL_KEY_MAX_CHARS = 64
CHANNEL_NAME_HINT = "a channel name must be letters, digits, '_', '-' or '.' (at most 64)"
INLINE_PREFIX = "inline-"  # names the daemon gives channels a run brings along

_CHANNEL_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
_DURATION_PART_RE = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h|d|w)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


class InvalidArgument(ValueError, TypeError):
    """A bad argument to sentinel's API: a programming error, raised at the
    call. Both a ValueError and a TypeError, so either ``except`` catches it."""


def kind(value: Any) -> str:
    """How a message names the kind of ``value``."""
    if value is None:
        return "nothing"
    return {dict: "a mapping", list: "a list", tuple: "a list", str: "a string", bytes: "bytes",
            bool: "a boolean", int: "a number", float: "a number"}.get(type(value), type(value).__name__)


def parse_duration(value: Any) -> float:
    """Seconds from a number or a string like "90", "30s", "10m", "1h30m", "7d"."""
    if isinstance(value, bool):
        raise ValueError("must be a duration such as 30s, 10m, 2h or 7d, not a boolean")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        try:
            seconds = float(text)
        except ValueError:
            seconds = 0.0
            pos = 0
            for match in _DURATION_PART_RE.finditer(text):
                if text[pos : match.start()].strip():
                    break
                seconds += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
                pos = match.end()
            if pos == 0 or text[pos:].strip():
                raise ValueError(
                    f"{value!r} is not a duration (use seconds or a number with a unit: ms, s, m, h, d, w;"
                    " e.g. 30s, 10m, 1h30m, 7d)"
                ) from None
    else:
        raise ValueError("must be a duration such as 30s, 10m, 2h or 7d")
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        raise ValueError("must be a finite duration")
    return seconds


def positive_duration(value: Any) -> float:
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError("must be longer than zero")
    if seconds > MAX_DURATION:
        raise ValueError("must be at most 10 years")
    return seconds


def choice(options: tuple) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        if not isinstance(value, str) or value not in options:
            raise ValueError(f"must be one of {', '.join(options)}, not {value!r}")
        return value

    return convert


language_code = choice(LANGUAGES)


def channel_name(value: Any) -> str:
    """A configured channel's name, as the config defines and a run names it."""
    if not isinstance(value, str) or not _CHANNEL_NAME_RE.match(value):
        raise ValueError(CHANNEL_NAME_HINT)
    if value.startswith(INLINE_PREFIX):
        raise ValueError(f"names starting with {INLINE_PREFIX!r} are reserved for channels given by a run")
    return value


def unknown_choice(value: Any, known: Sequence[str], what: str) -> str:
    """The config's words for a name that is not one of ``known``: the likely
    typo named, else the names there are."""
    import difflib

    hint = difflib.get_close_matches(str(value), list(known), n=1)
    suggestion = f"; did you mean {hint[0]!r}?" if hint else f" (known: {', '.join(known) or 'none'})"
    return f"unknown {what} {value!r}{suggestion}"


def absolute_path(value: Any) -> Path:
    """An absolute path (the daemon's working directory is nobody's to rely on)."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"must be a path, not {kind(value)}")
    path = Path(value).expanduser()
    if not path.is_absolute():
        raise ValueError(f"must be an absolute path (the daemon's working directory is not yours): {value!r}")
    return path
