"""Bring a run on disk into the daemon's care, at start-up or when it appears.

For every run directory the daemon meets, what the disk says (records,
process identity) is reconciled with what the daemon already said (the
outbox journal), so a restart never alerts a transition twice and never
misses one: a run that ended or died while the daemon was down is alerted
now, a run of an earlier boot is "lost", a live one is watched again.
"""

from __future__ import annotations

import logging
from typing import Any, Optional, Protocol

from sentinel.daemon.decide import Event, EventKind, RunState, replay, stall_deadline
from sentinel.daemon.liveness import Liveness, Status
from sentinel.daemon.oom import cgroup_counter
from sentinel.daemon.run_reader import RunReader, TrackedRun
from sentinel.daemon.spool_watcher import SpoolWatcher
from sentinel.endings import Reason
from sentinel.spool import FinalRecord

log = logging.getLogger("sentinel.daemon.reconcile")

ENDED_DOWN = Reason("ended_while_down")


class Daemon(Protocol):
    """What reconciling needs of the daemon (``sentinel.daemon.loop.Daemon``)."""

    reader: RunReader
    outbox: Any
    liveness: Liveness
    watcher: SpoolWatcher
    runs: dict[str, TrackedRun]
    observer: Any  # sentinel.fleet.FleetObserver: told of every run admitted

    def resolve_channels(self, run: TrackedRun) -> list[str]: ...
    def deliver_messages(self, run: TrackedRun, now: float) -> None: ...
    def apply(self, run: TrackedRun, event: Event, now: float, *, final: Optional[FinalRecord] = None,
              reason: Optional[Reason] = None) -> None: ...
    def judge_exit(self, run: TrackedRun, now: float) -> None: ...
    def retire(self, run: TrackedRun, now: float) -> None: ...
    def check_recovery(self, run: TrackedRun, now: float) -> None: ...
    def schedule_stall_check(self, run: TrackedRun, when: Optional[float]) -> None: ...
    def stall_timeout(self, run: TrackedRun) -> float: ...
    def list_run_ids(self) -> list[str]: ...
    def forget(self, run_id: str) -> None: ...


def last_beat(run: TrackedRun) -> Optional[float]:
    return run.progress.beat if run.progress is not None else None


def admit(daemon: Daemon, run_id: str, now: float, at_startup: bool) -> Optional[TrackedRun]:
    """Start tracking ``run_id`` if its record is there and trusted."""
    loaded = daemon.reader.read_run(run_id)
    if loaded is None:
        return None
    record, owner_uid = loaded
    run = TrackedRun(record=record, paths=daemon.reader.paths(run_id), owner_uid=owner_uid)
    run.state, run.transitions = replay(a.kind for a in daemon.outbox.journal(run_id))
    run.channels = daemon.resolve_channels(run)
    run.progress = daemon.reader.read_progress(run)
    daemon.runs[run_id] = run
    daemon.observer.run_tracked(run, daemon.reader.shared)  # fleet hook
    log.debug("tracking %s (pid %d, %s, %d alert(s) so far)", run_id, record.pid, run.state.value,
              run.transitions)

    daemon.deliver_messages(run, now)
    if run.state.is_live:
        final = daemon.reader.read_final(run)
        if final is not None:
            daemon.apply(run, Event.final(final.state), now, final=final,
                         reason=ENDED_DOWN if at_startup else None)

    status = daemon.liveness.watch(run_id, run.identity)
    if status is Status.ALIVE:
        run.watched = True
        run.cgroup = cgroup_counter(record.pid)  # now, while /proc/<pid>/cgroup exists
        if run.state is RunState.STALLED:
            daemon.watcher.want_beats(run_id, True)
            daemon.check_recovery(run, now)
        elif run.state is RunState.RUNNING:
            daemon.schedule_stall_check(run, stall_deadline(run.progress, record.started,
                                                            daemon.stall_timeout(run)))
        return run

    if run.state.is_live:
        if status is Status.OTHER_BOOT:
            daemon.apply(run, Event(EventKind.OTHER_BOOT), now,
                         reason=Reason("rebooted", {"last_beat": last_beat(run)}))
        elif at_startup:
            daemon.apply(run, Event(EventKind.FOUND_DEAD), now,
                         reason=Reason("died_while_down", {"last_beat": last_beat(run)}))
        else:
            daemon.judge_exit(run, now)  # died between writing its record and our look
    if run.state.is_terminal:
        daemon.retire(run, now)
    return run


def reconcile_all(daemon: Daemon, now: float) -> int:
    """Start-up: every run in the spool; returns how many are tracked."""
    count = 0
    for run_id in daemon.list_run_ids():
        if run_id in daemon.runs:
            continue
        try:
            if admit(daemon, run_id, now, at_startup=True) is not None:
                count += 1
        except Exception:  # one bad run must not keep the others from being watched
            log.exception("reconciling %s failed; will retry at the next rescan", run_id)
            daemon.forget(run_id)
    log.info("start-up: %d run(s) reconciled, %d being watched", count,
             sum(1 for r in daemon.runs.values() if r.watched))
    return count
