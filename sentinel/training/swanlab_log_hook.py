"""``swanlab.log`` wrapped for a run's lifetime: the exact step, as it is logged.

SwanLab >= 0.8 offers callbacks no synchronous per-log hook: logged values
reach ``on_scalar_flush`` in batches, up to ~100 log periods late, so a run
killed after 37 steps had recorded none, and a crash after 150 said "Step 94".
``LogHook.install`` replaces the module attribute ``swanlab.log`` with a
wrapper that calls SwanLab first (its behaviour, return value and exceptions
unchanged) and then hands the step and values to the recorder
(``Recorder.note_logged``): the step and time go into ``live.bin`` at once,
the values are copied at most every ``live_file.VALUES_EVERY`` seconds and
by the heartbeat thread. ``uninstall`` puts SwanLab's function back at the
run's end.

The wrapper is a plain function (a closure), not an object with
``__call__``: calling an instance costs a Python-level method lookup that
alone would exceed the hook's budget of one microsecond per call.

The step mirrors SwanLab's own rule (``RunContext.next_step``): an explicit
step is taken as given and raises the global step to it; without one the
global step goes up by one. A call SwanLab refuses (a bad step) is not
progress. Code that holds ``run.log`` or ``from swanlab import log`` bound
before the run began is not wrapped; its values still arrive by the flush.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Callable, Mapping, Optional

from sentinel.training.recorder import Recorder

_HOOK_ATTRIBUTE = "__sentinel_log_hook__"


class LogHook:
    """``swanlab.log`` wrapped while one run lives; ``wrapper`` stands in for it."""

    def __init__(self, module: Any, original: Callable[..., Any], recorder: Recorder) -> None:
        self.module = module
        self.original = original
        self.recorder = recorder
        self.wrapper, self._counts = _wrap(original, recorder.note_logged)
        with contextlib.suppress(AttributeError, TypeError):  # a builtin or a partial: as it is
            functools.update_wrapper(self.wrapper, original)
        setattr(self.wrapper, _HOOK_ATTRIBUTE, self)

    @classmethod
    def of(cls, function: Any) -> Optional[LogHook]:
        """The hook whose wrapper ``function`` is, if it is one."""
        hook = getattr(function, _HOOK_ATTRIBUTE, None) if callable(function) else None
        return hook if isinstance(hook, cls) else None

    @classmethod
    def install(cls, module: Any, recorder: Recorder) -> Optional[LogHook]:
        """Wrap ``module.log``, unless another run's hook is there already."""
        original = getattr(module, "log", None)
        if original is None or cls.of(original) is not None:
            return None
        hook = cls(module, original, recorder)
        module.log = hook.wrapper
        return hook

    def uninstall(self) -> None:
        if self.module.log is self.wrapper:
            self.module.log = self.original

    @property
    def global_step(self) -> int:
        """SwanLab's global step as this hook follows it."""
        return self._counts()[0]

    @property
    def calls(self) -> int:
        """Logs seen: the adapter lets late flushes through only when there were none."""
        return self._counts()[1]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.wrapper(*args, **kwargs)


def _wrap(original: Callable[..., Any], note: Callable[[int, Optional[Mapping[str, Any]]], None],
          ) -> tuple[Callable[..., Any], Callable[[], tuple[int, int]]]:
    """(the wrapper, a reader of its (global step, calls)). The counters are
    closure cells: the cheapest state a Python function can keep."""
    global_step = 0
    calls = 0

    def log(data: Any = None, step: Optional[int] = None, *args: Any, **kwargs: Any) -> Any:
        nonlocal global_step, calls
        result = original(data, step, *args, **kwargs) if args or kwargs else original(data, step)
        if step is None:
            step = global_step = global_step + 1
        elif type(step) is int and step >= 0:
            if step > global_step:
                global_step = step
        else:
            return result  # SwanLab refused it
        calls += 1
        try:  # noqa: SIM105 -- contextlib.suppress costs more than this whole hook
            note(step, data if type(data) is dict or isinstance(data, Mapping) else None)
        except Exception:
            pass
        return result

    def counts() -> tuple[int, int]:
        return global_step, calls

    return log, counts

