"""run-sentinel: know within seconds that a training run finished, crashed,
hung or was killed, even by kill -9.

Three ways to watch a run, all of them standard-library only until SwanLab is
touched:

* ``with sentinel.watch(name=...) as run: run.beat(step=...)``
* ``swanlab.init(callbacks=[sentinel.SentinelCallback()])``
* drop-in SwanLab plugins: ``from sentinel import BarkCallback`` (also
  ``DingTalkCallback``, ``SlackCallback``).

The SwanLab classes are loaded on first attribute access, so ``import
sentinel`` never imports swanlab (or anything outside the standard library).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

# name -> module that defines it; imported on first access (PEP 562).
_LAZY = {
    "SentinelCallback": "sentinel.swanlab_adapter",
    "BarkCallback": "sentinel.notify",
    "DingTalkCallback": "sentinel.notify",
    "SlackCallback": "sentinel.notify",
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


# Last, after __version__ (the recorder reads it). `sentinel.watch` is the
# submodule, made callable: `sentinel.watch(...)` starts a run.
from sentinel import watch  # noqa: E402
from sentinel.watch import Run  # noqa: E402
