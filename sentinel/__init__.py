"""run-sentinel: know within seconds that a training run finished, crashed,
hung or was killed, even by kill -9.

Three ways to watch a run, all of them standard-library only until SwanLab is
touched:

* ``with sentinel.watch(name=...) as run: run.beat(step=...)``
* ``swanlab.init(callbacks=[sentinel.SentinelCallback()])``
* drop-in SwanLab plugins: ``from sentinel import BarkCallback`` (also
  ``DingTalkCallback``, ``SlackCallback``, ``LarkCallback``, ``WeComCallback``
  / ``WXWorkCallback``, ``DiscordCallback``, ``TelegramCallback``,
  ``EmailCallback``).

Everything is loaded on first attribute access: ``import sentinel`` costs
about a millisecond and never imports swanlab (or anything outside the
standard library); the recorder loads when the first run starts.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

# name -> module that defines it; imported on first access (PEP 562).
_LAZY = {
    "watch": "sentinel.watching",
    "Run": "sentinel.watching",
    "SentinelCallback": "sentinel.swanlab_adapter",
    "BarkCallback": "sentinel.notify",
    "DingTalkCallback": "sentinel.notify",
    "SlackCallback": "sentinel.notify",
    "LarkCallback": "sentinel.notify",
    "WeComCallback": "sentinel.notify",
    "WXWorkCallback": "sentinel.notify",
    "DiscordCallback": "sentinel.notify",
    "TelegramCallback": "sentinel.notify",
    "EmailCallback": "sentinel.notify",
}

__all__ = ["watch", "Run", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'sentinel' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
