"""What the job watch knows of a job, and what it asks the tracker to do.

A job (``Job``) is its ranks on this host (``Member``), each with how it
ended (``Death``) once it has; ``job_watch`` keeps them and judges them,
``job_state`` saves and reads them, ``job_restore`` brings them back after a
restart. The decisions (``Say``, ``RetireIfEnded``, ``CheckStallAt``,
``WatchStalledJob``) are what the job watch returns to the tracker, which
carries them out in order: the job watch never calls the tracker.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Union

from sentinel.daemon.oom import CgroupCounter
from sentinel.daemon.run_reader import TrackedRun
from sentinel.formats.spool import FinalRecord, JobRecord
from sentinel.host.procid import ProcessIdentity
from sentinel.model.endings import Reason
from sentinel.model.exit_status import Ending
from sentinel.model.run_states import Event

# ---------------------------------------------------------------- decisions (what the tracker is to do)


@dataclass(frozen=True)
class Say:
    """Raise the alert of ``event`` on ``run`` (``Tracker.apply``)."""

    run: TrackedRun
    event: Event
    reason: Optional[Reason] = None
    final: Optional[FinalRecord] = None
    overrides: Optional[Mapping[str, Any]] = None


@dataclass(frozen=True)
class RetireIfEnded:
    """Archive ``run`` on the loop's next pass if the decisions before this one ended it."""

    run: TrackedRun


@dataclass(frozen=True)
class CheckStallAt:
    """Come back to ``run``'s stall check at ``when``."""

    run: TrackedRun
    when: float


@dataclass(frozen=True)
class WatchStalledJob:
    """``run`` speaks for a job whose stall was alerted (before a restart): every rank's
    beat can end it, and one may have landed meanwhile (``Tracker.job_stalled``)."""

    run: TrackedRun


Decision = Union[Say, RetireIfEnded, CheckStallAt, WatchStalledJob]

# ---------------------------------------------------------------- facts


@dataclass
class Death:
    """How one rank ended, as far as this host can tell."""

    at: float
    final: Optional[FinalRecord] = None  # a recorded rank's own word
    status: Optional[Ending] = None  # the kernel's wait status, in words
    oom: Optional[Reason] = None
    message: Optional[str] = None  # "RuntimeError: boom", from the rank's error file
    traceback: Optional[str] = None
    gpu: list[Reason] = field(default_factory=list)  # Xids naming the rank's process
    down: bool = False  # found ended at a start-up: it ended while no daemon watched (job_restore)


@dataclass
class Member:
    ident: ProcessIdentity
    rank: Optional[int]
    local_rank: Optional[int]
    error_file: str = ""
    run_id: Optional[str] = None  # a recorded rank; None for a sibling found on the host
    cgroup: Optional[CgroupCounter] = None
    status: Optional[Ending] = None  # read when its pidfd fired
    death: Optional[Death] = None
    gone: bool = False  # the process has exited
    holds_pidfd: bool = False  # its pidfd is open, counted against its user's budget

    def label(self, host: str) -> Reason:
        """'rank 3 (local rank 3, host h, pid 123)'."""
        where = {"host": host, "pid": self.ident.pid}
        if self.rank is None:
            return Reason("rank_label_pid", where)
        if self.local_rank is None:
            return Reason("rank_label_global", {"rank": self.rank, **where})
        return Reason("rank_label", {"rank": self.rank, "local_rank": self.local_rank, **where})


@dataclass
class Job:
    key: str
    uid: int
    record: JobRecord
    host: str
    members: dict[int, Member] = field(default_factory=dict)  # by pid
    first_failure: Optional[float] = None
    settle_at: Optional[float] = None
    alerted_at: Optional[float] = None
    restored: bool = False  # brought back from the state directory; its ranks not judged yet (job_restore)

    @property
    def slurm_id(self) -> str:
        return self.record.slurm.get("job_id", "")

    @property
    def slurm_restarts(self) -> int:
        raw = self.record.slurm.get("restart_count", "0")
        return int(raw) if raw.isdigit() else 0

    def all_gone(self) -> bool:
        return all(m.gone and m.death is not None for m in self.members.values())

    def member_of_run(self, run_id: str) -> Optional[Member]:
        return next((m for m in self.members.values() if m.run_id == run_id), None)
