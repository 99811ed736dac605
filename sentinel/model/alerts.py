"""What an alert says: the one model the daemon decides and channels render.

An ``Alert`` is built from spool records (``from_run``) and carries every fact
a channel may show; it is serialisable so the outbox can keep it on disk.
Stdlib only: the in-process fallback sender builds alerts too.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Mapping, Optional
from urllib.parse import urlsplit

from sentinel.common import sparkline
from sentinel.formats.spool import FinalRecord, Progress, RunRecord
from sentinel.model import endings
from sentinel.model.endings import Reason


class _KindOfAlert(str):
    """What every AlertKind member knows: its row in ``sentinel.model.endings``."""

    value: str

    @property
    def ending(self) -> endings.Ending:
        return endings.BY_KIND[self.value]

    @property
    def is_state(self) -> bool:
        """A run-state transition (not a message or a test)."""
        return self.ending.run_state is not None


if TYPE_CHECKING:
    class AlertKind(_KindOfAlert, enum.Enum):
        """The names typed code uses; at run time the members are made from
        ``sentinel.model.endings.ENDINGS`` (one per row, in table order), so a row
        is a kind (tests/test_endings.py checks these names are rows)."""

        FINISHED = "finished"
        CRASHED = "crashed"
        ABORTED = "aborted"
        TERMINATED = "terminated"
        KILLED = "killed"
        STALLED = "stalled"
        RECOVERED = "recovered"
        LOST = "lost"
        TIME_LIMIT = "time_limit"
        CANCELLED = "cancelled"
        PREEMPTED = "preempted"
        NODE_FAILURE = "node_failure"
        GPU_FAULT = "gpu_fault"
        MESSAGE = "message"
        TEST = "test"
else:
    AlertKind = enum.Enum("AlertKind", [(e.kind.upper(), e.kind) for e in endings.ENDINGS],
                          module=__name__, qualname="AlertKind", type=_KindOfAlert)
    AlertKind.__doc__ = "The kinds of ``sentinel.model.endings.ENDINGS``, one member per row."

# Labels the integrations set themselves (SwanLab's names, the run's link):
# an alert shows them in their own places, so its label list leaves them out.
RUN_LABELS = frozenset({"project", "workspace", "experiment", "description", "swanlab_run_id",
                        "mode", "url"})

# States a user may switch alerts on and off for (config `alert_on`).
ALERT_STATES = endings.STATE_KINDS


def check_alert_on(value: Any) -> list[str]:
    """A run's ``alert_on=``: a list of states, checked as the config checks its own."""
    if isinstance(value, str) or not isinstance(value, (list, tuple, set, frozenset)):
        raise ValueError(f"alert_on must be a list of states ({', '.join(ALERT_STATES)}), not {value!r}")
    unknown = [item for item in value if item not in ALERT_STATES]
    if unknown:
        raise ValueError(f"alert_on: unknown state {unknown[0]!r}; states are: {', '.join(ALERT_STATES)}")
    return [state for state in ALERT_STATES if state in value]


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
    # Why, in English (logs, and records written before ``reason`` existed);
    # channels word ``reason`` in their language instead when it is set.
    detail: Optional[str] = None
    text: Optional[str] = None  # message body (MESSAGE / TEST)
    language: Optional[str] = None  # the run's preference; a channel's own setting wins
    reason: Optional[str] = None  # a code of sentinel.model.endings.REASONS
    reason_args: dict[str, Any] = field(default_factory=dict)
    trend_metric: Optional[str] = None  # the metric ``trend`` follows
    trend: list[float] = field(default_factory=list)  # its last values, oldest first
    # A job event: "id", "launcher", "ranks" (local ranks watched), "cause_rank" (the first failure)
    job: dict[str, str] = field(default_factory=dict)
    # Evidence (sentinel.formats.evidence): the frame a stalled run waits in, or the
    # frame a fatal signal hit ("wait_for_peer (train.py:12)"); every thread's
    # stack (the whole text: e-mail, webhook, status); why stacks are missing.
    where: Optional[str] = None
    stacks: Optional[str] = None
    evidence_missing: Optional[str] = None
    output: list[str] = field(default_factory=list)  # the last lines the run printed, oldest first
    # Why no channel was to get it (``sentinel history`` says so): muted, not in
    # alert_on, part of its job's alert; None: it had channels.
    silenced: Optional[str] = None
    # The container the run's process is in, as the daemon read it from its cgroup
    # (sentinel.host.containers.ContainerIdentity.as_dict); ``hostname`` is then the node's.
    container: dict[str, str] = field(default_factory=dict)

    @property
    def why(self) -> Optional[Reason]:
        return Reason(self.reason, dict(self.reason_args)) if self.reason else None

    @property
    def url(self) -> Optional[str]:
        """The run's link (``labels.url``) if it is a plain http(s) URL, else
        None: it becomes a tap target and a button, where ``javascript:``,
        ``file:`` or an app's own scheme must never go."""
        return http_link(self.labels.get("url"))

    @property
    def user_labels(self) -> dict[str, str]:
        """The labels the user gave the run (``labels={"gpu": "0"}``)."""
        return {k: v for k, v in self.labels.items() if k not in RUN_LABELS}

    @property
    def duration(self) -> Optional[float]:
        if self.started is None:
            return None
        return max(0.0, (self.ended if self.ended is not None else self.created) - self.started)

    def to_dict(self) -> dict[str, Any]:
        # Not dataclasses.asdict: its deep copy was a third of an alert's way
        # into the outbox. The fields are flat (str, numbers, lists of numbers
        # and str, dicts of str to str or numbers): a shallow copy of each is whole.
        data = {name: _copied(getattr(self, name)) for name in _FIELD_NAMES}
        data["kind"] = self.kind.value
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Alert:
        values = dict(data)
        values["kind"] = AlertKind(values["kind"])
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in values.items() if k in known})


