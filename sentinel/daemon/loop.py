"""The daemon's main loop: wait on one epoll, then take small steps.

The epoll holds one pidfd per watched process, the kernel log and a wake-up
fd poked by the spool watcher and by a stop request. Each pass through the
loop reads the clock once and hands ``now`` to every step. What happened is
handed to the run tracker (``sentinel.daemon.tracking``), which judges the
run and queues its alerts; this module only waits, dispatches, paces the
rescan and pats the systemd watchdog.

No pass does work proportional to the number of runs: stall deadlines sit
in a heap, and the periodic full rescan is done a slice of runs per pass,
so an exit is never queued behind thousands of other runs. A restart too:
the start-up reconcile is such a rescan, its runs admitted each user in
turn while the loop already handles events (``admission.StartupBacklog``).
A pass handles the exits it woke for before it admits new runs, and its
admissions and rescan slice stop early once a watched process's pidfd is
readable (``exits_waiting``): on a loaded host a slice can take far longer
than its nominal few milliseconds, and another user's exit then waits for
the next pass only, not for the rest of the slice.
"""

from __future__ import annotations

import gc
import logging
import os
import select
import stat
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

from sentinel.common.latency_trace import TRACE
from sentinel.daemon import archive, reconcile, systemd
from sentinel.daemon.admission import AdmissionQueue, StartupBacklog
from sentinel.daemon.config import Config
from sentinel.daemon.failures import FailureLog
from sentinel.daemon.job_state import JobStateStore
from sentinel.daemon.liveness import POLL_INTERVAL, Liveness
from sentinel.daemon.oom import OomDetector
from sentinel.daemon.pidfd import ENV_DISABLE
from sentinel.daemon.rescan import RescanSweep
from sentinel.daemon.run_reader import ProblemLog, RunReader, TrackedRun, is_shared_spool
from sentinel.daemon.spool_watcher import Change, SpoolEvent, SpoolWatcher, Wakeup
from sentinel.daemon.tracking import MIN_STEP, InlineChannels, OutboxLike, Tracker
from sentinel.delivery import resend
from sentinel.formats import daemon_file, mutes, safe_json, spool_lock
from sentinel.formats.state_dir import StateDir
from sentinel.model.observer import FleetObserver

log = logging.getLogger("sentinel.daemon")

# Runs re-read per loop pass during a rescan. Re-reading one costs ~12 µs
# (a few stats and failed opens), so a slice keeps a pass to ~2.5 ms, where a
# rescan of 10,000 runs done at once blocked the loop for ~145 ms.
RESCAN_SLICE = 200
# New runs admitted per loop pass, taken from each user in turn (``admission``): a flood of
# one user's records is admitted over many passes, another user's run within a pass or two.
ADMIT_PER_PASS = 32
# The start-up listing: run directories listed per pass (a name and an lstat each, a few µs;
# admitting them is ADMIT_PER_PASS's job), so another user's run joins the queue within a few
# passes however many one user left behind; and the admissions made before READY.
STARTUP_LIST_SLICE = 2000
STARTUP_FIRST_ADMISSIONS = 4 * ADMIT_PER_PASS
# Runs a rescan visits between two looks for a waiting exit (``exits_waiting``: one
# epoll_wait, a few µs, against ~12 µs a run when the host is idle).
RESCAN_LOOK_EVERY = 8
# Runs whose descendants a rescan notes again (a few reads of /proc each, ~30 µs): with
# more runs tracked, each run's are noted every few rescans, in turn.
FAMILY_NOTES_PER_RESCAN = 2000
# Whether this daemon still holds the spool's lock is looked at when inotify saw
# the lock file change, and at least this often besides (events can be lost).
LOCK_LOOK_EVERY = 2.0


