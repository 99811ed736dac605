"""Channels: config ``type:`` name -> class, and building one from options.

``build_channel`` is the one way to make a channel, for configured channels
(the daemon config), inline ones (a run's ``channels=[{...}]``) and the
in-process fallback alike. Importing this package does not import
``requests``; the first send does.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

from sentinel.channels.alertmanager import AlertmanagerChannel
from sentinel.channels.bark import BarkChannel
from sentinel.channels.base import Channel, DeliveryError
from sentinel.channels.console import ConsoleChannel
from sentinel.channels.dingtalk import DingTalkChannel
from sentinel.channels.slack import SlackChannel
from sentinel.redact import register

REGISTRY: dict[str, type[Channel]] = {
    cls.type_name: cls
    for cls in (AlertmanagerChannel, BarkChannel, ConsoleChannel, DingTalkChannel, SlackChannel)
}

__all__ = ["REGISTRY", "Channel", "DeliveryError", "build_channel", "check_channel", "channel_class"]


def channel_class(type_name: str) -> type[Channel]:
    try:
        return REGISTRY[type_name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown channel type {type_name!r} (known: {', '.join(sorted(REGISTRY))})"
        ) from None


def check_channel(options: Mapping[str, Any], type_name: Optional[str] = None) -> list[tuple[str, str]]:
    """Problems with one channel's options as (key, message); the type comes
    from ``type_name`` or the options' ``type`` key."""
    if not isinstance(options, Mapping):
        return [("", "must be a mapping of options")]
    type_name = type_name or options.get("type")
    if not type_name:
        return [("type", f"required (one of {', '.join(sorted(REGISTRY))})")]
    if type_name not in REGISTRY:
        return [("type", f"unknown channel type (known: {', '.join(sorted(REGISTRY))})")]
    return REGISTRY[type_name].check_options({k: v for k, v in options.items() if k != "type"})


def build_channel(name: str, options: Mapping[str, Any], language: Optional[str] = "en") -> Channel:
    """A ready channel named ``name``. ``options["type"]`` names the class
    (default: ``name`` itself, so ``build_channel("console", {})`` works).
    ``language=None``: speak each alert's (run's) language, English if none.
    Raises ValueError listing every problem; no secret is in the message.
    Its secrets are registered for redaction in every later log line."""
    opts = dict(options)
    type_name = opts.pop("type", None) or name
    cls = channel_class(type_name)
    problems = cls.check_options(opts)
    if problems:
        raise ValueError(
            f"channel {name!r} ({type_name}): " + "; ".join(f"{key}: {message}" for key, message in problems)
        )
    channel = cls(name, opts, language=opts.get("language") or language or "en")
    # Without a language of its own (an inline channel with no ``language``),
    # the channel speaks each run's language.
    channel.follow_run_language = not (opts.get("language") or language)  # type: ignore[attr-defined]
    register(channel.secrets())
    return channel
