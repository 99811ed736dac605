"""Bring a run on disk into the daemon's care, at start-up or when it appears.

For every run directory the daemon meets, what the disk says (records,
process identity) is reconciled with what the daemon already said (the
outbox journal), so a restart never alerts a transition twice and never
misses one: a run that ended or died while the daemon was down is alerted
now, a run of an earlier boot is "lost", a live one is watched again.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Optional

from sentinel.daemon.decide import Event, EventKind, RunState, replay, stall_deadline
from sentinel.daemon.liveness import Status
from sentinel.daemon.oom import cgroup_counter
from sentinel.daemon.runs import TrackedRun

if TYPE_CHECKING:
    from sentinel.daemon.loop import Daemon

log = logging.getLogger("sentinel.daemon.reconcile")

DOWN_DETAIL = "died while the daemon was down"
ENDED_DOWN_DETAIL = "ended while the daemon was down"
LOST_DETAIL = "the machine rebooted while the run was going (its record is from an earlier boot)"


def beat_text(run: TrackedRun) -> str:
    if run.progress is None:
        return "no heartbeat recorded"
    return "last heartbeat " + time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(run.progress.beat))


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
    log.debug("tracking %s (pid %d, %s, %d alert(s) so far)", run_id, record.pid, run.state.value,
              run.transitions)

    daemon.deliver_messages(run, now)
    if run.state.is_live:
        final = daemon.reader.read_final(run)
        if final is not None:
            daemon.apply(run, Event.final(final.state), now, final=final,
                         detail=ENDED_DOWN_DETAIL if at_startup else None)

    status = daemon.liveness.watch(run_id, run.identity)
    if status is Status.ALIVE:
        run.watched = True
        run.cgroup = cgroup_counter(record.pid)  # now, while /proc/<pid>/cgroup exists
        daemon.jobs.admit(run, now)  # jobs: its job's other ranks on this host are watched too
        if run.state is RunState.STALLED:
            daemon.watcher.want_beats(run_id, True)
            daemon.check_recovery(run, now)
        elif run.state is RunState.RUNNING:
            daemon.schedule_stall_check(run, stall_deadline(run.progress, record.started,
                                                            daemon.stall_timeout(run)))
        return run

    if run.state.is_live:
        if status is Status.OTHER_BOOT:
            daemon.apply(run, Event(EventKind.OTHER_BOOT), now, detail=f"{LOST_DETAIL}; {beat_text(run)}")
        elif at_startup:
            daemon.apply(run, Event(EventKind.FOUND_DEAD), now, detail=f"{DOWN_DETAIL}; {beat_text(run)}")
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
