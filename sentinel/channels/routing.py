"""Which channels an alert about a run goes to: the one place that decides.

A run names channels in its record: configured names, or inline option
mappings the daemon registers under a stable ``inline-<hash>`` name. A run
that names none, or an entry that is unknown, invalid, refused (a named
channel the run's owner may not use, an inline one the admin does not
allow, one inline channel more than ``max_inline``), gets the config's
default channels (an alert is never dropped for a typo or a refusal). State alerts a
user switched off (``alert_on``) go nowhere, and an ending the process
already delivered to its inline channels itself is not sent there twice.
"""

from __future__ import annotations

from typing import Any, Callable, Collection, Iterable, Mapping, Optional, Sequence

from sentinel.common.redact import redact

INLINE_PREFIX = "inline-"


class Refused(ValueError):
    """An inline channel the admin's rules do not allow (the reason is the message)."""


def is_inline(name: str) -> bool:
    """True for the name of a channel a run passed inline (not from the config)."""
    return name.startswith(INLINE_PREFIX)


def resolve(
    entries: Optional[Sequence[Any]],
    configured: Collection[str],
    defaults: Sequence[str],
    register_inline: Optional[Callable[[Mapping[str, Any]], str]],
    report: Callable[[str], object],
    *,
    may_use: Callable[[str], Optional[str]] = lambda name: None,
    max_inline: Optional[int] = None,
) -> list[str]:
    """The channel names for a run's ``entries`` (its record's ``channels``).

    ``register_inline`` turns inline options into a name (raising for
    invalid or refused ones); ``may_use`` says why the run may not use a
    configured channel (None: it may); ``report`` hears about every entry
    replaced by the defaults (the inline ones past ``max_inline`` once).
    """
    names: list[str] = []
    inline_seen = 0
    refused: dict[str, list[int]] = {}  # reason -> entry numbers
    for index, entry in enumerate(entries or list(defaults)):
        name = None
        if isinstance(entry, str):
            refusal = may_use(entry) if entry in configured else None
            if entry not in configured:
                report(f"unknown channel {entry!r}; using the default channels")
            elif refusal is not None:
                report(f"channel {entry!r} refused: {refusal}; using the default channels")
            else:
                name = entry
        elif isinstance(entry, Mapping) and register_inline is not None:
            inline_seen += 1
            if max_inline is not None and inline_seen > max_inline:
                if inline_seen == max_inline + 1:  # built never, reported once
                    report(f"inline channel #{index + 1} and any later ones refused: at most {max_inline} "
                           "per run (inline_channels.max_per_run); using the default channels")
                name = None
            else:
                try:
                    name = register_inline(entry)
                except Refused as exc:  # reported below, once per reason
                    refused.setdefault(redact(exc, string_values(entry)), []).append(index + 1)
                except Exception as exc:
                    report(f"invalid inline channel #{index + 1}: {redact(exc, string_values(entry))}; "
                           "using the default channels")
        if name is None:
            names.extend(defaults)
        else:
            names.append(name)
    for reason, numbers in refused.items():
        which = (f"inline channel #{numbers[0]}" if len(numbers) == 1
                 else f"{len(numbers)} inline channels (#{numbers[0]}…#{numbers[-1]})")
        report(f"refused {which}: {reason}; using the default channels")
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
