"""What happened to a run: the one pure place where run states change.

Everything the daemon observes about a run becomes an ``Event``;
``transition`` maps (state, event) to the next state and the alert that
transition raises, if any. Nothing here reads the clock, the disk or a
process: the loop gathers the facts, this module decides. Exactly one alert
per transition, and an ended run (any terminal state) never changes again,
so a late or repeated observation can never alert twice.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, NamedTuple, Optional

from sentinel.formats.spool import FinalRecord, Progress
from sentinel.model import endings
from sentinel.model.alerts import AlertKind


class _StateOfRun(str):
    value: str

    @property
    def is_live(self) -> bool:
        """The run may still change state (its process is believed to exist)."""
        return self.value in endings.LIVE_STATES

    @property
    def is_terminal(self) -> bool:
        return not self.is_live


if TYPE_CHECKING:
    class RunState(_StateOfRun, enum.Enum):
        """The names typed code uses; at run time the members are ``running``
        and each ``run_state`` of ``sentinel.model.endings.ENDINGS``."""

        RUNNING = "running"
        STALLED = "stalled"
        FINISHED = "finished"
        CRASHED = "crashed"
        ABORTED = "aborted"
        TERMINATED = "terminated"
        KILLED = "killed"
        LOST = "lost"
        TIME_LIMIT = "time_limit"
        CANCELLED = "cancelled"
        PREEMPTED = "preempted"
        NODE_FAILURE = "node_failure"
        FAULTED = "faulted"  # alive, but a GPU fault was reported: it explains any stall that follows
else:
    RunState = enum.Enum("RunState", [(state.upper(), state) for state in endings.RUN_STATES],
                         module=__name__, qualname="RunState", type=_StateOfRun)


class EventKind(str, enum.Enum):
    FINAL_SEEN = "final_seen"  # final.json read; the process may still be alive
    EXITED = "exited"  # the process is gone and no final record exists
    EXITED_OOM = "exited_oom"  # ... and the kernel says the OOM killer did it
    FOUND_DEAD = "found_dead"  # at start-up: gone, no final record, same boot
    OTHER_BOOT = "other_boot"  # the record names a process of an earlier boot
    # The run's process cannot be seen (another PID namespace) and its heartbeat stopped.
    HEARTBEAT_LOST = "heartbeat_lost"
    PROGRESS_STALE = "progress_stale"  # alive, but no beat/progress for the stall timeout
    PROGRESS_FRESH = "progress_fresh"  # beats/progress are within the stall timeout again
    # Jobs: the ranks of one job on this host end as one event (daemon/job_watch.py).
    JOB_ENDED = "job_ended"  # the job this run speaks for ended; final_state: the ending kind
    FOLDED = "folded"  # this rank's ending is part of its job's one alert; final_state: its kind
    GPU_FAULT = "gpu_fault"  # the kernel logged an Xid naming a GPU/node fault for this run


@dataclass(frozen=True)
class Event:
    kind: EventKind
    # FINAL_SEEN: FinalRecord.state; JOB_ENDED / FOLDED: an ending AlertKind value
    final_state: Optional[str] = None

    @classmethod
    def final(cls, state: str) -> Event:
        return cls(EventKind.FINAL_SEEN, state)

    @classmethod
    def job_ended(cls, kind: AlertKind) -> Event:
        return cls(EventKind.JOB_ENDED, kind.value)

    @classmethod
    def folded(cls, kind: AlertKind) -> Event:
        return cls(EventKind.FOLDED, kind.value)

    @property
    def is_quiet(self) -> bool:
        """Journaled (so a restart knows the run ended) but sent to no channel:
        the job's one alert already says it."""
        return self.kind is EventKind.FOLDED


class Transition(NamedTuple):
    state: RunState
    alert: Optional[AlertKind]


# The maps below come from the endings table: a kind's row names the state it
# leaves a run in, and whether the process can record it itself.
_FINAL_TO_STATE = {
    e.kind: RunState(e.run_state) for e in endings.ENDINGS if e.recorded and e.run_state is not None
}
# The alert a transition into a state raises (entering RUNNING again is "recovered").
_STATE_TO_ALERT = {
    RunState(e.run_state): AlertKind(e.kind)
    for e in endings.ENDINGS
    if e.run_state is not None and e.run_state != RunState.RUNNING.value
}

# How a job (or one of its ranks) can end: the ending kinds a job verdict names.
ENDING_KINDS = {kind: state for state, kind in _STATE_TO_ALERT.items() if state.is_terminal}


