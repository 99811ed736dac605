"""Field rules: how every record read from a file others may write is checked.

A record is a dataclass with a ``RULES`` table, one ``Rule`` per field;
``parse_record`` builds it from decoded JSON. A bad ``essential`` field
rejects the file (``SpoolFormatError``); any other bad field is replaced by
its default and named in the caller's ``problems``, so one bad value never
hides a whole run.

Every number must be finite and in range: a NaN heartbeat compares false
with everything, so one hostile file would switch stall detection off.
Bounds are generous: far beyond any real value, far inside what every
consumer (timers, formatting, int conversion) handles. Stdlib only.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, dataclass, fields
from typing import Any, Callable, Mapping, Optional

from sentinel.common.rules import MAX_DURATION
from sentinel.common.safetext import escape_undecodable
from sentinel.formats.safe_json import SpoolFormatError

MAX_TIME = 2.0**35  # seconds since the epoch: the year 3058
MAX_INTERVAL = MAX_DURATION  # the longest duration the rules accept
MAX_STEP = 2**63 - 1
MAX_SEQ = 2**53


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def is_time(value: Any) -> bool:
    return is_number(value) and 0 <= value <= MAX_TIME


def is_interval(value: Any) -> bool:
    return is_number(value) and 0 < value <= MAX_INTERVAL


def is_step(value: Any) -> bool:
    return is_int(value) and -MAX_STEP <= value <= MAX_STEP


def is_seq(value: Any) -> bool:
    return is_int(value) and 0 <= value <= MAX_SEQ


def optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: value is None or check(value)


def is_str(value: Any) -> bool:
    return isinstance(value, str)


def clean_text(value: Any) -> Any:
    return escape_undecodable(value) if isinstance(value, str) else value


@dataclass(frozen=True)
class Rule:
    """How one field is checked on read. A bad ``essential`` field rejects the
    file; any other bad field is replaced by its default and named in the
    caller's ``problems``, so one bad value never hides a whole run."""

    check: Callable[[Any], bool]
    reason: str
    essential: bool = False
    clean: Callable[[Any], Any] = clean_text
    explain: Optional[Callable[[Any], str]] = None  # the reason for this very value, if it can say more


def parse_record(cls: type, data: Mapping[str, Any], rules: Mapping[str, Rule], version: int,
                 problems: Optional[list[str]] = None, defaults: Optional[Mapping[str, Any]] = None) -> Any:
    """Make the dataclass ``cls`` from a decoded object: its ``"v"`` must be
    ``version``, unknown keys are ignored, every field is checked by its rule
    (``problems`` collects the replaced ones). ``defaults`` stand in for bad
    or missing required fields that are not essential."""
    if not isinstance(data, Mapping):
        raise SpoolFormatError("not a JSON object")
    found = data.get("v")
    if found != version:
        raise SpoolFormatError(f"unknown format version {found!r} (this reader knows {version})")
    values: dict[str, Any] = {}
    for f in fields(cls):
        rule = rules[f.name]
        present = f.name in data
        required = f.default is MISSING and f.default_factory is MISSING
        if present and rule.check(data[f.name]):
            values[f.name] = rule.clean(data[f.name])
            continue
        if not present and not required:
            values[f.name] = f.default_factory() if f.default_factory is not MISSING else f.default
            continue
        if rule.essential or (required and (defaults is None or f.name not in defaults)):
            raise SpoolFormatError(f"{f.name} {rule.reason}" if present else f"missing field: {f.name}")
        if defaults is not None and f.name in defaults:
            values[f.name] = defaults[f.name]
        else:
            values[f.name] = f.default_factory() if f.default_factory is not MISSING else f.default
        if problems is not None:
            why = (rule.explain(data[f.name]) if rule.explain else rule.reason) if present else "is missing"
            problems.append(f"{f.name} {why}; using the default")
    return cls(**values)


def is_strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(a, str) for a in value)


def clean_strings(value: list[str]) -> list[str]:
    return [escape_undecodable(a) for a in value]


def keep(value: Any) -> Any:
    """The value as read: for fields whose check already says all there is."""
    return value


STRING = Rule(is_str, "must be a string")


def expect(condition: bool, reason: str) -> None:
    """SpoolFormatError(``reason``) unless ``condition``: for hand-written checks."""
    if not condition:
        raise SpoolFormatError(reason)
