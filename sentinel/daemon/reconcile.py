"""Bring a run on disk into the daemon's care, at start-up or when it appears.

For every run directory the daemon meets, what the disk says (records,
process identity) is reconciled with what the daemon already said (the
outbox journal), so a restart never alerts a transition twice and never
misses one: a run that ended or died while the daemon was down is alerted
now, a run of an earlier boot is "lost", a live one is watched again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from typing import Optional

from sentinel.daemon import run_snapshot
from sentinel.daemon.liveness import Status
from sentinel.daemon.ns_watch import UNWATCHABLE_FIX, Found
from sentinel.daemon.oom import cgroup_counter
from sentinel.daemon.run_reader import TrackedRun
from sentinel.daemon.tracking import Tracker
from sentinel.host import containers
from sentinel.host.procid import boot_id, zombie_exit_status
from sentinel.model.endings import Reason
from sentinel.model.run_states import Event, EventKind, RunState, replay, stall_deadline

log = logging.getLogger("sentinel.daemon.reconcile")

ENDED_DOWN = Reason("ended_while_down")


def last_beat(run: TrackedRun) -> Optional[float]:
    return run.progress.beat if run.progress is not None else None


def admit(tracker: Tracker, run_id: str, now: float, at_startup: bool) -> Optional[TrackedRun]:
    """Start tracking ``run_id`` if its record is there and trusted."""
    tracker.watcher.watch_run(run_id)  # first: a change made after the read below is seen
    loaded = tracker.reader.read_run(run_id)
    if loaded is None:
        return None
    record = loaded.record
    if run_id not in tracker.runs and not tracker.budgets.room_for(
            run_id, loaded.owner_uid, 1 + len(record.watch_threads), now):
        tracker.watcher.forget(run_id)  # over its user's budget: a later rescan admits it
        return None
    run = TrackedRun(record=record, paths=tracker.reader.paths(run_id), owner_uid=loaded.owner_uid,
                     dir_id=loaded.dir_id)
    run.state, run.transitions = replay(a.kind for a in tracker.outbox.journal(run_id))
    run.channels = tracker.resolve_channels(run)
    with run_snapshot.take(tracker.reader, run) as snapshot:  # its other files, in one read
        run.progress = snapshot.progress
        tracker.runs[run_id] = run
        tracker.budgets.tracked(run_id, run.owner_uid, 0)
        tracker.observer.run_tracked(run, tracker.reader.shared)  # fleet hook
        log.debug("tracking %s (pid %d, %s, %d alert(s) so far)", run_id, record.pid, run.state.value,
                  run.transitions)

        tracker.deliver_messages(run, now, snapshot)
        final = snapshot.final
        if run.state.is_live and final is not None:
            held = tracker.jobs.holds_final(run, final, now)  # jobs: a restored job's rank waits for it
            if held is not None:
                tracker.act(held, now)
            else:
                tracker.apply(run, Event.final(final.state), now, final=final,
                              reason=ENDED_DOWN if at_startup else None, snapshot=snapshot)

    if tracker.resolver.foreign(record):
        if record.boot_id and record.boot_id != boot_id():
            settle(tracker, run, Status.OTHER_BOOT, now, at_startup)  # no lookup finds a process of then
            return run
        # Its pids are another namespace's (a container): found off the loop, settled in on_resolved.
        run.resolving = tracker.resolver.request(record, run.owner_uid, at_startup)
        return run  # not found yet, nor asked (queue full): live and unwatched, the rescan asks again
    settle(tracker, run, tracker.liveness.watch(run_id, run.identity, record.watch_threads), now,
           at_startup)
    return run


def settle(tracker: Tracker, run: TrackedRun, status: Status, now: float, at_startup: bool) -> None:
    """What the process watch said at admission: watched, or ended while unseen."""
    run_id, record = run.run_id, run.record
    if status is Status.ALIVE:
        run.watched = True
        watching = 1 if tracker.liveness.use_pidfd and tracker.liveness.watching(run_id) else 0
        tracker.budgets.tracked(run_id, run.owner_uid, watching + tracker.liveness.watched_threads(run_id))
        run.cgroup = cgroup_counter(run.identity.pid)  # now, while /proc/<pid>/cgroup exists
        with contextlib.suppress(OSError):  # its ending's alert then pays no mkdir (else it does)
            tracker.outbox.prepare_run(run_id)
        tracker.note_descendants(run)  # and again at rescans (loop.FAMILY_NOTES_PER_RESCAN)
        # The container from the cgroup of the process as this daemon numbers it (the host pid
        # of a namespaced run): read now, the cgroup goes with the container.
        run.container = containers.identify(run.identity.pid, record.start_ticks)
        if run.container is not None:
            log.info("run %s is in %s (%s)", run_id, run.container.label(), run.container.runtime)
        tracker.jobs.admit(run, now)  # jobs: its job's other ranks on this host are watched too
        if run.state is RunState.STALLED and tracker.jobs.restoring(run):
            pass  # jobs: its job's other ranks are not all back yet; judge_restored checks the stall
        elif run.state is RunState.STALLED:
            tracker.watcher.want_beats(run_id, True)
            tracker.check_recovery(run, now)
        elif run.state is RunState.RUNNING:
            tracker.schedule_stall_check(run, stall_deadline(run.progress, record.started,
                                                            tracker.stall_timeout(run)))
        return

    if run.state.is_live:
        if status is Status.OTHER_BOOT:
            tracker.apply(run, Event(EventKind.OTHER_BOOT), now,
                         reason=Reason("rebooted", {"last_beat": last_beat(run)}))
        elif at_startup:
            held = tracker.jobs.ended_while_down(run, now)  # jobs: held for its restored job
            if held is not None:
                tracker.act(held, now)
            else:
                tracker.apply(run, Event(EventKind.FOUND_DEAD), now,
                              reason=Reason("died_while_down", {"last_beat": last_beat(run)}))
        else:
            # Died between writing its record and our look; a zombie still tells how. Without
            # one, no process of this record was ever seen: an ending, not a claimed kill.
            ident = run.identity
            known = run.host_pid is not None or not tracker.resolver.foreign(record)
            wait_status = zombie_exit_status(ident.pid, ident.start_ticks) if known else None
            tracker.judge_exit(run, now, wait_status, seen_alive=wait_status is not None)
    if run.state.is_terminal:
        tracker.retire(run, now)


def on_resolved(tracker: Tracker, found: Found, now: float) -> None:
    """The resolver's answer for a run of another PID namespace."""
    run = tracker.runs.get(found.run_id)
    if run is None or not run.resolving:
        return  # forgotten meanwhile: a re-admission asks again
    run.resolving = False
    record = run.record
    if found.host_pid is not None:
        run.host_pid = found.host_pid
        job = record.job
        if job is not None and job.agent_pid is not None:
            # jobs: siblings are found as the agent's children, numbered here (their environment
            # names the job; parent_pid gives the host agent pid, so the job key must use it too).
            agent_ticks = job.agent_start_ticks if found.agent_pid is not None else None
            run.record = dataclasses.replace(record, job=dataclasses.replace(
                job, agent_pid=found.agent_pid, agent_start_ticks=agent_ticks))
        status = tracker.liveness.watch(run.run_id, run.identity, found.threads)
        threads = tracker.liveness.watched_threads(run.run_id)
        log.info("run %s: pid %d of PID namespace %s is pid %d here; watching its process pidfd%s",
                 run.run_id, record.pid, record.pidns, found.host_pid,
                 f" and {threads} thread pidfd(s) (the thread-pidfd path, for a containerised run)"
                 if threads else "")
        settle(tracker, run, status, now, found.at_startup)
    elif found.refused:
        # Names another user's process: ignored from now on, like an untrusted record.
        tracker.forget(run.run_id)
        tracker.retired.add(run.run_id)
    elif found.gone and tracker.reader.run_dir_present(run):
        # Seen from the host namespace every process is visible: not found is gone.
        settle(tracker, run, Status.DEAD, now, found.at_startup)
    elif found.gone:
        tracker.forget(run.run_id)  # archived or removed meanwhile
    else:
        make_unwatchable(tracker, run, now)


def make_unwatchable(tracker: Tracker, run: TrackedRun, now: float) -> None:
    """The run's process cannot be seen from here: only its heartbeat and final record count."""
    run.unwatchable = True
    log.warning("run %s: pid %d of PID namespace %s is not visible to this daemon (PID namespace %s); "
                "unwatchable: its end is judged by its final record or its heartbeat stopping "
                "(reported as lost). To watch it: %s", run.run_id, run.record.pid, run.record.pidns,
                tracker.resolver.own, UNWATCHABLE_FIX)
    tracker.unwatchable_changed()
    if run.state is RunState.STALLED:
        tracker.watcher.want_beats(run.run_id, True)
        tracker.check_recovery(run, now)
        if run.state is RunState.STALLED:
            tracker.check_silence(run, now)
    elif run.state is RunState.RUNNING:
        tracker.schedule_stall_check(run, stall_deadline(run.progress, run.record.started,
                                                        tracker.stall_timeout(run)))
    elif run.state.is_terminal:
        tracker.retire(run, now)
