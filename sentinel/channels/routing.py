"""Which channels an alert about a run goes to: the one place that decides.

A run names channels in its record: configured names, or inline option
mappings the daemon registers under a stable ``inline-<hash>`` name. A run
that names none, or an entry that is unknown or invalid, gets the config's
default channels (an alert is never dropped for a typo). State alerts a
user switched off (``alert_on``) go nowhere, and an ending the process
already delivered to its inline channels itself is not sent there twice.
"""

from __future__ import annotations

from typing import Any, Callable, Collection, Iterable, Mapping, Optional, Sequence

from sentinel.redact import redact

INLINE_PREFIX = "inline-"


def is_inline(name: str) -> bool:
    """True for the name of a channel a run passed inline (not from the config)."""
    return name.startswith(INLINE_PREFIX)


def resolve(
    entries: Optional[Sequence[Any]],
    configured: Collection[str],
    defaults: Sequence[str],
    register_inline: Optional[Callable[[Mapping[str, Any]], str]],
    report: Callable[[str], object],
) -> list[str]:
    """The channel names for a run's ``entries`` (its record's ``channels``).

    ``register_inline`` turns inline options into a name (raising for
    invalid ones); ``report`` hears about every entry replaced by the defaults.
    """
    names: list[str] = []
    for index, entry in enumerate(entries or list(defaults)):
        name = None
        if isinstance(entry, str):
            if entry in configured:
                name = entry
            else:
                report(f"unknown channel {entry!r}; using the default channels")
        elif isinstance(entry, Mapping) and register_inline is not None:
            try:
                name = register_inline(entry)
            except Exception as exc:
                report(f"invalid inline channel #{index + 1}: {redact(exc, string_values(entry))}; "
                       "using the default channels")
        if name is None:
            names.extend(defaults)
        else:
            names.append(name)
    return list(dict.fromkeys(names))  # order kept, duplicates dropped


def recipients(kind: str, channels: Iterable[str], alert_on: Collection[str], *,
               delivered_inline: bool = False) -> list[str]:
    """Of a run's ``channels``, those a state alert of ``kind`` goes to
    (a run's messages go to all of them)."""
    if kind not in alert_on:
        return []
    if delivered_inline:
        # With no daemon alive, the process sent its ending to its inline channels itself.
        return [name for name in channels if not is_inline(name)]
    return list(channels)


def string_values(options: Mapping[str, Any]) -> list[str]:
    """Every string option: any of them may be a secret, masked in messages."""
    return [str(v) for v in options.values() if isinstance(v, str)]