class Daemon:
    """The event loop's state; the runs themselves are in ``tracker``."""

    def __init__(
        self,
        config: Config,
        outbox: OutboxLike,
        inline_channels: Optional[InlineChannels] = None,
        wake_delivery: Callable[[], None] = lambda: None,
        *,
        use_pidfd: Optional[bool] = None,
        kmsg_path: str = "/dev/kmsg",
        observer: Optional[FleetObserver] = None,
        pidfd_room: Optional[int] = None,
        spool_lock_fd: Optional[int] = None,
    ) -> None:
        self.config = config
        # The spool's lock (``spool_lock``), checked on every pass: None, not checked.
        self.spool_lock_fd = spool_lock_fd
        self.lost_spool: Optional[str] = None  # why this daemon stopped watching: another took the spool
        self._status_sent = ""  # the last STATUS= line sent to systemd
        # Fleet hook (metrics, healthchecks.io): told of tracked runs, transitions and loop passes.
        self.observer = observer if observer is not None else FleetObserver()
        self.spool = Path(config.spool_path())
        self.state = StateDir(config.state_path())
        self.outbox = outbox
        self.epoll = select.epoll()
        self.wakeup = Wakeup()
        self.epoll.register(self.wakeup.fd, select.EPOLLIN)
        self.liveness = Liveness(self.epoll, use_pidfd)
        self.oom = OomDetector(kmsg_path)
        if self.oom.fd is not None:
            self.epoll.register(self.oom.fd, select.EPOLLIN)
        self.watcher = SpoolWatcher(self.spool, self.epoll)
        reader = RunReader(self.spool, is_shared_spool(self.spool), ProblemLog(),
                           config.budgets.refused_runs_remembered)
        self.failures = FailureLog(log)
        self.tracker = Tracker(config, reader, outbox, self.liveness, self.watcher, self.oom,
                               self.state.archive, inline_channels, wake_delivery, self.observer,
                               # jobs: sibling ranks have pidfds of their own in the same epoll
                               job_liveness=Liveness(self.epoll, self.liveness.use_pidfd, use_threads=False),
                               wake_loop=self.wakeup.wake, pidfd_room=pidfd_room)
        self.jobs = self.tracker.jobs
        self.pruner = archive.Pruner(self.state.archive, self.wakeup.wake)  # old archives, off the loop
        self.admissions = AdmissionQueue(self.spool)  # new runs, admitted per user in turn
        self.backlog: Optional[StartupBacklog] = None  # the start-up reconcile, while under way
        self.resends = resend.ResendDesk(self.spool, outbox, self.run_owner, wake_delivery)
        self.sweep: Optional[RescanSweep] = None  # the rescan under way, if any
        self.next_rescan = 0.0
        self.next_lock_look = 0.0
        self.next_poll = 0.0
        self.next_watchdog: Optional[float] = None
        self.watchdog_period = systemd.watchdog_period()

    # ------------------------------------------------------------ lifecycle

    def start(self, now: float) -> None:
        """Watch first, then reconcile: a run created meanwhile is seen twice, never zero times.

        Before READY only a bounded first slice: the restored jobs' recorded ranks (as many as
        the daemon tracked before, within the users' budgets) and ``STARTUP_FIRST_ADMISSIONS``
        runs of the first listed, users in turn; the rest of the spool on the next passes."""
        if self.tracker.reader.shared:
            log.info("%s is a shared spool: runs are accepted only from their owners", self.spool)
        if not self.liveness.use_pidfd:
            log.warning("pidfd_open is not available: polling processes every %.1fs", POLL_INTERVAL)
        elif self.liveness.use_threads:
            log.info("watching runs' sub-threads too (PIDFD_THREAD, PIDFD_GET_INFO)")
        else:
            log.info("watching process pidfds only (no PIDFD_THREAD + PIDFD_GET_INFO, or %s=0)",
                     ENV_DISABLE)
        self.write_daemon_file()
        if self.tracker.resolver.own and not self.tracker.resolver.sees_all:
            log.info("this daemon is not in the host's PID namespace: runs of other namespaces it "
                     "cannot see are shown as unwatchable and judged by their heartbeats")
        try:
            mutes.ensure_dir(self.spool)  # made by the daemon, so a user cannot plant their own
        except OSError as exc:
            log.warning("cannot make %s (%s): mutes are ignored", mutes.mutes_dir(self.spool), exc)
        try:
            resend.ensure_dir(self.spool)
        except OSError as exc:
            log.warning("cannot make %s (%s): resend requests are ignored",
                        resend.resend_dir(self.spool), exc)
        self.watcher.start()
        # jobs: the state saved before a restart first, so the runs reconciled find their jobs
        self.jobs.keep_state(JobStateStore(self.state.jobs), now)
        # jobs: a restored job's recorded ranks first, so that judge_restored finds them admitted
        for run_id in list(self.jobs.by_run):
            if run_id not in self.tracker.runs:
                self._guard(run_id, reconcile.admit, self.tracker, run_id, now, True)
        self.tracker.act(self.jobs.judge_restored(now), now)
        self.backlog = StartupBacklog()
        self.sweep = RescanSweep(self.spool)  # the start-up listing: the first rescan
        self.continue_rescan(now, STARTUP_LIST_SLICE)
        self.admit_queued(now, STARTUP_FIRST_ADMISSIONS)
        self.check_backlog()
        if self.sweep is not None:
            freeze_long_lived()  # (a listing already ended froze at its end)
        self.next_rescan = now + self.config.rescan_interval
        if self.watchdog_period:
            self.next_watchdog = now

    def close(self) -> None:
        # Runs that ended on the last pass are archived before stopping (delivery is
        # woken before the loop's bookkeeping, so their alerts may already be out).
        now = time.time()
        for run_id in self.tracker.take_retiring():
            self._guard(run_id, self.tracker.retire_if_ended, run_id, now)
        if self.sweep is not None:
            self.sweep.close()
        self.pruner.close()
        self.watcher.stop()
        daemon_file.remove(self.spool)
        self.liveness.close()
        self.oom.close()
        self.wakeup.close()
        self.epoll.close()
        self.tracker.close()
        gc.unfreeze()  # an embedding process gets its collector back as it was

    def timeout(self, now: float) -> float:
        """Seconds the loop may sleep before some step is due."""
        busy = self.sweep is not None or self.tracker.retiring or len(self.admissions) > 0
        due = [now if busy else self.next_rescan]
        stall_check = self.tracker.next_stall_check()
        if stall_check is not None:
            due.append(stall_check)
        if self.liveness.polling or self.jobs.liveness.polling:
            due.append(self.next_poll)
        job_deadline = self.jobs.next_deadline()
        if job_deadline is not None:
            due.append(job_deadline)
        if self.next_watchdog is not None:
            due.append(self.next_watchdog)
        return max(MIN_STEP, min(due) - now)

    def report_status(self) -> None:
        """``systemctl status sentinel`` shows this line (sd_notify STATUS=), sent when it changes."""
        text = (f"watching {len(self.tracker.runs)} run(s); "
                f"{self.tracker.outbox.pending_count()} alert(s) pending delivery")
        if text != self._status_sent:
            self._status_sent = text
            systemd.notify(f"STATUS={text}")

    def poll_once(self, clock: Callable[[], float], max_wait: Optional[float] = None) -> float:
        """Wait for something to do, do it; returns the ``now`` it used."""
        wait = self.timeout(clock())
        if max_wait is not None:
            wait = min(wait, max_wait)
        # Ended on an earlier pass: archived now, while this pass's wait let their alerts go out first.
        retiring = self.tracker.take_retiring()
        try:
            ready = self.epoll.poll(wait)
        except InterruptedError:
            ready = []
        TRACE.woke()  # the benchmark's breakdown of an alert's way starts here
        now = clock()
        # Read only when epoll says so (level-triggered: what a pass leaves unread wakes the next):
        # a read that finds nothing costs a kill alert a syscall and an exception, first thing.
        watcher_fd = self.watcher.fd
        changed = watcher_fd is not None and any(fd == watcher_fd for fd, _ in ready)
        spool_events = self.watcher.drain() if changed else []
        look = self.watcher.take_lock_touched() or now >= self.next_lock_look
        if self.spool_lock_fd is not None and look:
            # Before anything of this pass is decided: the daemon that took the spool alerts it.
            # Looked at when inotify saw the lock file change (and every LOCK_LOOK_EVERY besides):
            # two syscalls on every pass cost a kill alert 0.1-0.2 ms, first thing after a wait.
            self.next_lock_look = now + LOCK_LOOK_EVERY
            if not spool_lock.still_held(self.spool, self.spool_lock_fd):
                self.lost_spool = (f"another daemon took over {self.spool} (its lock "
                                   f"{self.spool / spool_lock.LOCK_FILE} is no longer this daemon's)")
                return now
        self.handle(ready, now, spool_events)
        for run_id in retiring:
            self._guard(run_id, self.tracker.retire_if_ended, run_id, now)
        self.tick(now)
        return now

    # ------------------------------------------------------------ steps

    def handle(self, ready: Iterable[tuple[int, int]], now: float,
               spool_events: Optional[list[SpoolEvent]] = None) -> None:
        """One pass's events; ``spool_events``: the spool watcher's, drained already."""
        fds = [fd for fd, _ in ready]
        self.oom.new_pass()
        # Kernel log first, so an OOM line is known before its victim's exit is judged.
        if self.oom.fd is not None and self.oom.fd in fds:
            self.oom.drain()
        self._guard("GPU faults", self.tracker.attach_gpu_faults, now)  # jobs: Xid lines just read
        if self.wakeup.fd in fds:
            self.wakeup.clear()
        # Runs of other PID namespaces found (or not) by the resolver's thread.
        for found in self.tracker.resolver.take():
            self._guard(found.run_id, reconcile.on_resolved, self.tracker, found, now)
        # jobs: sibling ranks found by the rank finder's thread
        self._guard("job ranks", self.jobs.found, now)
        for run_id in self.pruner.take():  # archived runs the pruning thread deleted
            if run_id not in self.tracker.runs:  # a run of that name back in the spool keeps its journal
                self._guard(run_id, self.outbox.forget_run, run_id)
        if self.tracker.take_unwatchable_changed():
            self.write_daemon_file()
        # Spool changes (a final record among them) before exits: the process
        # that wrote final.json and exited is then judged by its own word.
        for event in self.watcher.drain() if spool_events is None else spool_events:
            self._guard(event.run_id, self.on_spool_change, event.run_id, event.change, now)
        for fd in fds:
            if self.liveness.owns(fd):
                ended = self.liveness.exit_of(fd)
                if ended is not None:
                    self._guard(ended.key, self.tracker.on_exit, ended.key, now, ended.status)
            elif self.jobs.owns(fd):  # jobs: a sibling rank (or a recorded rank's second pidfd)
                self._guard(f"rank fd {fd}", self.jobs.exited, fd, now)
        # New runs after the exits: a flood of one user's new records (a millisecond or
        # more each to admit) never stands between another user's exit and its alert.
        self.admit_queued(now)

    def tick(self, now: float) -> None:
        for run in self.tracker.due_stall_checks(now):
            # Checked again: a check made earlier in this loop may have moved it.
            if run.stall_check_at is not None and run.stall_check_at <= now:
                self._guard(run.run_id, self.tracker.check_stall, run, now)
        if (self.liveness.polling or self.jobs.liveness.polling) and now >= self.next_poll:
            for run_id in self.liveness.poll():
                self._guard(run_id, self.tracker.on_exit, run_id, now)
            self.jobs.poll(now)
            self.next_poll = now + POLL_INTERVAL
        # jobs: Xids read while judging an exit, then the job verdicts due
        self._guard("GPU faults", self.tracker.attach_gpu_faults, now)
        self._guard("jobs", self.tracker.job_verdicts, now)
        if self.sweep is None and now >= self.next_rescan:
            self.start_rescan(now)
            self.next_rescan = now + self.config.rescan_interval
        if self.sweep is not None:
            self.continue_rescan(now, STARTUP_LIST_SLICE if self.backlog is not None else RESCAN_SLICE)
        self.check_backlog()
        self.outbox.write_admitted()  # records a full disk held back (none: one lock taken)
        self.resends.poll()  # one lstat unless a request came
        if self.next_watchdog is not None and now >= self.next_watchdog and self.watchdog_period:
            systemd.notify("WATCHDOG=1")
            self.next_watchdog = now + self.watchdog_period
        self.observer.loop_pass(now)  # fleet hook

    def run_owner(self, run_id: str) -> Optional[int]:
        """The uid that owns run ``run_id``: tracked, archived or left in the spool (None: unknown)."""
        run = self.tracker.runs.get(run_id)
        if run is not None:
            return run.owner_uid
        if not run_id or "/" in run_id or run_id.startswith("."):
            return None
        for parent in (self.state.archive, self.spool):
            try:
                st = os.lstat(parent / run_id)  # a directory's owner is whoever made it: not forgeable
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode):
                return st.st_uid
        return None

    def _guard(self, run_id: str, step: Callable[..., Any], *args: Any) -> None:
        """One run's trouble is logged and retried at the next rescan; the loop goes on."""
        try:
            step(*args)
        except Exception as exc:
            self.failures.report(run_id, exc, f"handling run {run_id} failed")
            self.tracker.forget(run_id)

    # ------------------------------------------------------------ events

    def on_spool_change(self, run_id: str, change: Change, now: float) -> None:
        tracker = self.tracker
        if run_id in tracker.retired:
            return
        run = tracker.runs.get(run_id)
        if run is None:
            if tracker.budgets.is_deferred(run_id):
                return  # over its user's budget: the rescan admits it once there is room
            self.admissions.add(run_id)  # admitted by ``admit_queued``, each user in turn
            return
        if change is Change.MESSAGE:
            tracker.deliver_messages(run, now)
        elif change is Change.FINAL:
            tracker.check_final(run, now)
        elif change is Change.BEAT:
            tracker.check_recovery(run, now)
        elif change is Change.RUN:
            tracker.refresh_record(run)

    def admit_queued(self, now: float, limit: int = ADMIT_PER_PASS, *, yielding: bool = True) -> None:
        """Admit up to ``limit`` queued new runs, one user after another; ``yielding``:
        stop early, after one at least, once an exit waits (``exits_waiting``)."""
        tracker = self.tracker
        backlog = self.backlog
        for _ in range(limit):
            taken = self.admissions.take(1)
            if not taken:
                return
            run_id = taken[0]
            at_startup = backlog is not None and backlog.claim(run_id)
            if run_id not in tracker.runs and run_id not in tracker.retired:
                self._guard(run_id, reconcile.admit, tracker, run_id, now, at_startup)
            if yielding and self.exits_waiting():
                return

    def exits_waiting(self) -> bool:
        """True if a watched process's pidfd is readable: the pass's batch work
        (admissions, a rescan slice) then gives way to the next pass, which
        handles that exit first. One epoll_wait that does not block; the
        epoll is level-triggered, so the next pass sees the same events."""
        try:
            ready = self.epoll.poll(0)
        except InterruptedError:
            return False
        return any(self.liveness.owns(fd) or self.jobs.owns(fd) for fd, _ in ready)

    def check_backlog(self) -> None:
        """Say once when the start-up reconcile has taken every run it found."""
        backlog = self.backlog
        if backlog is None or not backlog.done:
            return
        self.backlog = None
        runs = self.tracker.runs.values()
        log.info("start-up: every run in the spool reconciled (%d found); "
                 "%d run(s) tracked, %d being watched", backlog.found, len(runs),
                 sum(1 for r in runs if r.watched))
        freeze_long_lived()  # the backlog's run state: long-lived, out of later collections

    def rescan(self, now: float) -> None:
        """The safety net under inotify, all at once: every run directory, every pending record."""
        self.start_rescan(now)
        while self.sweep is not None:
            self.continue_rescan(now, limit=sys.maxsize, yielding=False)
        self.admit_queued(now, limit=sys.maxsize, yielding=False)
        self.check_backlog()

    def write_daemon_file(self) -> None:
        """``daemon.json``: who watches, how often it is rewritten, which runs it cannot see."""
        unwatchable = [r.run_id for r in self.tracker.runs.values() if r.unwatchable and r.state.is_live]
        daemon_file.write(self.spool, self.config.rescan_interval, unwatchable, list(self.config.channels))

    def start_rescan(self, now: float) -> None:
        """Begin a rescan; ``continue_rescan`` lists and visits the runs a slice at a time."""
        self.write_daemon_file()
        self.resends.look_again()
        if self.sweep is not None:
            self.sweep.close()
        self.sweep = RescanSweep(self.spool)
        self.sweep.events_missed = self.watcher.take_missed()
        self.sweep.family_notes_left = FAMILY_NOTES_PER_RESCAN

    def continue_rescan(self, now: float, limit: int = RESCAN_SLICE, *, yielding: bool = True) -> None:
        """Visit the next ``limit`` runs of the rescan under way (tracked ones re-read, new ones
        queued for admission); finish it when none are left. ``yielding``: stop early, after
        ``RESCAN_LOOK_EVERY`` runs at least, once an exit waits (``exits_waiting``)."""
        sweep = self.sweep
        if sweep is None:
            return
        tracker = self.tracker
        visited = 0
        while visited < limit and not sweep.done:
            part = sweep.next_slice(min(RESCAN_LOOK_EVERY, limit - visited), lambda: list(tracker.runs))
            visited += len(part)
            for run_id in part:
                run = tracker.runs.get(run_id)
                if run is not None:
                    self._guard(run_id, self._rescan_run, run, now)
                elif run_id not in tracker.retired:  # new, or forgotten after trouble: (re-)admit
                    # in its user's turn: a run inotify missed is not admitted in listing order
                    # behind one user's thousands
                    if self.backlog is not None and not self.backlog.listed:
                        self.backlog.add(run_id)
                    self.admissions.add(run_id)
            if not part or (yielding and self.exits_waiting()):
                break
        if not sweep.done:
            return
        self.sweep = None
        if self.backlog is not None:
            self.backlog.listed = True
        tracker.keep_retired(sweep.listed)
        self.pruner.request(self.config.retention, now)  # on its own thread: the loop goes on
        if self.outbox.prune_dead_letters(now, self.config.dead_letter_retention):
            log.info("pruned dead letters older than the dead-letter retention period")
        freeze_long_lived()

    def _rescan_run(self, run: TrackedRun, now: float) -> None:
        watcher, sweep = self.watcher, self.sweep
        watched = watcher.watched(run.run_id)
        if not watched and watcher.room_for(run.owner_uid):  # not watched before (the inotify limit)
            watcher.watch_run(run.run_id)
        tracker = self.tracker
        if self.jobs.holds(run.run_id):
            return  # jobs: ended, its end held for the job's one alert
        self.jobs.revisit(run)  # jobs: ranks that started after the record
        if run.state.is_live and not run.watched and not run.resolving and not run.unwatchable:
            # A failed enqueue left the run live with no exit watch: judge again.
            tracker.forget(run.run_id)
            reconcile.admit(tracker, run.run_id, now, at_startup=False)
            return
        # A watched directory's final record and messages came as events, unless some were lost:
        # read again only then, and the runs inotify could not watch (at most a stat-like look each).
        again = run.run_id in tracker.read_again
        tracker.read_again.discard(run.run_id)
        if again or (sweep is not None and sweep.events_missed):
            tracker.check_final(run, now, rescan=True)
        elif not watched:
            tracker.look_unwatched(run, now)
        tracker.check_recovery(run, now)
        if run.state.is_live and now >= run.family_due and sweep is not None and sweep.family_notes_left > 0:
            # Up to FAMILY_NOTES_PER_RESCAN runs a rescan; with more, each run every few rescans, in turn.
            sweep.family_notes_left -= 1
            tracker.note_descendants(run)
            rounds = -(-len(tracker.runs) // FAMILY_NOTES_PER_RESCAN)
            run.family_due = now + (rounds - 0.5) * self.config.rescan_interval
        if run.state.is_terminal and not run.watched:
            tracker.retire(run, now)


def freeze_long_lived() -> None:
    """Collect once, then exempt everything alive from later collections.

    With 10,000 runs the daemon holds ~240,000 tracked objects; a full
    (generation 2) collection walks them all and stopped the loop for
    ~160 ms (measured), delaying any exit that came meanwhile. After the
    start-up reconcile and after each rescan almost everything alive is
    long-lived run state, so it is frozen and collections only walk what was
    made since. Cost: an object frozen while alive that later becomes
    garbage inside a reference cycle is not reclaimed until ``close``
    unfreezes; a tracked run is plain acyclic data (records, paths, lists of
    names), freed by reference counting when the run is forgotten.
    """
    gc.collect()
    gc.freeze()


# ---------------------------------------------------------------- the entry point


def serve(daemon: Daemon, stop: threading.Event, clock: Callable[[], float] = time.time, *,
          reload: Optional[threading.Event] = None, on_reload: Callable[[], None] = lambda: None) -> None:
    """Run ``daemon`` until ``stop`` is set (or another daemon takes its spool:
    ``daemon.lost_spool``); ``on_reload`` whenever ``reload`` is."""
    # The stop event is set by a signal handler or another thread; this
    # waiter turns it into a wake-up of the epoll so shutdown is immediate.
    def wake_on_stop() -> None:
        stop.wait()
        daemon.wakeup.wake()

    waiter = threading.Thread(target=wake_on_stop, name="sentinel-stop-waiter", daemon=True)
    waiter.start()
    while not stop.is_set() and daemon.lost_spool is None:
        daemon.poll_once(clock)
        if reload is not None and reload.is_set():
            reload.clear()
            on_reload()
        daemon.report_status()


def prepare_spool(spool_path: Path) -> None:
    """A missing spool is made private (a shared one is made by its installer)."""
    if not spool_path.exists():
        safe_json.make_private_dir(spool_path)
