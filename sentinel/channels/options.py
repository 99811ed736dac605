"""Checks shared by the channels' ``check_options``.

Problem messages never repeat an option's value: values may be secrets.
"""

from __future__ import annotations

import difflib
from typing import Any, Iterable, Mapping
from urllib.parse import urlsplit

from sentinel.common.rules import LANGUAGES


def unknown_keys(options: Mapping[str, Any], known: Iterable[str]) -> list[tuple[str, str]]:
    """An unknown option names the closest known one ("did you mean"), else all of them."""
    names = sorted(set(known))
    allowed = set(names) | {"type"}
    problems = []
    for key in options:
        if key in allowed:
            continue
        close = difflib.get_close_matches(str(key), names, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(names)}"
        problems.append((str(key), f"unknown option ({hint})"))
    return problems


def check_url(options: Mapping[str, Any], key: str, *, required: bool) -> list[tuple[str, str]]:
    value = options.get(key)
    if value is None or value == "":
        return [(key, "required")] if required else []
    if not isinstance(value, str):
        return [(key, "must be a URL string")]
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return [(key, "must be an http(s) URL with a host")]
    return []


def check_str(options: Mapping[str, Any], key: str, *, required: bool = False) -> list[tuple[str, str]]:
    value = options.get(key)
    if value is None:
        return [(key, "required")] if required else []
    if not isinstance(value, str) or (required and not value.strip()):
        return [(key, "must be a non-empty string")]
    return []


def check_bool(options: Mapping[str, Any], key: str) -> list[tuple[str, str]]:
    value = options.get(key)
    if value is None or isinstance(value, bool):
        return []
    return [(key, "must be true or false")]


def check_language(options: Mapping[str, Any]) -> list[tuple[str, str]]:
    value = options.get("language")
    if value is None or (isinstance(value, str) and value in LANGUAGES):
        return []
    return [("language", f"must be one of {', '.join(LANGUAGES)}")]
