"""The daemon's book of runs: what it knows of each run and what it does about it.

The ``Tracker`` holds every tracked run, the ended runs whose directory
could not be archived and the heap of stall deadlines. Its steps take a run
and ``now`` from the loop (``sentinel.daemon.loop``), which owns the waiting
and hands events over. Decisions are made by ``decide.transition`` and
turned into alerts here, one per transition, put in place in the outbox
before the run's state moves (and fsynced while the first delivery attempt
runs: see ``sentinel.delivery.outbox``).
"""

from __future__ import annotations

import dataclasses
import heapq
import logging
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Protocol

from sentinel.channels import routing
from sentinel.common.latency_trace import TRACE
from sentinel.common.safetext import printable
from sentinel.daemon import archive, nccl, run_snapshot, survivors
from sentinel.daemon.budgets import UserBudgets
from sentinel.daemon.channel_access import ChannelAccess
from sentinel.daemon.config import Config
from sentinel.daemon.docker_events import DockerEvents
from sentinel.daemon.job_watch import (
    CheckStallAt,
    Decision,
    JobWatch,
    Peers,
    RetireIfEnded,
    Say,
    WatchStalledJob,
)
from sentinel.daemon.liveness import Liveness
from sentinel.daemon.message_limits import MessageGate
from sentinel.daemon.native_faults import NativeFaults, with_library
from sentinel.daemon.ns_watch import Resolver
from sentinel.daemon.oom import OomDetector
from sentinel.daemon.run_reader import RunReader, TrackedRun
from sentinel.daemon.run_snapshot import RunSnapshot
from sentinel.daemon.spool_watcher import SpoolWatcher
from sentinel.daemon.stacks import FATAL_SIGNALS, STACK_WAIT, StackDesk
from sentinel.daemon.tree_stacks import TreeStacks
from sentinel.daemon.xid import GpuFaults, XidHit
from sentinel.delivery.outbox import SyncThread
from sentinel.formats import mutes
from sentinel.formats.spool import FinalRecord
from sentinel.host.containers import ContainerIdentity
from sentinel.model.alerts import Alert, AlertKind, from_run
from sentinel.model.endings import Reason
from sentinel.model.observer import FleetObserver
from sentinel.model.run_states import (
    Event,
    EventKind,
    RunState,
    alert_id,
    exit_event,
    is_stale,
    message_alert_id,
    stall_deadline,
    stall_reason,
    transition,
)

log = logging.getLogger("sentinel.daemon")

KILLED = Reason("no_exit_record")
# No process of the record was ever seen: what ended, and how, is unknown ("Killed" would be a guess).
NEVER_SEEN = Reason("never_seen_alive")
# The run directory is gone (or another took its place): no final record can be read.
RECORD_DELETED = Reason("record_deleted")
RECORD_DELETED_EXIT_KNOWN = Reason("record_deleted_exit_known")
MIN_STEP = 0.005  # never spin: a deadline "now" is re-checked a little later


class OutboxLike(Protocol):
    def enqueue(self, alert: Alert, channels: list[str], *, sync: bool = True) -> bool: ...
    def admit(self, alert: Alert, channels: list[str]) -> bool: ...
    def write_admitted(self) -> bool: ...
    def unwritten(self, run_id: str) -> bool: ...
    def prepare_run(self, run_id: str) -> None: ...
    def known(self, alert_id: str) -> bool: ...
    def open_messages(self, user: str) -> int: ...
    def sync(self) -> None: ...
    def journal(self, run_id: str) -> list[Alert]: ...
    def forget_run(self, run_id: str) -> None: ...
    def prune_dead_letters(self, now: float, retention: float) -> int: ...
    def pending_count(self) -> int: ...
    def run_of(self, alert_id: str) -> Optional[str]: ...
    def resend(self, alert_id: str) -> list[str]: ...


class InlineChannels(Protocol):
    def register_inline(self, options: Mapping[str, Any]) -> str: ...


