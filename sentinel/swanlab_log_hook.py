"""``swanlab.log`` wrapped for a run's lifetime: the exact step, as it is logged.

SwanLab >= 0.8 offers callbacks no synchronous per-log hook: logged values
reach ``on_scalar_flush`` in batches, up to ~100 log periods late, so a run
killed after 37 steps had recorded none, and a crash after 150 said "Step 94".
``LogHook.install`` replaces the module attribute ``swanlab.log`` with a
wrapper that calls SwanLab first (its behaviour, return value and exceptions
unchanged) and then hands the step and values to the recorder, which puts
them into ``live.bin`` with plain memory stores (``Recorder.note_progress``).
``uninstall`` puts SwanLab's function back at the run's end.

The step mirrors SwanLab's own rule (``RunContext.next_step``): an explicit
step is taken as given and raises the global step to it; without one the
global step goes up by one. A call SwanLab refuses (a bad step) is not
progress. Code that holds ``run.log`` or ``from swanlab import log`` bound
before the run began is not wrapped; its values still arrive by the flush.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional

from sentinel.recorder import Recorder


class LogHook:
    """A callable standing in for ``swanlab.log`` while one run lives."""

    def __init__(self, module: Any, original: Callable[..., Any], recorder: Recorder) -> None:
        self.module = module
        self.original = original
        self.recorder = recorder
        self.global_step = 0
        self.calls = 0  # logs seen: the adapter lets late flushes through only when there were none

    @classmethod
    def install(cls, module: Any, recorder: Recorder) -> Optional[LogHook]:
        """Wrap ``module.log``, unless another run's hook is there already."""
        original = getattr(module, "log", None)
        if original is None or isinstance(original, LogHook):
            return None
        hook = cls(module, original, recorder)
        module.log = hook
        return hook

    def uninstall(self) -> None:
        if self.module.log is self:
            self.module.log = self.original

    def __call__(self, data: Any = None, step: Optional[int] = None, *args: Any, **kwargs: Any) -> Any:
        result = self.original(data, step, *args, **kwargs)
        if step is None:
            self.global_step += 1
            step = self.global_step
        elif type(step) is int and step >= 0:
            if step > self.global_step:
                self.global_step = step
        else:
            return result  # SwanLab refused it
        self.calls += 1
        try:  # noqa: SIM105 -- contextlib.suppress costs more than this whole hook
            self.recorder.note_progress(step, data if isinstance(data, Mapping) else None)
        except Exception:
            pass
        return result