_FIELD_NAMES = tuple(f.name for f in fields(Alert))


def _copied(value: Any) -> Any:
    return dict(value) if isinstance(value, dict) else list(value) if isinstance(value, list) else value


_LINK_MAX_CHARS = 2000


def http_link(value: Optional[str]) -> Optional[str]:
    """``value`` if it is an http(s) URL with a host and no whitespace or control characters."""
    if not value or len(value) > _LINK_MAX_CHARS or any(c.isspace() or not c.isprintable() for c in value):
        return None
    try:
        parts = urlsplit(value)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    return value


def from_run(
    alert_id: str,
    kind: AlertKind,
    run: RunRecord,
    *,
    progress: Optional[Progress] = None,
    final: Optional[FinalRecord] = None,
    now: Optional[float] = None,
    reason: Optional[Reason] = None,
    text: Optional[str] = None,
    trend_metric: Optional[str] = None,
    trend_points: int = sparkline.DEFAULT_POINTS,
    user: Optional[str] = None,
    kernel_status: Optional[int] = None,
) -> Alert:
    """An alert about ``run`` with the freshest facts the records hold;
    ``user`` (the verified account) stands in for the name the record claims;
    ``trend_metric`` (default: the first one logged) is drawn from its last
    ``trend_points`` values; ``kernel_status`` (a wait status, as the kernel
    reported the death) names the signal or exit code, over what the final
    record says."""
    now = time.time() if now is None else now
    signal, exit_code = (final.signal, final.exit_code) if final is not None else (None, None)
    if kernel_status is not None:
        from sentinel.model.exit_status import ending_of

        ending = ending_of(kernel_status)
        signal, exit_code = ending.signal, ending.exit_code
    step = progress.step if progress else None
    if final is not None and final.step is not None:
        step = final.step
    scalars = (final.scalars if final is not None and final.scalars else None) or (
        progress.scalars if progress else {}
    )
    metric, trend = sparkline.pick_series(progress.history if progress else {}, scalars,
                                          trend_metric, trend_points)
    return Alert(
        alert_id=alert_id,
        kind=kind,
        created=now,
        run_id=run.run_id,
        run_name=run.name or run.labels.get("experiment") or run.run_id,
        hostname=run.hostname,
        user=run.user if user is None else user,
        pid=run.pid,
        labels=dict(run.labels),
        started=run.started,
        ended=final.ended if final is not None else None,
        last_beat=progress.beat if progress else None,
        last_progress=progress.last_progress if progress else None,
        step=step,
        scalars=dict(scalars),
        exit_code=exit_code,
        signal=signal,
        error=final.error if final is not None else None,
        detail=reason.text("en") if reason is not None else None,
        text=text,
        language=run.language,
        reason=reason.code if reason is not None else None,
        reason_args=dict(reason.args) if reason is not None else {},
        trend_metric=metric,
        trend=trend,
        # What it printed last belongs to how it ended (and to a stall: what it said before it hung).
        output=list(progress.output) if progress is not None and kind.value != "message" else [],
    )