def transition(state: RunState, event: Event) -> Transition:
    """The next state of a run and the alert to raise (None: nothing to say)."""
    stay = Transition(state, None)

    # An ended run is history: whatever arrives later (a final record written
    # after we declared the run killed, a late exit notice, a stale beat file)
    # must not produce a second alert about the same run.
    if state.is_terminal:
        return stay

    kind = event.kind
    if kind is EventKind.FINAL_SEEN:
        # The process told us how it ended. Believe it over anything we
        # inferred, even while it is still alive (exiting, flushing): alert now
        # rather than wait for the exit, which may take a while.
        new = _FINAL_TO_STATE.get(event.final_state or "")
        if new is None:
            return stay  # unknown state: the reader validates, so unreachable
        return Transition(new, _STATE_TO_ALERT[new])

    if kind in (EventKind.EXITED, EventKind.EXITED_OOM, EventKind.FOUND_DEAD):
        # Gone without a final record: nothing in the process got to say
        # goodbye, so it was killed (SIGKILL, OOM killer, interpreter crash).
        # The three events differ only in the detail the loop puts on the alert.
        return Transition(RunState.KILLED, AlertKind.KILLED)

    if kind is EventKind.HEARTBEAT_LOST:
        # Nothing says the process died, only that it went silent: "lost", never "killed".
        return Transition(RunState.LOST, AlertKind.LOST)

    if kind is EventKind.OTHER_BOOT:
        # The machine rebooted under a running run: its process cannot exist
        # any more, and nothing saw how it ended.
        return Transition(RunState.LOST, AlertKind.LOST)

    if kind in (EventKind.JOB_ENDED, EventKind.FOLDED):
        # The job's verdict: how the run's job ended (JOB_ENDED, alerted) or
        # how this rank ended inside it (FOLDED, journaled quietly).
        try:
            ending = AlertKind(event.final_state or "")
        except ValueError:
            return stay
        new = ENDING_KINDS.get(ending)
        return stay if new is None else Transition(new, ending)

    if kind is EventKind.GPU_FAULT:
        # Said once: the fault stays true until the run ends (which alerts again).
        if state is RunState.FAULTED:
            return stay
        return Transition(RunState.FAULTED, AlertKind.GPU_FAULT)

    if kind is EventKind.PROGRESS_STALE:
        # Alive but silent: report the stall once; staying stalled is quiet.
        # A faulted run is expected to stall: the fault alert said why.
        if state is RunState.RUNNING:
            return Transition(RunState.STALLED, AlertKind.STALLED)
        return stay

    if kind is EventKind.PROGRESS_FRESH:
        # Beats resumed after a reported stall: say so once. A running run
        # that beats is the normal case and says nothing.
        if state is RunState.STALLED:
            return Transition(RunState.RUNNING, AlertKind.RECOVERED)
        return stay

    return stay


# ------------------------------------------------------------ stall timing


def stall_deadline(
    progress: Optional[Progress], started: float, timeout: float
) -> float:
    """The earliest time the run counts as stalled if nothing new arrives.

    Both the heartbeat (a frozen process) and the last reported progress (a
    hang that leaves the heartbeat thread running) must stay within
    ``timeout``; a run with no progress yet is measured from its start.
    ``expect_pause`` pushes the deadline to ``pause_until`` at the earliest.
    """
    beat = progress.beat if progress is not None else started
    last = progress.last_progress if progress is not None and progress.last_progress is not None else started
    deadline = min(beat, last) + timeout
    if progress is not None and progress.pause_until is not None:
        deadline = max(deadline, progress.pause_until)
    return deadline


def is_stale(progress: Optional[Progress], started: float, timeout: float, now: float) -> bool:
    return now > stall_deadline(progress, started, timeout)


def stall_reason(progress: Optional[Progress], started: float, heartbeat_interval: float, timeout: float,
                 now: float) -> endings.Reason:
    """How a stale run is stuck: ``frozen`` when its heartbeat stopped too (missing
    several beats means the whole process stopped), else ``stuck`` (training only)."""
    beat = progress.beat if progress is not None else started
    last = started
    if progress is not None and progress.last_progress is not None:
        last = progress.last_progress
    if now - beat > 3 * heartbeat_interval:
        return endings.Reason("frozen", {"silent": now - beat, "timeout": timeout})
    return endings.Reason("stuck", {"silent": now - last, "timeout": timeout})


def progress_event(progress: Optional[Progress], started: float, timeout: float, now: float) -> Event:
    stale = is_stale(progress, started, timeout, now)
    return Event(EventKind.PROGRESS_STALE if stale else EventKind.PROGRESS_FRESH)


def exit_event(final: Optional[FinalRecord], oom: bool, at_startup: bool) -> Event:
    """The event for a process found gone: its final record wins if it has one."""
    if final is not None:
        return Event.final(final.state)
    if at_startup:
        return Event(EventKind.FOUND_DEAD)
    return Event(EventKind.EXITED_OOM if oom else EventKind.EXITED)


# ------------------------------------------------------------ restart recovery

_ALERT_TO_STATE = {
    AlertKind(e.kind): RunState(e.run_state) for e in endings.ENDINGS if e.run_state is not None
}


def replay(kinds: Iterable[AlertKind]) -> tuple[RunState, int]:
    """A run's state and transition count rebuilt from the alerts it raised.

    Every transition raised exactly one alert and the outbox journals each
    one, so replaying the journal in order restores what the daemon knew
    before a restart; messages are not transitions and are skipped.
    """
    state, count = RunState.RUNNING, 0
    for kind in kinds:
        new = _ALERT_TO_STATE.get(kind)
        if new is None:
            continue
        state, count = new, count + 1
    return state, count


def alert_id(run_id: str, number: int, kind: AlertKind) -> str:
    """Stable id of a run's ``number``-th transition (1-based): a decision
    re-made after a crash gets the same id, so the outbox drops the copy."""
    return f"{run_id}.{number:03d}.{kind.value}"


def message_alert_id(run_id: str, seq: int) -> str:
    return f"{run_id}.m{seq:08d}"
