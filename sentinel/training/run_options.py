"""The arguments a run is started with (``watch``, ``SentinelCallback``, the
drop-ins, ``sentinel run``), checked all at once with the config file's rules
(``sentinel.common.rules``) and, for a channel a run brings along, the channel's own
checks. Stdlib only (the training process imports it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, Union

from sentinel.common.rules import (
    LABEL_KEY_MAX_CHARS,
    MAX_LABELS,
    MAX_RUN_CHANNELS,
    InvalidArgument,
    channel_name,
    kind,
    language_code,
    positive_duration,
    unknown_choice,
)


@dataclass
class RunOptions:
    """What a run was asked to be, every value checked and normalised."""

    name: str = ""
    channels: list[Union[str, dict]] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    stall_timeout: Optional[float] = None
    heartbeat_interval: Optional[float] = None
    language: Optional[str] = None
    spool_dir: Optional[Path] = None
    handle_sigterm: bool = True
    alert_on: Optional[list[str]] = None  # None: the daemon's alert_on


Problems = list[tuple[str, str]]  # (key path, message)


def run_options(
    who: str,
    *,
    name: Any = None,
    channels: Any = None,
    labels: Any = None,
    stall_timeout: Any = None,
    heartbeat_interval: Any = None,
    language: Any = None,
    spool_dir: Any = None,
    handle_sigterm: Any = True,
    alert_on: Any = None,
    more_problems: Sequence[tuple[str, str]] = (),
) -> RunOptions:
    """Check every argument a run is started with; raise ``InvalidArgument``
    naming each bad one (``who: key: message``), all at once, after
    ``more_problems`` (a caller's own arguments)."""
    problems: Problems = list(more_problems)
    options = RunOptions()

    def take(key: str, value: Any, rule: Callable[[Any], Any]) -> Any:
        if value is None:
            return None
        try:
            return rule(value)
        except (ValueError, TypeError) as exc:
            problems.append((key, str(exc)))
            return None

    options.name = take("name", name, _string) or ""
    options.channels = run_channels(channels, problems)
    options.labels = run_labels(labels, problems)
    options.stall_timeout = take("stall_timeout", stall_timeout, positive_duration)
    options.heartbeat_interval = take("heartbeat_interval", heartbeat_interval, positive_duration)
    options.language = take("language", language, language_code)
    options.spool_dir = take("spool_dir", spool_dir, _path)
    options.alert_on = take("alert_on", alert_on, _alert_on)
    if not isinstance(handle_sigterm, bool):
        problems.append(("handle_sigterm", f"must be True or False, not {kind(handle_sigterm)}"))
    else:
        options.handle_sigterm = handle_sigterm
    if not problems:
        problems.extend(unknown_channels(options.channels, options.spool_dir))
    raise_problems(who, problems)
    return options


def unknown_channels(channels: Sequence[Union[str, dict]], spool_dir: Optional[Path]) -> Problems:
    """The named channels the daemon watching the spool does not have.

    The daemon publishes its channel names (never their options) in
    ``daemon.json``; a run naming another is refused at the call, with the
    config file's words. With no daemon watching (or one that does not say)
    the names are accepted: the daemon that later watches the run alerts its
    default channels instead and says so in its log.
    """
    named = [(index, entry) for index, entry in enumerate(channels) if isinstance(entry, str)]
    if not named:
        return []
    from sentinel.formats import daemon_file, spool  # only when a run names channels

    known = daemon_file.published_channels(spool_dir or spool.spool_dir())
    if known is None:
        return []
    return [(f"channels[{index}]", unknown_choice(entry, known, "channel"))
            for index, entry in named if entry not in known]


def _alert_on(value: Any) -> list[str]:
    from sentinel.model.alerts import check_alert_on  # only when given: the alert model is not light

    return check_alert_on(value)


def raise_problems(who: str, problems: Problems) -> None:
    if not problems:
        return
    listed = "; ".join(f"{key}: {message}" if key else message for key, message in problems)
    raise InvalidArgument(f"{who}: {listed}")


def run_channels(value: Any, problems: Problems, key: str = "channels") -> list[Union[str, dict]]:
    """Channel names and inline channel option mappings, checked."""
    if value is None:
        return []
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence):
        problems.append((key, "must be a list of channel names or channel option mappings, "
                              f"not {kind(value)}"))
        return []
    if len(value) > MAX_RUN_CHANNELS:
        problems.append((key, f"at most {MAX_RUN_CHANNELS} channels"))
        return []
    out: list[Union[str, dict]] = []
    for index, entry in enumerate(value):
        where = f"{key}[{index}]"
        if isinstance(entry, str):
            try:
                out.append(channel_name(entry))
            except ValueError as exc:
                problems.append((where, str(exc)))
        elif isinstance(entry, Mapping):
            issues = inline_channel_problems(entry)
            problems.extend((f"{where}.{k}" if k else where, m) for k, m in issues)
            if not issues:
                out.append(dict(entry))
        else:
            problems.append((where, f"must be a channel name or a mapping of channel options, "
                                    f"not {kind(entry)}"))
    return out


def inline_channel_problems(options: Mapping[str, Any]) -> list[tuple[str, str]]:
    """What is wrong with a channel a run brings along, by the channel's own checks."""
    bad_keys = [k for k in options if not isinstance(k, str)]
    if bad_keys:
        return [("", f"option names must be strings, not {kind(bad_keys[0])}")]
    from sentinel.channels import check_channel  # stdlib only; loaded when a run brings a channel

    try:
        return list(check_channel(options))
    except Exception as exc:  # a broken value must not crash the check
        return [("", f"invalid options ({exc.__class__.__name__})")]


def run_labels(value: Any, problems: Problems, key: str = "labels") -> dict[str, str]:
    """Label names to text; empty values are left out."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        problems.append((key, f"must be a mapping of label names to values, not {kind(value)}"))
        return {}
    if len(value) > MAX_LABELS:
        problems.append((key, f"at most {MAX_LABELS} labels"))
        return {}
    out: dict[str, str] = {}
    for name, item in value.items():
        if not isinstance(name, str) or not name or len(name) > LABEL_KEY_MAX_CHARS:
            problems.append((key, f"label names must be non-empty strings of at most "
                                  f"{LABEL_KEY_MAX_CHARS} characters, not {name!r}"))
            continue
        if item is None or item == "":
            continue
        if not isinstance(item, (str, int, float)):
            problems.append((f"{key}.{name}", f"must be a string or a number, not {kind(item)}"))
            continue
        out[name] = str(item)
    return out


def optional_string(value: Any) -> list[tuple[str, str]]:
    """[] for a string or None, else the problem (without a key)."""
    if value is None or isinstance(value, str):
        return []
    return [("", f"must be a string, not {kind(value)}")]


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"must be a string, not {kind(value)}")
    return value


def _path(value: Any) -> Path:
    if not isinstance(value, (str, bytes, os.PathLike)):
        raise TypeError(f"must be a path, not {kind(value)}")
    text = os.fsdecode(os.fspath(value))
    if not text.strip():
        raise ValueError("must be a path, not an empty string")
    return Path(text).expanduser()
