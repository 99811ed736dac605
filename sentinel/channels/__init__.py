"""Channels: config ``type:`` name -> class, and building one from options.

``REGISTRY`` holds every channel class: the modules of this package register
theirs when it is imported, a user's own ones when the daemon config's
``channel_modules`` are loaded (``load_channel_module``). ``build_channel``
is the one way to make a channel, for configured channels (the daemon
config), inline ones (a run's ``channels=[{...}]``) and the in-process
fallback alike. Importing this package does not import ``requests``; the
first send does.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import pkgutil
import stat
import sys
from pathlib import Path
from typing import Any, Mapping, Optional

from sentinel.channels.base import REGISTRY, Channel, DeliveryError, register
from sentinel.common.redact import register as register_secrets

# Every module of this package is imported, so each channel module registers
# its class: adding a channel needs no line here.
for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_module}")

__all__ = ["REGISTRY", "Channel", "DeliveryError", "build_channel", "channel_class", "check_channel",
           "load_channel_module", "register"]


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


def build_channel(name: str, options: Mapping[str, Any], language: Optional[str] = "en", *,
                  default_language: str = "en") -> Channel:
    """A ready channel named ``name``. ``options["type"]`` names the class
    (default: ``name`` itself, so ``build_channel("console", {})`` works).
    ``language=None`` (an inline channel): speak each alert's (run's)
    language, ``default_language`` if the run names none; an own
    ``language`` option always wins (``Channel.language_for``).
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
    own = opts.get("language") or language
    channel = cls(name, opts, language=own or default_language, follow_run_language=not own)
    register_secrets(channel.secrets())
    return channel


def load_channel_module(path: Path) -> None:
    """Import a user's channel module (config ``channel_modules``); it adds
    its classes with ``@register``. Loaded once per path.

    The daemon may run as root: a module file (or its directory) that
    another user could write would let them run code as root, so such files
    are refused. Raises ValueError (not a safe file) or whatever importing
    the module raised.
    """
    if not Path(path).is_absolute():
        raise ValueError("must be an absolute path")
    path = Path(os.path.realpath(path))  # judge the file a symlink points at, and its directory
    module_name = "sentinel_channel_module_" + "".join(c if c.isalnum() else "_" for c in str(path))
    if module_name in sys.modules:
        return
    for checked, what in ((path, "the file"), (path.parent, "its directory")):
        try:
            info = os.stat(checked)
        except OSError as exc:
            raise ValueError(f"cannot read {what}: {exc.strerror}") from None
        if checked is path and not stat.S_ISREG(info.st_mode):
            raise ValueError("is not a regular file")
        if info.st_uid not in (0, os.geteuid()):
            raise ValueError(f"{what} must belong to root or to the user the daemon runs as")
        if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise ValueError(f"{what} must not be writable by group or others")
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ValueError("is not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
