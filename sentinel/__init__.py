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
    "watch": "sentinel.training.watching",
    "Run": "sentinel.training.watching",
    "SentinelCallback": "sentinel.training.swanlab_adapter",
    "BarkCallback": "sentinel.training.notify",
    "DingTalkCallback": "sentinel.training.notify",
    "SlackCallback": "sentinel.training.notify",
    "LarkCallback": "sentinel.training.notify",
    "WeComCallback": "sentinel.training.notify",
    "WXWorkCallback": "sentinel.training.notify",
    "DiscordCallback": "sentinel.training.notify",
    "TelegramCallback": "sentinel.training.notify",
    "EmailCallback": "sentinel.training.notify",
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