class Tracker:
    """Every tracked run; each step takes ``now`` from the loop."""

    def __init__(
        self,
        config: Config,
        reader: RunReader,
        outbox: OutboxLike,
        liveness: Liveness,
        watcher: SpoolWatcher,
        oom: OomDetector,
        archive_dir: Path,
        inline_channels: Optional[InlineChannels] = None,
        wake_delivery: Callable[[], None] = lambda: None,
        observer: Optional[FleetObserver] = None,
        *,
        job_liveness: Liveness,
        wake_loop: Callable[[], None] = lambda: None,
        pidfd_room: Optional[int] = None,
    ) -> None:
        self._config = config
        # Fleet hook (metrics, healthchecks.io): told of tracked runs and transitions.
        self.observer = observer if observer is not None else FleetObserver()
        self.reader = reader
        self.outbox = outbox
        self.liveness = liveness
        self.watcher = watcher
        self.oom = oom
        self.archive_dir = archive_dir
        self._register_inline = inline_channels.register_inline if inline_channels is not None else None
        self.access = ChannelAccess(config, reader.shared, self._register_inline)
        self.messages = MessageGate(config.message_limits, outbox.open_messages)
        # per uid in a shared spool: runs, pidfds, state alerts
        self.budgets = UserBudgets(config.budgets, pidfd_room, per_user=reader.shared)
        self.wake_delivery = wake_delivery
        self.syncer = SyncThread(outbox.sync)  # fsyncs new alerts off the loop, during delivery
        self.mute_book = mutes.MuteBook(reader.spool)
        self.runs: dict[str, TrackedRun] = {}
        self.retired: set[str] = set()  # ended runs whose directory could not be archived
        # (deadline, run id); an entry is current only while it equals the run's stall_check_at.
        self.stall_heap: list[tuple[float, str]] = []
        self.gpu = GpuFaults()  # jobs: Xid lines ride on the OOM detector's kernel log reader
        oom.listeners.append(self.gpu.feed)
        self.native = NativeFaults()  # evidence: the library a fatal signal hit, from the kernel log
        oom.listeners.append(self.native.feed)
        # jobs: sibling ranks (their own pidfds), held endings, one alert per job event
        # (told of run events; what it decides comes back as ``Decision``s: ``act``)
        self.jobs = JobWatch(self.runs, reader, self.budgets, oom, self.gpu, job_liveness, wake_loop,
                             config.stall_timeout)
        # Runs of other PID namespaces (containers) are found on a worker thread.
        self.resolver = Resolver(wake_loop)
        # Docker's events (when its socket is here): names `docker stop` among SIGKILLs.
        self.docker = DockerEvents()
        self._unwatchable_changed = False  # daemon.json's list of unwatchable runs is to be rewritten
        self.stacks = StackDesk(reader)  # evidence: stacks asked of stalled runs
        self.trees = TreeStacks(reader)  # evidence: a `sentinel run` command's, by py-spy
        # Ended runs to archive on the loop's next pass (``retire_soon``), in order.
        self.retiring: dict[str, None] = {}
        # Runs whose final record or messages a failure left half handled (a full disk): the
        # next rescan reads them again, also where inotify watches them (otherwise it does not).
        self.read_again: set[str] = set()

    @property
    def config(self) -> Config:
        return self._config

    @config.setter
    def config(self, config: Config) -> None:
        """A reloaded config: the access rules and message limits come from it
        too; the messages already counted in the last minute still count."""
        self._config = config
        self.access = ChannelAccess(config, self.reader.shared, self._register_inline)
        self.messages.limits = config.message_limits
        self.budgets.limits = config.budgets
        self.jobs.stall_timeout = config.stall_timeout

    def close(self) -> None:
        self.docker.close()
        self.resolver.close()
        self.jobs.close()
        self.syncer.stop()

    def unwatchable_changed(self) -> None:
        self._unwatchable_changed = True

    def take_unwatchable_changed(self) -> bool:
        changed, self._unwatchable_changed = self._unwatchable_changed, False
        return changed

    def forget(self, run_id: str) -> None:
        """Drop in-memory state; the next rescan re-admits the run from disk + journal."""
        self.runs.pop(run_id, None)
        self.read_again.discard(run_id)
        self.budgets.release(run_id)
        self.stacks.forget(run_id)
        self.trees.forget(run_id)
        self.liveness.unwatch(run_id)
        self.watcher.forget(run_id)
        self.observer.run_forgotten(run_id)  # fleet hook

    def keep_retired(self, listed: set[str]) -> None:
        """Stop remembering retired runs whose directory is gone from the spool."""
        self.retired &= listed

    # ------------------------------------------------------------ events

    def on_exit(self, run_id: str, now: float, status: Optional[int] = None) -> None:
        """The process is gone; ``status`` is its wait status if the kernel told."""
        run = self.runs.get(run_id)
        if run is None:
            return
        run.watched = False
        self.budgets.watch_closed(run_id)
        self.schedule_stall_check(run, None)
        self.judge_exit(run, now, status)
        if run.state.is_terminal:
            self.retire_soon(run)

    def judge_exit(self, run: TrackedRun, now: float, status: Optional[int] = None,
                   seen_alive: bool = True) -> None:
        """The process is gone: its final record if any, else killed (OOM if the
        kernel says), named by the kernel's ``status`` where it is known.
        ``seen_alive`` False: the daemon never saw the process (its record came
        after it, or named no live process), so a kill is not claimed.
        The run's files are read once (``run_snapshot``) for all of it."""
        with run_snapshot.take(self.reader, run) as snapshot:
            self._judge_exit(run, snapshot, now, status, seen_alive)

    def _judge_exit(self, run: TrackedRun, snapshot: RunSnapshot, now: float, status: Optional[int],
                    seen_alive: bool) -> None:
        self.deliver_messages(run, now, snapshot)
        if run.state.is_terminal:
            return
        final = snapshot.final
        cause = None if final is not None else self.oom.evidence(run.identity, run.cgroup)
        if cause is None and final is None and run.container is not None and status is not None:
            # docker stop: the kernel says SIGKILL, Docker's events say a SIGTERM came first.
            cause = self.docker.stop_reason(run.container.container_id, run.record.started,
                                            os.WTERMSIG(status) if os.WIFSIGNALED(status) else None, now)
        held = self.jobs.holds_exit(run, final, cause, status, now)
        if held is not None:
            self.act(held, now)  # jobs: a rank's end waits for its job's one alert
            return
        if final is not None:
            self.apply(run, exit_event(final, oom=False, at_startup=False), now, final=final,
                       snapshot=snapshot)
            return
        if cause is None and not snapshot.present:
            cause = RECORD_DELETED if status is None else RECORD_DELETED_EXIT_KNOWN
        event = exit_event(None, oom=cause is not None and cause.is_oom, at_startup=False)
        # The kernel's status names the ending itself; without it, the generic kill reason.
        reason = cause or (None if status is not None else KILLED if seen_alive else NEVER_SEEN)
        self.apply(run, event, now, reason=reason, kernel_status=status, snapshot=snapshot)

    def check_final(self, run: TrackedRun, now: float, *, rescan: bool = False) -> None:
        """A final record or messages may have come (``rescan``: the periodic
        look, which reads progress only if there is a final record)."""
        try:
            self._check_final(run, now, rescan)
        except BaseException:
            self.read_again.add(run.run_id)
            raise

    def look_unwatched(self, run: TrackedRun, now: float) -> None:
        """A rescan's look at a run inotify does not watch: read in full
        (``check_final``) only if a final record is there, its directory is
        not the admitted one any more, or its messages changed since the last
        full read. A few stats, where a full read opens and reads its files."""
        must, stamp = self.reader.look(run, now)
        if must or (stamp is not None and stamp != run.messages_stamp):
            self.check_final(run, now, rescan=True)
            run.messages_stamp = stamp

    def _check_final(self, run: TrackedRun, now: float, rescan: bool) -> None:
        with run_snapshot.take(self.reader, run, progress_unless_final=not rescan) as snapshot:
            self.deliver_messages(run, now, snapshot)
            if run.state.is_terminal:
                return
            final = snapshot.final
            if final is not None:
                held = self.jobs.holds_final(run, final, now)
                if held is not None:
                    self.act(held, now)  # jobs: a rank's end waits for its job's one alert
                    return
                self.apply(run, Event.final(final.state), now, final=final, snapshot=snapshot)
                if not run.watched:
                    self.retire_soon(run)

    def check_stall(self, run: TrackedRun, now: float) -> None:
        """At a run's deadline: re-read its beat; stalled, or the next deadline."""
        self.schedule_stall_check(run, None)
        if run.unwatchable and run.state is RunState.STALLED:
            self.check_silence(run, now)
            return
        if run.state is not RunState.RUNNING or not (run.watched or run.unwatchable):
            return
        peers = self.jobs.stall_peers(run)  # jobs: a job's recorded ranks stall as one
        if peers is not None:
            if peers:
                self.act(self.jobs.check_stall(run, peers, now), now)
                if run.state is RunState.STALLED:
                    self.job_stalled(run, peers, now)
            return
        run.progress = self.reader.read_progress(run)
        timeout = self.stall_timeout(run)
        if is_stale(run.progress, run.record.started, timeout, now):
            # evidence: a job's ranks' stacks, grouped; else the run's own
            gathered = self.jobs.job_stacks(run, now)
            if gathered is None:
                self.schedule_stall_check(run, now + STACK_WAIT)  # asked the job's ranks: back for answers
                return
            if not gathered:
                gathered = self.trees.poll(run, now)  # `sentinel run`: its command's processes
                if gathered is None:
                    self.schedule_stall_check(run, now + STACK_WAIT)
                    return
            if not gathered and self.stacks.request(run, now):  # the stacks come with the alert
                self.schedule_stall_check(run, now + STACK_WAIT)
                return
            reason = self.stall_reason(run, timeout, now)
            run.frozen = reason.code == "frozen"
            if run.frozen and run.unwatchable:
                # ns_watch: no pidfd can tell dead from frozen; silence is all there is.
                self.apply(run, Event(EventKind.HEARTBEAT_LOST), now,
                           reason=Reason("unwatchable_silent", dict(reason.args)))
                self.retire_soon(run)
                return
            self.apply(run, Event(EventKind.PROGRESS_STALE), now, reason=reason,
                       overrides=gathered or self.stacks.collect(run))
            if run.state is RunState.STALLED:
                self.watcher.want_beats(run.run_id, True)
                self.check_recovery(run, now)  # a beat may have landed meanwhile
                if run.unwatchable and run.state is RunState.STALLED:
                    self.check_silence(run, now)  # its heartbeat is all that can say it died
        else:
            self.stacks.forget(run.run_id)  # progress came back while its stacks were asked for
            self.trees.forget(run.run_id)
            self.jobs.forget_stacks(run)
            deadline = stall_deadline(run.progress, run.record.started, timeout)
            self.schedule_stall_check(run, max(deadline, now + MIN_STEP))

    def check_silence(self, run: TrackedRun, now: float) -> None:
        """A stalled run whose process cannot be seen (ns_watch): lost once its
        heartbeat, too, has been silent for the stall timeout; else look again then."""
        run.progress = self.reader.read_progress(run)
        beat = run.progress.beat if run.progress is not None else run.record.started
        limit = max(self.stall_timeout(run), 3 * run.record.heartbeat_interval)
        if now - beat < limit:
            self.schedule_stall_check(run, max(beat + limit, now + MIN_STEP))
            return
        self.apply(run, Event(EventKind.HEARTBEAT_LOST), now,
                   reason=Reason("unwatchable_silent", {"silent": now - beat, "timeout": limit}))
        self.retire_soon(run)

    def check_recovery(self, run: TrackedRun, now: float) -> None:
        """A stalled run's beat changed: fresh again means recovered."""
        run = self.jobs.stall_speaker(run)  # jobs: a rank's beat may end its job's stall
        if run.state is not RunState.STALLED:
            return
        peers = self.jobs.stall_peers(run)
        if peers:
            self.act(self.jobs.check_recovery(run, peers, now), now)
            if run.state is RunState.RUNNING:
                for _, peer in peers:
                    self.watcher.want_beats(peer.run_id, False)
                self.act(self.jobs.check_stall(run, peers, now), now)  # schedules the next check
                if run.state is RunState.STALLED:
                    self.job_stalled(run, peers, now)
            return
        run.progress = self.reader.read_progress(run)
        timeout = self.stall_timeout(run)
        if is_stale(run.progress, run.record.started, timeout, now):
            return
        # Only a frozen process had stopped its heartbeat too; a hung training loop had not.
        self.apply(run, Event(EventKind.PROGRESS_FRESH), now,
                   reason=Reason("resumed") if run.frozen else None)
        if run.state is RunState.RUNNING:
            self.watcher.want_beats(run.run_id, False)
            deadline = stall_deadline(run.progress, run.record.started, timeout)
            self.schedule_stall_check(run, max(deadline, now + MIN_STEP))

    def job_stalled(self, run: TrackedRun, peers: Peers, now: float) -> None:
        """A job's stall was alerted on its speaker ``run``: every rank's beat can end it."""
        for _, peer in peers:
            self.watcher.want_beats(peer.run_id, True)
        self.check_recovery(run, now)  # a beat may have landed meanwhile

    # ------------------------------------------------------------ the job watch's decisions

    def job_verdicts(self, now: float) -> None:
        """The jobs' verdicts due now (the loop's tick), then the jobs changed saved
        (job_state: after the verdicts, so their alerts are enqueued first)."""
        self.act(self.jobs.tick(now), now)
        self.jobs.save(now)

    def act(self, decisions: list[Decision], now: float) -> None:
        """Carry out what the job watch decided, in order."""
        for decision in decisions:
            if isinstance(decision, Say):
                self.apply(decision.run, decision.event, now, final=decision.final, reason=decision.reason,
                           overrides=decision.overrides)
            elif isinstance(decision, RetireIfEnded):
                if decision.run.state.is_terminal:
                    self.retire_soon(decision.run)
            elif isinstance(decision, CheckStallAt):
                self.schedule_stall_check(decision.run, decision.when)
            elif isinstance(decision, WatchStalledJob):
                peers = self.jobs.stall_peers(decision.run)
                if peers:
                    self.job_stalled(decision.run, peers, now)

    def refresh_record(self, run: TrackedRun) -> None:
        """The run's record was rewritten: another callback (a second drop-in)
        joined the run with its channels and labels. The process it names
        stays the one first admitted; a record naming another is refused."""
        loaded = self.reader.read_run(run.run_id)
        if loaded is None:
            return
        record = loaded.record
        admitted = run.record
        same_process = ((record.pid, record.start_ticks, record.boot_id, record.pidns)
                        == (admitted.pid, admitted.start_ticks, admitted.boot_id, admitted.pidns))
        if loaded.owner_uid != run.owner_uid or loaded.dir_id != run.dir_id or not same_process:
            self.reader.problems.report(run.paths.run, "rewritten to name another process, owner or "
                                                       "directory; ignored")
            return
        # The job it was admitted into stays its job (JobWatch grouped its ranks by it).
        run.record = dataclasses.replace(record, job=run.record.job)
        run.channels = self.resolve_channels(run)
        log.info("run %s: record rewritten, %d channel(s) now", run.run_id, len(run.channels))

    # ------------------------------------------------------------ effects

    def apply(self, run: TrackedRun, event: Event, now: float, *, final: Optional[FinalRecord] = None,
              reason: Optional[Reason] = None, kernel_status: Optional[int] = None,
              overrides: Optional[Mapping[str, Any]] = None,
              snapshot: Optional[RunSnapshot] = None) -> None:
        """Make the transition and enqueue its one alert (durably) before the state moves.

        ``overrides``: alert fields a job's verdict sets (the failing rank's pid, error, ...);
        ``snapshot``: the run's files as this event already read them (else progress is read).
        """
        new_state, kind = transition(run.state, event)
        if kind is None:
            run.state = new_state
            self.observer.run_changed(run, None)  # fleet hook
            return
        number = run.transitions + 1
        TRACE.begin(alert_id(run.run_id, number, kind))
        progress = snapshot.progress if snapshot is not None else self.reader.read_progress(run)
        run.progress = progress
        if new_state.is_terminal and event.kind is not EventKind.JOB_ENDED:
            # jobs: what the GPU and NCCL said about this process belongs to its ending.
            # Its descendants still alive, once it is gone (not while a written final's process exits).
            left = survivors.survivors_reason(run.family) if not run.watched else None
            reason = with_notes(reason, [*self.gpu.notes_for(run.identity),
                                         *filter(None, [nccl.explain(final.error if final else None), left])])
        alert = from_run(alert_id(run.run_id, number, kind), kind, run.record, progress=progress,
                         final=final, now=now, reason=reason, user=run.user,
                         trend_metric=self.config.trend_metric, trend_points=self.config.trend_points,
                         kernel_status=kernel_status)
        if new_state.is_terminal:
            crash = self.stacks.crash_facts(run, alert.signal)  # evidence: the frame that faulted
            if alert.signal in FATAL_SIGNALS:
                self.oom.drain()  # the kernel logged its fault line before the process exited
                library = self.native.library_of(run.identity)
                if library:
                    crash = {**crash, "where": with_library(crash.get("where"), library)}
            if crash:
                alert = dataclasses.replace(alert, **crash)
        if run.container is not None:
            alert = in_container(alert, run.container, self.config.host)
        if overrides:
            alert = dataclasses.replace(alert, **overrides)
        alert_on = self.config.alert_on if run.record.alert_on is None else run.record.alert_on
        routed = [] if event.is_quiet else routing.recipients(
            kind.value, run.channels, alert_on, delivered_inline=final is not None and final.delivered_inline)
        channels = self.mute_book.channels_for(kind.value, run.run_id, run.record.name,
                                               run.record.labels.get("project"), run.owner_uid, routed, now)
        over_budget = bool(channels) and not self.budgets.send_state_alert(run.owner_uid, now)
        if over_budget:
            channels = []  # over the user's budget: journaled (history shows it), sent to no one
        if not channels:
            alert = dataclasses.replace(alert, silenced="over its user's budget of state alerts per minute"
                                        if over_budget else silenced_because(
                event.is_quiet, kind.value in alert_on, bool(routed), bool(run.channels)))
        TRACE.stamp(alert.alert_id, "built")
        # Sent first, written while its answer is on the way (``Outbox.admit``: the run is not
        # archived before its record is written). If this raises (the run's record directory
        # cannot be made), the state stays put and the next rescan decides again.
        self.outbox.admit(alert, channels)
        TRACE.stamp(alert.alert_id, "handed")
        self.wake_delivery()  # returns once an idle worker wrote its request (2 ms at most)
        self.outbox.write_admitted()  # a full disk: logged, written by a later pass
        TRACE.stamp(alert.alert_id, "enqueued")
        old_state = run.state
        run.state, run.transitions = new_state, number
        self.syncer.request()  # to disk while the first delivery attempt is under way
        self.observer.run_changed(run, alert)  # fleet hook
        said = alert.detail
        if said is None and kernel_status is not None:
            said = alert.signal or f"exit code {alert.exit_code}"
        log.info("run %s (pid %d): %s -> %s%s", run.run_id, run.identity.pid, old_state.value,
                 new_state.value, f" ({printable(said)})" if said else "")

    def deliver_messages(self, run: TrackedRun, now: float, snapshot: Optional[RunSnapshot] = None) -> None:
        """Queue the run's messages in order (read now, or those ``snapshot`` read);
        each file goes once its alert is on disk."""
        try:
            self._deliver_messages(run, now, snapshot)
        except BaseException:
            self.read_again.add(run.run_id)
            raise

    def _deliver_messages(self, run: TrackedRun, now: float, snapshot: Optional[RunSnapshot]) -> None:
        queued: list[str] = []
        with snapshot.messages if snapshot is not None else self.reader.pending_messages(run) as pending:
            try:
                for seq, name, message in pending.messages:
                    if message is None:
                        continue  # malformed or foreign: logged once, left for the archive
                    alert = from_run(message_alert_id(run.run_id, seq), AlertKind.MESSAGE, run.record,
                                     progress=run.progress, now=message.time, text=message.text,
                                     user=run.user)
                    # Known: already queued before a restart. Not admitted: dropped (counted, logged).
                    if self.outbox.known(alert.alert_id) or self.messages.admit(run.run_id, run.owner_uid,
                                                                                run.user, now):
                        channels = self.mute_book.channels_for(
                            AlertKind.MESSAGE.value, run.run_id, run.record.name,
                            run.record.labels.get("project"), run.owner_uid, run.channels, now)
                        self.outbox.enqueue(alert, channels, sync=False)
                    queued.append(name)
            finally:
                if queued:
                    self.wake_delivery()
                    self.outbox.sync()
            pending.remove(queued)  # in the msg/ directory they were read from

    def retire_soon(self, run: TrackedRun) -> None:
        """Retire ``run`` on the loop's next pass: archiving (renames, and the
        spool events they cause) would compete with the delivery worker
        sending the alert just queued."""
        self.retiring[run.run_id] = None

    def take_retiring(self) -> list[str]:
        """The runs ``retire_soon`` named so far (the loop retires them next pass)."""
        run_ids, self.retiring = list(self.retiring), {}
        return run_ids

    def retire_if_ended(self, run_id: str, now: float) -> None:
        """Retire ``run_id`` if it is still tracked, ended and unwatched
        (forgotten and re-admitted meanwhile, its new state decides)."""
        run = self.runs.get(run_id)
        if run is not None and run.state.is_terminal and not run.watched:
            self.retire(run, now)

    def retire(self, run: TrackedRun, now: float) -> None:
        """An ended run whose process is gone: archive it and stop tracking
        (once its alerts' records are written: until then a restarted daemon
        must find the run in the spool, to decide and send its ending again)."""
        if self.outbox.unwritten(run.run_id):
            self.outbox.write_admitted()
            if self.outbox.unwritten(run.run_id):  # a full disk: look again next pass
                self.retire_soon(run)
                return
        self.deliver_messages(run, now)
        self.forget(run.run_id)
        self.messages.forget(run.run_id)
        if (archive.archive_run(self.reader.spool, run.run_id, self.archive_dir, now, run.dir_id) is None
                and self.reader.run_dir_present(run)):
            self.retired.add(run.run_id)

    # ------------------------------------------------------------ stall deadlines

    def note_descendants(self, run: TrackedRun) -> None:
        """Note the live run's descendants, to name those that outlive it (bounded: ``survivors``)."""
        if not run.watched:
            return  # gone: its last noted family stands
        family = survivors.descendants(run.identity.pid, run.owner_uid)
        if len(family) != len(run.family):
            log.info("run %s: %d descendant process(es) noted", run.run_id, len(family))
        run.family = family

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
        """New Xids: a GPU or node fault alerts the run (or job) it names now;
        an application error waits for that run's ending, which quotes it."""
        for hit in self.gpu.take_pending():
            if hit.pid is None or not hit.node_fault:
                continue
            target = self.jobs.gpu_fault_target(hit) or self._gpu_fault_run(hit)
            if target is not None:
                run, reason, overrides = target
                self.apply(run, Event(EventKind.GPU_FAULT), now, reason=reason, overrides=overrides)

    def _gpu_fault_run(self, hit: XidHit) -> Optional[tuple[TrackedRun, Reason, dict[str, Any]]]:
        run = next((r for r in self.runs.values() if r.identity.pid == hit.pid and r.state.is_live), None)
        if run is None or not hit.names(run.identity):
            return None
        return run, hit.fault_reason(), {"pid": hit.pid}

    @staticmethod
    def stall_reason(run: TrackedRun, timeout: float, now: float) -> Reason:
        return stall_reason(run.progress, run.record.started, run.record.heartbeat_interval, timeout, now)

    # ------------------------------------------------------------ channels

    def resolve_channels(self, run: TrackedRun) -> list[str]:
        """The run's channel names under the access rules (``channel_access``)."""
        return self.access.resolve(run.record.channels, run.owner_uid,
                                   lambda problem: self.reader.problems.report_field(run.paths.run, problem))


def with_notes(reason: Optional[Reason], notes: list[Reason]) -> Optional[Reason]:
    """``reason`` with ``notes`` after it; the first note stands in for a missing reason."""
    if reason is None:
        if not notes:
            return None
        reason, notes = notes[0], notes[1:]
    return reason.with_notes(notes)


def silenced_because(quiet: bool, wanted: bool, routed: bool, has_channels: bool) -> str:
    """Why an alert goes to no channel, in the words ``sentinel history`` shows."""
    if quiet:
        return "part of its job's alert"
    if not wanted:
        return "not in alert_on"
    if routed:
        return "muted"
    return "sent by the process itself" if has_channels else "no channels"


def in_container(alert: Alert, container: ContainerIdentity, host: str) -> Alert:
    """``alert`` of a run in ``container``: the host it names is the node (the
    pod's NODE_NAME, else this daemon's host), the container's beside it; the
    record's hostname is only the container's own."""
    return dataclasses.replace(alert, container=container.as_dict(), hostname=container.node or host)
