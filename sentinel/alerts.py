"""What an alert says: the one model the daemon decides and channels render.

An ``Alert`` is built from spool records (``from_run``) and carries every fact
a channel may show; it is serialisable so the outbox can keep it on disk.
Stdlib only: the in-process fallback sender builds alerts too.
"""

from __future__ import annotations

import enum
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Optional

from sentinel.spool import FinalRecord, Progress, RunRecord


class AlertKind(str, enum.Enum):
    FINISHED = "finished"
    CRASHED = "crashed"
    ABORTED = "aborted"
    TERMINATED = "terminated"
    KILLED = "killed"
    STALLED = "stalled"
    RECOVERED = "recovered"
    LOST = "lost"
    # Scheduler endings and GPU faults (jobs and clusters).
    TIME_LIMIT = "time_limit"  # Slurm ended the job at its time limit
    CANCELLED = "cancelled"  # scancel
    PREEMPTED = "preempted"  # Slurm preempted the job (requeued or cancelled)
    NODE_FAILURE = "node_failure"  # Slurm lost the node
    GPU_FAULT = "gpu_fault"  # an NVIDIA Xid naming a GPU/node fault, while the run lives
    MESSAGE = "message"  # a user's send_msg / run.send text
    TEST = "test"  # `sentinel test`

    @property
    def is_state(self) -> bool:
        return self not in (AlertKind.MESSAGE, AlertKind.TEST)


# States a user may switch alerts on and off for (config `alert_on`).
ALERT_STATES = tuple(k.value for k in AlertKind if k.is_state)


@dataclass(frozen=True)
class Alert:
    alert_id: str  # stable: the same decision always yields the same id
    kind: AlertKind
    created: float
    run_id: str = ""
    run_name: str = ""
    hostname: str = ""
    user: str = ""
    pid: Optional[int] = None
    labels: dict[str, str] = field(default_factory=dict)  # project, workspace, experiment, url, ...
    started: Optional[float] = None
    ended: Optional[float] = None
    last_beat: Optional[float] = None
    last_progress: Optional[float] = None
    step: Optional[int] = None
    scalars: dict[str, float] = field(default_factory=dict)
    exit_code: Optional[int] = None
    signal: Optional[str] = None
    error: Optional[str] = None  # error tail
    detail: Optional[str] = None  # why: "OOM killer ...", "died while the daemon was down", ...
    text: Optional[str] = None  # message body (MESSAGE / TEST)
    language: Optional[str] = None  # the run's preference; a channel's own setting wins
    # A job event: "id", "launcher", "ranks" (local ranks watched), "cause_rank" (the first failure)
    job: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> Optional[str]:
        return self.labels.get("url") or None

    @property
    def duration(self) -> Optional[float]:
        if self.started is None:
            return None
        return max(0.0, (self.ended if self.ended is not None else self.created) - self.started)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["kind"] = self.kind.value
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Alert:
        values = dict(data)
        values["kind"] = AlertKind(values["kind"])
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in values.items() if k in known})


def from_run(
    alert_id: str,
    kind: AlertKind,
    run: RunRecord,
    *,
    progress: Optional[Progress] = None,
    final: Optional[FinalRecord] = None,
    now: Optional[float] = None,
    detail: Optional[str] = None,
    text: Optional[str] = None,
) -> Alert:
    """An alert about ``run`` with the freshest facts the records hold."""
    now = time.time() if now is None else now
    step = progress.step if progress else None
    if final is not None and final.step is not None:
        step = final.step
    scalars = (final.scalars if final is not None and final.scalars else None) or (
        progress.scalars if progress else {}
    )
    return Alert(
        alert_id=alert_id,
        kind=kind,
        created=now,
        run_id=run.run_id,
        run_name=run.name or run.labels.get("experiment") or run.run_id,
        hostname=run.hostname,
        user=run.user,
        pid=run.pid,
        labels=dict(run.labels),
        started=run.started,
        ended=final.ended if final is not None else None,
        last_beat=progress.beat if progress else None,
        last_progress=progress.last_progress if progress else None,
        step=step,
        scalars=dict(scalars),
        exit_code=final.exit_code if final is not None else None,
        signal=final.signal if final is not None else None,
        error=final.error if final is not None else None,
        detail=detail,
        text=text,
        language=run.language,
    )
