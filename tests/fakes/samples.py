"""Sample alerts and a hand-driven clock for delivery tests and benchmarks."""

from __future__ import annotations

from typing import Any

from sentinel.model.alerts import Alert, AlertKind

NOW = 1_750_000_000.0
RUN_ID = "20250615T143000-41233-abcdef"

TRACEBACK = """Traceback (most recent call last):
  File "train.py", line 88, in <module>
    loss.backward()
  File "torch/_tensor.py", line 522, in backward
    torch.autograd.backward(
RuntimeError: CUDA error: an illegal memory access was encountered"""


def sample_alert(kind: AlertKind = AlertKind.CRASHED, n: int = 1, **overrides: Any) -> Alert:
    """A realistic alert about a run that ran 2h 13m and got to step 12,345."""
    values: dict[str, Any] = dict(
        alert_id=f"{RUN_ID}.{n:03d}.{kind.value}" if kind != AlertKind.MESSAGE else f"{RUN_ID}.m{n:08d}",
        kind=kind,
        created=NOW,
        run_id=RUN_ID,
        run_name="resnet50-lr3e-4",
        hostname="gpu-box-3",
        user="alice",
        pid=41233,
        labels={"project": "cifar10", "url": "https://swanlab.cn/@alice/cifar10/runs/x1y2z3"},
        started=NOW - 7980.0,
        ended=NOW - 2.0 if kind in (AlertKind.FINISHED, AlertKind.CRASHED, AlertKind.ABORTED,
                                    AlertKind.TERMINATED) else None,
        last_beat=NOW - 8.0,
        last_progress=NOW - 12.0,
        step=12345,
        scalars={"loss": 0.4123, "acc": 0.8812},
    )
    if kind == AlertKind.CRASHED:
        values.update(exit_code=1, error=TRACEBACK)
    elif kind == AlertKind.TERMINATED:
        values.update(signal="SIGTERM", exit_code=-15)
    elif kind == AlertKind.KILLED:
        values.update(detail="OOM killer: Out of memory: Killed process 41233 (python)")
    elif kind == AlertKind.STALLED:
        values.update(last_progress=NOW - 750.0)
    elif kind == AlertKind.MESSAGE:
        values.update(text="epoch 3 done: val acc 0.91")
    values.update(overrides)
    return Alert(**values)


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now
