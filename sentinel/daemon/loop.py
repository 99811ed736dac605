"""The daemon's main loop: wait on one epoll, then take small steps.

The epoll holds one pidfd per watched process, the kernel log and a wake-up
fd poked by the spool watcher and by a stop request. Each pass through the
loop reads the clock once and hands ``now`` to every step; decisions are
made by ``decide.transition`` and turned into alerts here, one per
transition, put in place in the outbox before anything is sent (and
fsynced while the first delivery attempt runs: see ``sentinel.outbox``).

No pass does work proportional to the number of runs: stall deadlines sit
in a heap, and the periodic full rescan is done a slice of runs per pass,
so an exit is never queued behind thousands of other runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import gc
import heapq
import logging
import os
import select
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Protocol

from sentinel import spool, systemd
from sentinel.alerts import Alert, AlertKind, from_run
from sentinel.config import Config
from sentinel.daemon import hygiene, liveness_file, nccl, reconcile, xid
from sentinel.daemon.decide import (
    Event,
    EventKind,
    RunState,
    alert_id,
    exit_event,
    is_stale,
    message_alert_id,
    stall_deadline,
    transition,
)
from sentinel.daemon.job_watch import JobWatch
from sentinel.daemon.liveness import POLL_INTERVAL, Liveness
from sentinel.daemon.oom import OomDetector
from sentinel.daemon.rescan import RescanSweep
from sentinel.daemon.runs import ProblemLog, RunReader, TrackedRun, is_shared_spool
from sentinel.daemon.watcher import Change, SpoolWatcher, Wakeup
from sentinel.delivery import is_inline
from sentinel.outbox import SyncThread
from sentinel.redact import redact
from sentinel.spool import FinalRecord

log = logging.getLogger("sentinel.daemon")

KILLED_DETAIL = "killed (SIGKILL or crash of the interpreter; no exit record)"
_MIN_STEP = 0.005  # never spin: a deadline "now" is re-checked a little later
# Runs re-read per loop pass during a rescan. Re-reading one costs ~12 µs
# (a few stats and failed opens), so a slice keeps a pass to ~2.5 ms, where a
# rescan of 10,000 runs done at once blocked the loop for ~145 ms.
RESCAN_SLICE = 200


class OutboxLike(Protocol):
    def enqueue(self, alert: Alert, channels: list[str], *, sync: bool = True) -> bool: ...
    def sync(self) -> None: ...
    def journal(self, run_id: str) -> list[Alert]: ...
    def forget_run(self, run_id: str) -> None: ...
    def prune_dead_letters(self, now: float, retention: float) -> int: ...


class InlineChannels(Protocol):
    def register_inline(self, options: dict) -> str: ...


class Daemon:
    """All of the daemon's state; ``step`` methods take ``now`` from the loop."""

    def __init__(
        self,
        config: Config,
        outbox: OutboxLike,
        inline_channels: Optional[InlineChannels] = None,
        wake_delivery: Callable[[], None] = lambda: None,
        *,
        use_pidfd: Optional[bool] = None,
        kmsg_path: str = "/dev/kmsg",
    ) -> None:
        self.config = config
        self.spool = Path(config.spool_path())
        self.state_path = Path(config.state_path())
        self.outbox = outbox
        self.inline_channels = inline_channels
        self.wake_delivery = wake_delivery
        self.syncer = SyncThread(outbox.sync)  # fsyncs new alerts off the loop, during delivery
        self.epoll = select.epoll()
        self.wakeup = Wakeup()
        self.epoll.register(self.wakeup.fd, select.EPOLLIN)
        self.liveness = Liveness(self.epoll, use_pidfd)
        self.oom = OomDetector(kmsg_path)
        if self.oom.fd is not None:
            self.epoll.register(self.oom.fd, select.EPOLLIN)
        self.gpu = xid.GpuFaults()  # jobs: Xid lines ride on the OOM detector's kernel log reader
        self.oom.listeners.append(self.gpu.feed)
        self.watcher = SpoolWatcher(self.spool, self.wakeup)
        self.problems = ProblemLog()
        self.reader = RunReader(self.spool, is_shared_spool(self.spool), self.problems)
        self.runs: dict[str, TrackedRun] = {}
        self.jobs = JobWatch(self)  # jobs: sibling ranks, held endings, one alert per job event
        self.retired: set[str] = set()  # ended runs whose directory could not be archived
        # (deadline, run id); an entry is current only while it equals the run's stall_check_at.
        self.stall_heap: list[tuple[float, str]] = []
        self.sweep: Optional[RescanSweep] = None  # the rescan under way, if any
        self.next_rescan = 0.0
        self.next_poll = 0.0
        self.next_watchdog: Optional[float] = None
        self.watchdog_period = systemd.watchdog_period()

    # ------------------------------------------------------------ lifecycle

    def start(self, now: float) -> None:
        """Watch first, then reconcile: a run created meanwhile is seen twice, never zero times."""
        if self.reader.shared:
            log.info("%s is a shared spool: runs are accepted only from their owners", self.spool)
        if not self.liveness.use_pidfd:
            log.warning("pidfd_open is not available: polling processes every %.1fs", POLL_INTERVAL)
        liveness_file.write(self.spool, now)
        self.watcher.start()
        reconcile.reconcile_all(self, now)
        freeze_long_lived()
        self.next_rescan = now + self.config.rescan_interval
        if self.watchdog_period:
            self.next_watchdog = now

    def close(self) -> None:
        if self.sweep is not None:
            self.sweep.close()
        self.watcher.stop()
        liveness_file.remove(self.spool)
        self.liveness.close()
        self.jobs.close()
        self.oom.close()
        self.wakeup.close()
        self.epoll.close()
        self.syncer.stop()
        gc.unfreeze()  # an embedding process gets its collector back as it was

    def timeout(self, now: float) -> float:
        """Seconds the loop may sleep before some step is due."""
        due = [now if self.sweep is not None else self.next_rescan]
        stall_check = self.next_stall_check()
        if stall_check is not None:
            due.append(stall_check)
        if self.liveness.polling or self.jobs.liveness.polling:
            due.append(self.next_poll)
        job_deadline = self.jobs.next_deadline()
        if job_deadline is not None:
            due.append(job_deadline)
        if self.next_watchdog is not None:
            due.append(self.next_watchdog)
        return max(_MIN_STEP, min(due) - now)

    def poll_once(self, clock: Callable[[], float], max_wait: Optional[float] = None) -> float:
        """Wait for something to do, do it; returns the ``now`` it used."""
        wait = self.timeout(clock())
        if max_wait is not None:
            wait = min(wait, max_wait)
        try:
            ready = self.epoll.poll(wait)
        except InterruptedError:
            ready = []
        now = clock()
        self.handle(ready, now)
        self.tick(now)
        return now

    # ------------------------------------------------------------ steps

    def handle(self, ready: Iterable[tuple[int, int]], now: float) -> None:
        fds = [fd for fd, _ in ready]
        # Kernel log first, so an OOM line is known before its victim's exit is judged.
        if self.oom.fd is not None and self.oom.fd in fds:
            self.oom.drain()
        self.attach_gpu_faults(now)
        if self.wakeup.fd in fds:
            self.wakeup.clear()
        # Spool changes (a final record among them) before exits: the process
        # that wrote final.json and exited is then judged by its own word.
        for event in self.watcher.drain():
            self._guard(event.run_id, self.on_spool_change, event.run_id, event.change, now)
        for fd in fds:
            if self.liveness.owns(fd):
                run_id = self.liveness.exited(fd)
                if run_id is not None:
                    self._guard(run_id, self.on_exit, run_id, now)
            elif self.jobs.owns(fd):  # jobs: a sibling rank (or a recorded rank's second pidfd)
                self._guard(f"rank fd {fd}", self.jobs.exited, fd, now)

    def tick(self, now: float) -> None:
        for run in self.due_stall_checks(now):
            # Checked again: a check made earlier in this loop may have moved it.
            if run.stall_check_at is not None and run.stall_check_at <= now:
                self._guard(run.run_id, self.check_stall, run, now)
        if (self.liveness.polling or self.jobs.liveness.polling) and now >= self.next_poll:
            for run_id in self.liveness.poll():
                self._guard(run_id, self.on_exit, run_id, now)
            self.jobs.poll(now)
            self.next_poll = now + POLL_INTERVAL
        self.attach_gpu_faults(now)  # jobs: Xids read while judging an exit
        self.jobs.tick(now)  # jobs: verdicts due
        if self.sweep is None and now >= self.next_rescan:
            self.start_rescan(now)
            self.next_rescan = now + self.config.rescan_interval
        if self.sweep is not None:
            self.continue_rescan(now)
        if self.next_watchdog is not None and now >= self.next_watchdog and self.watchdog_period:
            systemd.notify("WATCHDOG=1")
            self.next_watchdog = now + self.watchdog_period

    def _guard(self, run_id: str, step: Callable[..., Any], *args: Any) -> None:
        """One run's trouble is logged and retried at the next rescan; the loop goes on."""
        try:
            step(*args)
        except Exception:
            log.exception("handling run %s failed; it is re-read at the next rescan", run_id)
            self.forget(run_id)

    def forget(self, run_id: str) -> None:
        """Drop in-memory state; the next rescan re-admits the run from disk + journal."""
        self.runs.pop(run_id, None)
        self.liveness.unwatch(run_id)
        self.watcher.want_beats(run_id, False)

    # ------------------------------------------------------------ events

    def on_spool_change(self, run_id: str, change: Change, now: float) -> None:
        if run_id in self.retired:
            return
        run = self.runs.get(run_id)
        if run is None:
            reconcile.admit(self, run_id, now, at_startup=False)
            return
        if change is Change.MESSAGE:
            self.deliver_messages(run, now)
        elif change is Change.FINAL:
            self.check_final(run, now)
        elif change is Change.BEAT:
            self.check_recovery(run, now)

    def on_exit(self, run_id: str, now: float) -> None:
        run = self.runs.get(run_id)
        if run is None:
            return
        run.watched = False
        self.schedule_stall_check(run, None)
        self.judge_exit(run, now)
        if run.state.is_terminal:
            self.retire(run, now)

    def judge_exit(self, run: TrackedRun, now: float) -> None:
        """The process is gone: its final record if any, else killed (OOM if the kernel says)."""
        self.deliver_messages(run, now)
        if run.state.is_terminal:
            return
        final = self.reader.read_final(run)
        cause = None if final is not None else self.oom.cause(run.identity, run.cgroup)
        if self.jobs.holds_exit(run, final, cause, now):
            return  # jobs: a rank's end waits for its job's one alert
        event = exit_event(final, oom=cause is not None, at_startup=False)
        self.apply(run, event, now, final=final, detail=None if final else (cause or KILLED_DETAIL))

    def check_final(self, run: TrackedRun, now: float) -> None:
        self.deliver_messages(run, now)
        if run.state.is_terminal:
            return
        final = self.reader.read_final(run)
        if final is not None:
            if self.jobs.holds_final(run, final, now):
                return  # jobs: a rank's end waits for its job's one alert
            self.apply(run, Event.final(final.state), now, final=final)
            if not run.watched:
                self.retire(run, now)

    def check_stall(self, run: TrackedRun, now: float) -> None:
        """At a run's deadline: re-read its beat; stalled, or the next deadline."""
        self.schedule_stall_check(run, None)
        if run.state is not RunState.RUNNING or not run.watched:
            return
        peers = self.jobs.stall_peers(run)  # jobs: a job's recorded ranks stall as one
        if peers is not None:
            if peers:
                self.jobs.check_stall(run, peers, now)
            return
        run.progress = self.reader.read_progress(run)
        timeout = self.stall_timeout(run)
        if is_stale(run.progress, run.record.started, timeout, now):
            detail = self.stall_detail(run, timeout, now)
            self.apply(run, Event(EventKind.PROGRESS_STALE), now, detail=detail)
            if run.state is RunState.STALLED:
                self.watcher.want_beats(run.run_id, True)
                self.check_recovery(run, now)  # a beat may have landed meanwhile
        else:
            deadline = stall_deadline(run.progress, run.record.started, timeout)
            self.schedule_stall_check(run, max(deadline, now + _MIN_STEP))

    def check_recovery(self, run: TrackedRun, now: float) -> None:
        """A stalled run's beat changed: fresh again means recovered."""
        run = self.jobs.stall_speaker(run)  # jobs: a rank's beat may end its job's stall
        if run.state is not RunState.STALLED:
            return
        peers = self.jobs.stall_peers(run)
        if peers:
            self.jobs.check_recovery(run, peers, now)
            return
        run.progress = self.reader.read_progress(run)
        timeout = self.stall_timeout(run)
        if is_stale(run.progress, run.record.started, timeout, now):
            return
        self.apply(run, Event(EventKind.PROGRESS_FRESH), now, detail="heartbeats and progress resumed")
        if run.state is RunState.RUNNING:
            self.watcher.want_beats(run.run_id, False)
            deadline = stall_deadline(run.progress, run.record.started, timeout)
            self.schedule_stall_check(run, max(deadline, now + _MIN_STEP))

    def rescan(self, now: float) -> None:
        """The safety net under inotify, all at once: every run directory, every pending record."""
        self.start_rescan(now)
        while self.sweep is not None:
            self.continue_rescan(now, limit=sys.maxsize)

    def start_rescan(self, now: float) -> None:
        """Begin a rescan; ``continue_rescan`` lists and visits the runs a slice at a time."""
        liveness_file.write(self.spool, now)
        if self.sweep is not None:
            self.sweep.close()
        self.sweep = RescanSweep(self.spool)

    def continue_rescan(self, now: float, limit: int = RESCAN_SLICE) -> None:
        """Visit the next ``limit`` runs of the rescan under way; finish it when none are left."""
        sweep = self.sweep
        if sweep is None:
            return
        for run_id in sweep.next_slice(limit, lambda: list(self.runs)):
            run = self.runs.get(run_id)
            if run is not None:
                self._guard(run_id, self._rescan_run, run, now)
            elif run_id not in self.retired:  # new, or forgotten after trouble: (re-)admit
                self._guard(run_id, reconcile.admit, self, run_id, now, False)
        if not sweep.done:
            return
        self.sweep = None
        self.retired &= sweep.listed
        hygiene.prune_archive(self.state_path, self.config.retention, now, self.outbox.forget_run)
        if self.outbox.prune_dead_letters(now, self.config.dead_letter_retention):
            log.info("pruned dead letters older than the dead-letter retention period")
        freeze_long_lived()

    def _rescan_run(self, run: TrackedRun, now: float) -> None:
        if self.jobs.holds(run.run_id):
            return  # jobs: ended, its end held for the job's one alert
        self.jobs.revisit(run)  # jobs: ranks that started after the record
        if run.state.is_live and not run.watched:
            # A failed enqueue left the run live with no exit watch: judge again.
            self.forget(run.run_id)
            reconcile.admit(self, run.run_id, now, at_startup=False)
            return
        self.check_final(run, now)
        self.check_recovery(run, now)
        if run.state.is_terminal and not run.watched:
            self.retire(run, now)

    # ------------------------------------------------------------ effects

    def apply(self, run: TrackedRun, event: Event, now: float, *, final: Optional[FinalRecord] = None,
              detail: Optional[str] = None, overrides: Optional[dict[str, Any]] = None) -> None:
        """Make the transition and enqueue its one alert (durably) before the state moves.

        ``overrides``: alert fields a job's verdict sets (the failing rank's pid, error, ...).
        """
        new_state, kind = transition(run.state, event)
        if kind is None:
            run.state = new_state
            return
        number = run.transitions + 1
        progress = self.reader.read_progress(run)
        run.progress = progress
        if new_state.is_terminal and event.kind is not EventKind.JOB_ENDED:
            # jobs: what the GPU and NCCL said about this process belongs to its ending.
            notes = [self.gpu.note_for(run.identity), nccl.explain(final.error if final else None)]
            detail = "; ".join(n for n in [detail, *notes] if n) or None
        alert = from_run(alert_id(run.run_id, number, kind), kind, run.record, progress=progress,
                         final=final, now=now, detail=detail)
        if overrides:
            alert = dataclasses.replace(alert, **overrides)
        channels = run.channels if kind.value in self.config.alert_on and not event.is_quiet else []
        if final is not None and final.delivered_inline:
            # With no daemon alive, the process sent its ending to its inline channels itself.
            channels = [name for name in channels if not is_inline(name)]
        # If this raises (disk full), the state stays put and the next rescan decides again.
        self.outbox.enqueue(alert, channels, sync=False)
        old_state = run.state
        run.state, run.transitions = new_state, number
        self.wake_delivery()
        self.syncer.request()  # to disk while the first delivery attempt is under way
        log.info("run %s (pid %d): %s -> %s%s", run.run_id, run.record.pid, old_state.value,
                 new_state.value, f" ({detail})" if detail else "")

    def deliver_messages(self, run: TrackedRun, now: float) -> None:
        """Queue the run's messages in order; each file goes once its alert is on disk."""
        queued: list[Path] = []
        try:
            for seq, path, message in self.reader.pending_messages(run):
                if message is None:
                    continue  # malformed or foreign: logged once, left for the archive
                alert = from_run(message_alert_id(run.run_id, seq), AlertKind.MESSAGE, run.record,
                                 progress=run.progress, now=message.time, text=message.text)
                # False: already queued before a restart.
                self.outbox.enqueue(alert, run.channels, sync=False)
                queued.append(path)
        finally:
            if queued:
                self.wake_delivery()
                self.outbox.sync()
        for path in queued:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def retire(self, run: TrackedRun, now: float) -> None:
        """An ended run whose process is gone: archive it and stop tracking."""
        self.deliver_messages(run, now)
        self.forget(run.run_id)
        if hygiene.archive_run(run.paths.dir, self.state_path, now) is None and run.paths.dir.exists():
            self.retired.add(run.run_id)

    # ------------------------------------------------------------ helpers

    def list_run_ids(self) -> list[str]:
        return spool.list_run_ids(self.spool)

    def schedule_stall_check(self, run: TrackedRun, when: Optional[float]) -> None:
        """Re-read ``run``'s beat at ``when`` (None: no check pending)."""
        run.stall_check_at = when
        if when is None:
            return  # the heap entry, if any, is now stale and skipped when it surfaces
        heapq.heappush(self.stall_heap, (when, run.run_id))
        if len(self.stall_heap) > 2 * len(self.runs) + 64:
            # Stale entries of forgotten or rescheduled runs: rebuild from the runs.
            self.stall_heap = [(r.stall_check_at, r.run_id) for r in self.runs.values()
                               if r.stall_check_at is not None]
            heapq.heapify(self.stall_heap)

    def _current(self, entry: tuple[float, str]) -> Optional[TrackedRun]:
        run = self.runs.get(entry[1])
        return run if run is not None and run.stall_check_at == entry[0] else None

    def next_stall_check(self) -> Optional[float]:
        """The earliest pending stall check (stale heap entries are dropped on the way)."""
        heap = self.stall_heap
        while heap and self._current(heap[0]) is None:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def due_stall_checks(self, now: float) -> list[TrackedRun]:
        """Runs whose stall check is due by ``now``, earliest first; taken off the heap."""
        due: dict[str, TrackedRun] = {}  # a run scheduled twice for the same instant is checked once
        heap = self.stall_heap
        while heap and heap[0][0] <= now:
            run = self._current(heapq.heappop(heap))
            if run is not None:
                due.setdefault(run.run_id, run)
        return list(due.values())

    def stall_timeout(self, run: TrackedRun) -> float:
        return run.record.stall_timeout or self.config.stall_timeout

    def attach_gpu_faults(self, now: float) -> None:
        for hit in self.gpu.take_pending():
            self._guard(f"Xid {hit.code}", xid.attach, self, hit, now)

    @staticmethod
    def stall_detail(run: TrackedRun, timeout: float, now: float) -> str:
        progress = run.progress
        beat = progress.beat if progress is not None else run.record.started
        last = run.record.started
        if progress is not None and progress.last_progress is not None:
            last = progress.last_progress
        # Missing several heartbeats means the whole process stopped, not just training.
        if now - beat > 3 * run.record.heartbeat_interval:
            return (f"no heartbeat for {now - beat:.0f}s (stall timeout {timeout:.0f}s): "
                    "the process is frozen (stopped, swapping or stuck in the kernel)")
        return (f"no progress for {now - last:.0f}s (stall timeout {timeout:.0f}s) while the heartbeat "
                "goes on: training is stuck")

    def resolve_channels(self, run: TrackedRun) -> list[str]:
        """The run's channel names; unknown or invalid entries fall back to the defaults."""
        names: list[str] = []
        entries = run.record.channels or list(self.config.default_channels)
        for index, entry in enumerate(entries):
            name = None
            if isinstance(entry, str):
                if entry in self.config.channels:
                    name = entry
                else:
                    self.problems.report(run.paths.run,
                                         f"unknown channel {entry!r}; using the default channels")
            elif isinstance(entry, dict) and self.inline_channels is not None:
                try:
                    name = self.inline_channels.register_inline(entry)
                except Exception as exc:
                    self.problems.report(run.paths.run, f"invalid inline channel #{index + 1}: "
                                         f"{redact(exc, _string_values(entry))}; using the default channels")
            if name is None:
                names.extend(self.config.default_channels)
            else:
                names.append(name)
        return list(dict.fromkeys(names))  # order kept, duplicates dropped


def _string_values(options: dict) -> list[str]:
    return [v for v in options.values() if isinstance(v, str)]


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


def lock_state_dir(state_path: Path) -> Optional[int]:
    """One daemon per state directory: an flock held for the daemon's life."""
    fd = os.open(state_path / "daemon.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def serve(daemon: Daemon, stop: threading.Event, clock: Callable[[], float] = time.time) -> None:
    """Run ``daemon`` until ``stop`` is set."""
    # The stop event is set by a signal handler or another thread; this
    # waiter turns it into a wake-up of the epoll so shutdown is immediate.
    waiter = threading.Thread(target=lambda: (stop.wait(), daemon.wakeup.wake()),
                              name="sentinel-stop-waiter", daemon=True)
    waiter.start()
    while not stop.is_set():
        daemon.poll_once(clock)


def prepare_dirs(config: Config) -> None:
    spool_path = Path(config.spool_path())
    if not spool_path.exists():
        spool.make_private_dir(spool_path)
    spool.make_private_dir(Path(config.state_path()))
