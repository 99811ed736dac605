"""Checks shared by the channels' ``check_options``.

Problem messages never repeat an option's value: values may be secrets.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping
from urllib.parse import urlsplit

from sentinel.rules import LANGUAGES


def unknown_keys(options: Mapping[str, Any], known: Iterable[str]) -> list[tuple[str, str]]:
    allowed = set(known) | {"type"}
    return [
        (str(key), f"unknown option (known: {', '.join(sorted(set(known)))})")
        for key in options
        if key not in allowed
    ]


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
