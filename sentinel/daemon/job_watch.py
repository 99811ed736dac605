"""A job's ranks on this host, watched together: one alert per job event.

When one rank of a torchrun job dies, the launcher stops the others
(SIGTERM, then SIGKILL after 30 s), and the rank with the callback dies
"terminated". What happened is the *first* failure, so:

* **Finding the ranks.** A run whose record carries a job (``spool.JobRecord``)
  makes its siblings known: the other children of the same launcher agent
  (``/proc/<agent>/task/*/children``), or, without an agent, the same user's
  processes whose environment names the same job. A sibling counts only if
  it belongs to the run's user, its ``/proc/<pid>/environ`` (readable by
  root or that user) names the same job (``jobs.group_key``), and its start
  time still matches once its pidfd is open — the identity rule for runs.
  The reading of ``/proc`` runs on a worker thread (``rank_finder``), users
  served in turn; the loop opens the pidfds of what it found, each counted
  against the user's pidfd budget (``budgets.UserBudgets.take_pidfd``).
* **Holding the endings.** Ranks that end — recorded runs (their final
  record, or none) and siblings (their exit status through the pidfd, see
  ``sentinel.daemon.pidfd``; the OOM killer; the traceback torchrun's ``@record``
  wrote to ``TORCHELASTIC_ERROR_FILE``) — are held, not alerted.
* **One verdict.** Once every local rank has ended, or ``SETTLE`` seconds
  after the first failure, ``verdict`` names the cause: the earliest
  failure that is not a SIGTERM (SIGTERMs are the launcher's teardown when
  anything else failed), else the earliest failure; a Slurm job's
  scheduler ending (``slurm``) names SIGTERM/SIGKILL endings instead. The
  run that speaks for the job (its lowest recorded rank) raises the one
  alert (``Event.job_ended``); the job's other recorded ranks are
  journaled quietly (``Event.folded``), and so is any rank that ends within
  ``TEARDOWN_WINDOW`` after the alert.
* **Stalls.** With several recorded ranks, only the speaker is checked, on
  every rank's progress: one stall alert naming the ranks that stopped.

What an alert says is a ``Reason`` (``sentinel.model.endings.REASONS``), worded
in each channel's language when it is rendered.

**One way.** The tracker (``sentinel.daemon.tracking``) tells the job watch
what happened to a recorded run (admitted, its end written, its process
gone, a stall or beat check due, a GPU fault); the job watch never calls
the tracker back. What it wants done to runs it *returns* as decisions —
``Say`` (raise this alert), ``RetireIfEnded``, ``CheckStallAt``, ``WatchStalledJob`` — which the
tracker carries out in order. It reads the tracker's runs (a mapping it is
given) and uses the daemon's shared services (run reader, budgets, kernel
log readers), never the tracker itself; ``tests/test_import_layers.py``
fails if it imports the tracker and ``tests/test_job_watch_one_way.py`` if
it holds a reference to it.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Union

from sentinel.common.safetext import printable
from sentinel.daemon import flight_recorder, job_restore, job_state
from sentinel.daemon.budgets import UserBudgets
from sentinel.daemon.job_facts import (
    CheckStallAt,
    Death,
    Decision,
    Job,
    Member,
    RetireIfEnded,
    Say,
    WatchStalledJob,
)
from sentinel.daemon.job_stacks import JobStacks, Rank
from sentinel.daemon.liveness import Liveness, Status
from sentinel.daemon.nccl import explain as nccl_explain
from sentinel.daemon.oom import OomDetector, cgroup_counter
from sentinel.daemon.rank_finder import MAX_FOUND, Ask, Found, RankFinder, read_environ
from sentinel.daemon.run_reader import RunReader, TrackedRun
from sentinel.daemon.slurm import SlurmEnding, SlurmOracle, by_end_time, classify, env_time
from sentinel.daemon.stacks import STACK_WAIT
from sentinel.daemon.xid import GpuFaults, XidHit
from sentinel.formats.safe_json import SpoolFormatError, read_json
from sentinel.formats.spool import FinalRecord
from sentinel.host import jobs
from sentinel.model.alerts import AlertKind
from sentinel.model.endings import Reason
from sentinel.model.exit_status import ending_kind, ending_of
from sentinel.model.run_states import Event, EventKind, is_stale, stall_deadline, stall_reason

log = logging.getLogger("sentinel.daemon.jobs")


Peers = list  # [(rank, TrackedRun)]: a job's live recorded ranks, the speaker first

SETTLE = 2.0  # after the first failure: how long the teardown's deaths are awaited
TEARDOWN_WINDOW = 60.0  # torchrun and Slurm SIGKILL 30 s after their SIGTERM; margin on top
_MAX_MEMBERS = MAX_FOUND  # ranks of one job on one host


def outcome(death: Death) -> tuple[AlertKind, Reason]:
    """The ending one rank's death alone would be, and how to say it."""
    final = death.final
    if final is not None:
        kind = AlertKind(ending_kind(recorded=final.state))
        if kind is AlertKind.FINISHED:
            return kind, Reason("rank_finished")
        if kind is AlertKind.ABORTED:
            return kind, Reason("rank_interrupted")
        if kind is AlertKind.TERMINATED:
            return kind, Reason("rank_terminated", {"signal": final.signal or "SIGTERM"})
        if kind is AlertKind.KILLED:
            return kind, Reason("rank_killed", {"signal": final.signal or "SIGKILL"})
        last = _last_line(final.error)
        if last:
            return AlertKind.CRASHED, Reason("rank_crashed", {"line": last})
        return AlertKind.CRASHED, Reason("rank_crashed_code", {"code": final.exit_code})
    if death.oom:
        return AlertKind.KILLED, Reason("rank_oom")
    if death.message:
        return AlertKind.CRASHED, Reason("rank_raised", {"message": death.message})
    status = death.status
    said = ending_kind(status.signal, status.exit_code) if status is not None else None
    if status is None or said is None:
        return AlertKind.KILLED, Reason("rank_ended_down" if death.down else "rank_unseen")
    kind = AlertKind(said)
    if status.signal is not None:
        if kind is AlertKind.ABORTED:
            return kind, Reason("rank_interrupted")
        if kind is AlertKind.TERMINATED:
            return kind, Reason("rank_terminated", {"signal": status.signal})
        return kind, Reason("rank_killed", {"signal": status.signal})  # SIGKILL, or a native crash
    if kind is AlertKind.FINISHED:
        return kind, Reason("rank_exited_clean")
    return kind, Reason("rank_exit_code", {"code": status.exit_code})


def is_unknown(death: Death) -> bool:
    """Gone, and nothing says how: no final record, status, OOM line or error file."""
    return death.final is None and death.status is None and not death.oom and not death.message


def is_failure(death: Optional[Death]) -> bool:
    return death is not None and outcome(death)[0] is not AlertKind.FINISHED


@dataclass(frozen=True)
class Verdict:
    kind: AlertKind
    cause: Optional[Member]
    reason: Reason
    error: Optional[str]

    @property
    def detail(self) -> str:
        """The reason in English (logs, tests)."""
        return self.reason.text("en") or ""


def verdict(job: Job, step: Optional[int], scheduler: Optional[SlurmEnding]) -> Verdict:
    """The one thing to say about the job's ending (pure: facts in, words out)."""
    name = jobs.display_id(job.record)
    ended = [m for m in job.members.values() if m.death is not None]
    failed = sorted((m for m in ended if is_failure(m.death)), key=lambda m: m.death.at)  # type: ignore[union-attr]
    total = len(job.members)
    counted = {"job": name, "ranks": total, "s": _s(total)}
    if not any(not is_unknown(m.death) for m in failed):  # type: ignore[arg-type]
        # Endings not seen (an older kernel, reaped at once) count as failures only beside a known one.
        unseen = len([m for m in ended if m.death is not None and is_unknown(m.death)])
        finished = Reason("job_finished_unseen", {**counted, "unseen": unseen}) if unseen else \
            Reason("job_finished", counted)
        return Verdict(AlertKind.FINISHED, None, finished, None)
    # SIGTERMs are what the launcher sends the survivors: never the cause if anything else failed.
    primary = [m for m in failed if outcome(m.death)[0] is not AlertKind.TERMINATED]  # type: ignore[arg-type]
    unordered = job_restore.unknown_order(primary)
    if unordered:  # several ranks ended unseen while the daemon was down: which was first is not known
        return Verdict(AlertKind.KILLED, None, job_restore.ended_down_reason(job, unordered), None)
    cause = (primary or failed)[0]
    death = cause.death
    assert death is not None
    kind, phrase = outcome(death)
    error = death.traceback or (death.final.error if death.final is not None else None)
    others = [m for m in job.members.values() if m is not cause]
    stopped = sum(1 for m in others if m.death is not None)
    launcher = job.record.launcher
    notes = [*death.gpu, *filter(None, [nccl_explain(error)])]
    if scheduler is not None and kind in (AlertKind.TERMINATED, AlertKind.KILLED) and not death.oom:
        said = Reason("job_scheduler", {**counted, "scheduler": scheduler.reason.as_arg(),
                                        "stopped": stopped + 1})
        return Verdict(scheduler.kind, cause, said.with_notes(notes), error)
    args: dict[str, Any] = {"job": name, "rank": cause.label(job.host).as_arg(), "ending": phrase.as_arg(),
                            "step": Reason("at_step", {"step": step}).as_arg() if step is not None else ""}
    if others:
        who: Any = launcher if launcher not in ("slurm", "launcher") else Reason("the_launcher").as_arg()
        if stopped < len(others):
            teardown = Reason("stopping_others", {"who": who, "stopped": stopped, "others": len(others)})
        elif len(others) > 1:
            teardown = Reason("stopped_others", {"who": who, "others": len(others)})
        else:
            teardown = Reason("stopped_other", {"who": who})
        notes.insert(0, teardown)
    return Verdict(kind, cause, Reason("job_rank_ended", args).with_notes(notes), error)


def job_facts(job: Job, cause_rank: Optional[int]) -> dict[str, str]:
    """The ``Alert.job`` of an alert about ``job``."""
    facts = {"id": jobs.display_id(job.record), "launcher": job.record.launcher,
             "ranks": str(len(job.members))}
    if cause_rank is not None:
        facts["cause_rank"] = str(cause_rank)
    return facts


def folded(job: Job) -> Reason:
    return Reason("job_folded", {"job": jobs.display_id(job.record)})


def _s(count: int) -> str:
    return "" if count == 1 else "s"


def _last_line(text: Optional[str]) -> Optional[str]:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1][:300] if lines else None


# ---------------------------------------------------------------- the host


def read_error_file(path: str, uid: int) -> Optional[tuple[str, str]]:
    """(message, traceback) from torchrun's error file, if it is the rank's user's own file.

    The path comes from a run record or a rank's environment, so it is
    hostile: never a symlink, a regular file only, owned by the rank's user,
    size-capped (``safe_json.read_json``).
    """
    if not path or not os.path.isabs(path):
        return None
    try:
        data, st = read_json(path)  # type: ignore[arg-type]
    except (OSError, SpoolFormatError):
        return None
    if st.st_uid != uid:
        return None
    message: Any = data.get("message")
    traceback: Any = None
    if isinstance(message, dict):
        extra = message.get("extraInfo")
        traceback = extra.get("py_callstack") if isinstance(extra, dict) else None
        message = message.get("message")
    if not isinstance(message, str) or not message.strip():
        return None
    return message.strip()[:300], traceback if isinstance(traceback, str) else ""


# ---------------------------------------------------------------- the watch


class JobWatch:
    """The daemon's jobs: their ranks' pidfds, held endings and verdicts."""

    def __init__(self, runs: Mapping[str, TrackedRun], reader: RunReader, budgets: UserBudgets,
                 oom: OomDetector, gpu: GpuFaults, liveness: Liveness, wake: Callable[[], None],
                 stall_timeout: float) -> None:
        self.runs = runs  # the tracker's runs, read only
        self.reader = reader
        self.budgets = budgets  # pidfds count against their user's budget
        self.oom = oom
        self.gpu = gpu
        self.stall_timeout = stall_timeout  # the configured default (the tracker updates it on reload)
        self.liveness = liveness  # the ranks' own pidfds, in the daemon's epoll
        self.slurm = SlurmOracle(wake)
        self.finder = RankFinder(wake)  # sibling ranks, found on a worker thread
        self.jobs: dict[str, Job] = {}
        self.by_run: dict[str, str] = {}  # recorded run id -> job key
        self.stacks = JobStacks(reader)  # evidence: every rank's stacks on a job stall
        self.state: Optional[job_state.JobStateStore] = None  # saved across restarts, if kept
        self._dirty: set[str] = set()  # keys of jobs changed since the last save

    # ---------------------------------------------------- kept across restarts (job_state, job_restore)

    def keep_state(self, store: job_state.JobStateStore, now: float) -> None:
        """Start-up, before the runs are reconciled: bring the saved jobs back, save from now on."""
        self.state = store
        job_restore.restore(self, store.load())
        store.start()

    def judge_restored(self, now: float) -> list[Decision]:
        """Start-up, once the runs are reconciled: the restored jobs' ranks, alive or ended while
        down; what the tracker is to do (a stalled job's recovery watched on every rank)."""
        return [WatchStalledJob(run) for run in job_restore.judge_restored(self, now, read_error_file)]

    def ended_while_down(self, run: TrackedRun, now: float) -> Optional[list[Decision]]:
        """Start-up hook: ``run``, a rank of a restored job, is gone: held for its job, or None
        (not a restored job's: the run's own ending is alerted)."""
        return job_restore.run_ended_while_down(self, run, now)

    def restoring(self, run: TrackedRun) -> bool:
        """``run`` is a rank of a job restored at this start whose ranks are not all judged yet."""
        found = self.rank_of(run)
        return found is not None and found[0].restored

    def forget_saved(self, key: str) -> None:
        """The saved job ``key`` is not brought back: its file goes at the next save."""
        self._dirty.add(key)

    def touch(self, job: Job) -> None:
        self._dirty.add(job.key)

    def save(self, now: float, force: bool = False) -> None:
        """Hand the jobs changed since the last save to the writer thread (after the pass's alerts)."""
        if self.state is None or not self._dirty:
            return
        keys, self._dirty = self._dirty, set()
        users = Counter(job.uid for job in self.jobs.values())
        kept = [self.jobs[k] for k in keys if k in self.jobs]
        self._dirty |= self.state.save(kept, [k for k in keys if k not in self.jobs], users, now, force)

    # ------------------------------------------------------------ membership

    def admit(self, run: TrackedRun, now: float) -> None:
        """A live recorded run: join (or found) its job and look for its siblings."""
        record = run.record.job
        if record is None:
            return
        key = jobs.group_key(record, run.owner_uid)
        job = self.jobs.get(key)
        if job is None:
            job = self.jobs[key] = Job(key, run.owner_uid, record, run.record.hostname)
        member = job.members.get(run.identity.pid)
        if member is None or member.ident != run.identity:
            member = Member(run.identity, record.rank, record.local_rank, record.error_file)
            if not self.watch_rank(job, member, now):
                return
        elif not member.holds_pidfd and not member.gone:  # restored from the state directory
            self.watch_rank(job, member, now)
        member.run_id = run.run_id
        member.cgroup = member.cgroup or run.cgroup
        self.by_run[run.run_id] = key
        self.touch(job)
        self.discover(job)

    def discover(self, job: Job) -> bool:
        """Ask the rank finder's thread for the job's sibling ranks (``found`` takes
        the answer); False if the user's queue is full (a rescan asks again)."""
        if job.alerted_at is not None:
            return False
        record = job.record
        return self.finder.ask(Ask(job.key, job.uid, record.agent_pid, record.agent_start_ticks))

    def found(self, now: float) -> int:
        """Watch the sibling ranks the finder's thread found; returns how many were added."""
        added = 0
        for found in self.finder.take():
            added += self._add_ranks(found, now)
        return added

    def _add_ranks(self, found: Found, now: float) -> int:
        job = self.jobs.get(found.key)
        if job is None or job.alerted_at is not None:
            return 0
        added = 0
        for rank in found.ranks:
            member = job.members.get(rank.ident.pid)
            if (member is not None and member.ident == rank.ident) or len(job.members) >= _MAX_MEMBERS:
                continue
            if self.watch_rank(job, Member(rank.ident, rank.rank, rank.local_rank, rank.error_file), now):
                added += 1
        if added:
            log.info("job %s: watching %d more rank(s) on this host (%d in all)",
                     jobs.display_id(job.record), added, len(job.members))
        return added

    def revisit(self, run: TrackedRun) -> None:
        """At a rescan: ranks that started after the record was written."""
        found = self.rank_of(run)
        if found is not None and found[1].death is None:
            self.discover(found[0])

    def watch_rank(self, job: Job, member: Member, now: float) -> bool:
        """Watch ``member``'s process on a pidfd of its own (counted against its user's
        budget); False if it cannot be (over budget, or not the same process any more)."""
        budgets = self.budgets
        if not budgets.take_pidfd(job.uid, now):
            return False  # over the user's pidfd budget: the rank is not watched
        status = self.liveness.watch(self._key(job, member.ident.pid), member.ident)
        if status is not Status.ALIVE:
            budgets.give_pidfd(job.uid)
            return False
        member.holds_pidfd = True
        member.cgroup = cgroup_counter(member.ident.pid)  # now, while /proc/<pid>/cgroup exists
        job.members[member.ident.pid] = member
        self.touch(job)
        return True

    def _closed(self, job: Job, member: Member) -> None:
        """The member's pidfd is closed: give it back to its user's budget."""
        if member.holds_pidfd:
            member.holds_pidfd = False
            self.budgets.give_pidfd(job.uid)

    @staticmethod
    def _key(job: Job, pid: int) -> str:
        return f"{job.key}|{pid}"

    def _locate(self, key: str) -> Optional[tuple[Job, Member]]:
        job_key, _, pid = key.rpartition("|")
        job = self.jobs.get(job_key)
        member = job.members.get(int(pid)) if job is not None and pid.isdigit() else None
        return (job, member) if job is not None and member is not None else None

    # ------------------------------------------------------------ exits

    def owns(self, fd: int) -> bool:
        return self.liveness.owns(fd)

    def exited(self, fd: int, now: float) -> None:
        """A rank's pidfd fired: how it ended (the fd is let go of)."""
        ended = self.liveness.exit_of(fd)
        found = self._locate(ended.key) if ended is not None else None
        if ended is None or found is None:
            return
        self._closed(*found)
        if ended.status is not None:
            found[1].status = ending_of(ended.status)
        self._rank_exited(*found, now)

    def poll(self, now: float) -> None:
        """Polling fallback (no pidfd): ranks found gone, with no exit status."""
        for key in self.liveness.poll():
            found = self._locate(key)
            if found is not None:
                self._closed(*found)
                self._rank_exited(*found, now)

    def _rank_exited(self, job: Job, member: Member, now: float) -> None:
        member.gone = True
        if member.run_id is not None:
            return  # a recorded rank is judged by the daemon (its final record) in ``holds_exit``
        death = Death(at=now, status=member.status, gpu=self.gpu.notes_for(member.ident))
        if member.status is None or member.status.exit_code != 0:
            death.oom = self.oom.evidence(member.ident, member.cgroup)
            found = read_error_file(member.error_file, job.uid)
            if found is not None:
                death.message, death.traceback = found
        member.death = death
        self.changed(job, now)

    def holds_final(self, run: TrackedRun, final: FinalRecord, now: float) -> Optional[list[Decision]]:
        """A recorded rank wrote its end while still alive: held for its job
        (what to do meanwhile, often nothing), or None: not a job's, the
        tracker judges it alone."""
        found = self.rank_of(run)
        if found is None:
            return None
        job, member = found
        if job.alerted_at is not None:
            return self._fold_late(job, run, final, Death(at=now, final=final), now)
        if member.death is None:
            member.death = Death(at=min(now, final.ended), final=final)
            self.changed(job, now)
        elif member.death.final is None:  # restored: its own word, read again from the spool
            member.death.final = final
        return []

    def holds_exit(self, run: TrackedRun, final: Optional[FinalRecord], oom: Optional[Reason],
                   status: Optional[int], now: float) -> Optional[list[Decision]]:
        """A recorded rank's process is gone (``status``: its wait status, if the
        kernel told): held for its job, or None (as ``holds_final``)."""
        found = self.rank_of(run)
        if found is None:
            return None
        job, member = found
        member.gone = True
        if member.status is None and status is not None:
            member.status = ending_of(status)
        death = member.death or Death(at=now)
        death.final = death.final or final
        death.status, death.oom = member.status, death.oom or (None if final else oom)
        death.gpu = self.gpu.notes_for(member.ident)
        member.death = death
        if job.alerted_at is not None:
            return self._fold_late(job, run, final, death, now)
        self.changed(job, now)
        return []

    def holds(self, run_id: str) -> bool:
        """The run's end waits for its job's verdict: the rescan must leave it alone."""
        key = self.by_run.get(run_id)
        job = self.jobs.get(key) if key is not None else None
        if job is None or job.alerted_at is not None:
            return False
        member = job.member_of_run(run_id)
        return member is not None and member.death is not None

    def rank_of(self, run: TrackedRun) -> Optional[tuple[Job, Member]]:
        """The job ``run`` is a recorded rank of, and its member; None if it is no job's."""
        key = self.by_run.get(run.run_id)
        job = self.jobs.get(key) if key is not None else None
        member = job.member_of_run(run.run_id) if job is not None else None
        return (job, member) if job is not None and member is not None else None

    def _fold_late(self, job: Job, run: TrackedRun, final: Optional[FinalRecord], death: Death,
                   now: float) -> Optional[list[Decision]]:
        """After the job's alert: a rank ending in the teardown window is part of it."""
        if job.alerted_at is None or now - job.alerted_at > TEARDOWN_WINDOW:
            return None
        self.drop_if_done(job)
        return [Say(run, Event.folded(outcome(death)[0]), folded(job), final)]

    # ------------------------------------------------------------ verdicts

    def changed(self, job: Job, now: float) -> None:
        """A rank of ``job`` ended or came back: to be saved, and judged again."""
        self.touch(job)
        if job.alerted_at is not None:
            self.drop_if_done(job)
            return
        failed = any(is_failure(m.death) and not is_unknown(m.death)  # type: ignore[arg-type]
                     for m in job.members.values())
        if failed and job.first_failure is None:
            job.first_failure = now
            job.settle_at = now + SETTLE
            if job.slurm_id:
                self.slurm.ask(job.slurm_id, job.slurm_restarts)
        if job.all_gone():
            job.settle_at = now

    def next_deadline(self) -> Optional[float]:
        due = [j.settle_at for j in self.jobs.values() if j.settle_at is not None and j.alerted_at is None]
        saving = self.state.next_due() if self.state is not None else None  # a deferred save
        due += [saving] if saving is not None else []
        return min(due) if due else None

    def tick(self, now: float) -> list[Decision]:
        """The verdicts due: each job's one alert and its ranks folded in."""
        self.expire(now)
        decisions: list[Decision] = []
        for job in list(self.jobs.values()):
            if job.alerted_at is None and job.settle_at is not None and job.settle_at <= now:
                scheduler = self._scheduler_ending(job)
                if scheduler is not False:
                    ending = scheduler if isinstance(scheduler, SlurmEnding) else None
                    decisions += self.decide(job, now, ending)
        return decisions

    def _scheduler_ending(self, job: Job) -> Union[SlurmEnding, None, bool]:
        """The Slurm ending, None if there is none, False while Slurm is still being asked."""
        if not job.slurm_id or job.first_failure is None:
            return None
        if self.slurm.available:
            done, fields = self.slurm.answer(job.slurm_id, job.slurm_restarts)
            if not done:
                return False
            if fields:
                return classify(fields, job.slurm_restarts)
        # No scontrol (or no answer): the end time the job was started with, if Slurm gave one.
        end_time = env_time(job.record.slurm.get("job_end_time"))
        first = min((m for m in job.members.values() if m.death is not None), key=lambda m: m.death.at)  # type: ignore[union-attr]
        signal_name = (first.death.final.signal if first.death and first.death.final else None) or (
            first.death.status.signal if first.death and first.death.status else None)
        return by_end_time(end_time, signal_name, job.first_failure)

    def decide(self, job: Job, now: float, scheduler: Optional[SlurmEnding]) -> list[Decision]:
        """Say the job's one thing on the run that speaks for it; fold its other ranks."""
        recorded = [(m, r) for m, r in self._recorded(job) if r.state.is_live]
        job.alerted_at = now
        self.touch(job)
        if not recorded:
            log.warning("job %s ended but none of its recorded runs is left to say so", printable(job.key))
            self.drop_if_done(job)
            return []
        speaker_member, speaker = recorded[0]
        for _, run in recorded:
            run.progress = self.reader.read_progress(run)  # the step the job got to
        steps = [r.progress.step for _, r in recorded if r.progress and r.progress.step is not None]
        found = verdict(job, max(steps) if steps else None, scheduler)
        cause = found.cause
        overrides: dict[str, Any] = {"job": job_facts(job, cause.rank if cause is not None else None)}
        if cause is not None and cause.death is not None:
            status = cause.death.status
            overrides.update(pid=cause.ident.pid, error=found.error,
                             exit_code=status.exit_code if status is not None else None,
                             signal=(cause.death.final.signal if cause.death.final else None)
                             or (status.signal if status is not None else None))
        elif found.kind is not AlertKind.FINISHED:  # no one rank's ending: not the speaker's own either
            overrides.update(exit_code=None, signal=None, error=None)
        own = speaker_member.death.final if speaker_member.death is not None else None
        decisions: list[Decision] = [Say(speaker, Event.job_ended(found.kind), found.reason, own, overrides)]
        decisions += [Say(run, Event.folded(outcome(member.death)[0]), folded(job), member.death.final)
                      for member, run in recorded if run is not speaker and member.death is not None]
        decisions += [RetireIfEnded(run) for member, run in recorded if member.gone]
        self.drop_if_done(job)
        return decisions

    def drop_if_done(self, job: Job, force: bool = False) -> None:
        """Forget a job once every rank is gone and each recorded one was judged
        (its end folded in, not alerted again), or, ``force``, after the teardown window."""
        judged = all(m.gone and (m.run_id is None or m.death is not None) for m in job.members.values())
        if not judged and not force:
            return
        for member in job.members.values():
            self.liveness.unwatch(self._key(job, member.ident.pid))
            self._closed(job, member)
            if member.run_id is not None:
                self.by_run.pop(member.run_id, None)
        self.jobs.pop(job.key, None)
        self.touch(job)  # its saved state is removed

    def expire(self, now: float) -> None:
        """Jobs alerted more than the teardown window ago: what still runs is no longer teardown."""
        for job in list(self.jobs.values()):
            if job.alerted_at is not None and now - job.alerted_at > TEARDOWN_WINDOW:
                self.drop_if_done(job, force=True)

    # ------------------------------------------------------------ stalls and GPU faults

    def _recorded(self, job: Job) -> list[tuple[Member, TrackedRun]]:
        """The job's recorded ranks the daemon tracks, lowest rank first: the
        first one speaks for the job."""
        runs = self.runs
        found = [(m, runs[m.run_id]) for m in job.members.values() if m.run_id in runs]  # type: ignore[index]
        return sorted(found, key=lambda pair: (pair[0].rank is None, pair[0].rank or 0))

    def stall_peers(self, run: TrackedRun) -> Optional[Peers]:
        """For a job with several recorded ranks: [(rank, run)] if ``run`` speaks for
        the job's stalls, [] if another rank does; None for anything else."""
        found = self.rank_of(run)
        if found is None:
            return None
        live = [(m.rank, r) for m, r in self._recorded(found[0]) if m.death is None]
        if len(live) < 2:
            return None
        return live if live[0][1] is run else []

    def timeout(self, run: TrackedRun) -> float:
        return run.record.stall_timeout or self.stall_timeout

    def check_stall(self, run: TrackedRun, peers: Peers, now: float) -> list[Decision]:
        """The speaker's stall check, on every recorded rank's progress: the
        job's stall alert, or when to look again. (Once stalled, the tracker
        watches the ``peers``' beats and asks ``check_recovery``.)"""
        stale, deadlines = [], []
        for rank, peer in peers:
            peer.progress = self.reader.read_progress(peer)
            timeout = self.timeout(peer)
            if is_stale(peer.progress, peer.record.started, timeout, now):
                stale.append((rank, peer))
            deadlines.append(stall_deadline(peer.progress, peer.record.started, timeout))
        if not stale:
            self.stacks.forget(run.run_id)  # progress came back while the stacks were asked for
            return [CheckStallAt(run, max(min(deadlines), now + 0.005))]
        job = self.rank_of(run)[0]  # type: ignore[index]
        evidence = self.job_stacks(run, now)
        if evidence is None:
            return [CheckStallAt(run, now + STACK_WAIT)]  # asked every rank: back for the answers
        names = ", ".join(str(rank) if rank is not None else f"pid {peer.record.pid}" for rank, peer in stale)
        first_rank, first = stale[0]
        progress = first.progress
        stall = stall_reason(progress, first.record.started, first.record.heartbeat_interval,
                             self.timeout(first), now)
        reason = Reason("job_stalled", {"job": jobs.display_id(job.record), "names": names,
                                        "s": _s(len(stale)), "ranks": len(peers), "stall": stall.as_arg()})
        return [Say(run, Event(EventKind.PROGRESS_STALE), reason, overrides={
            "job": job_facts(job, first_rank), "pid": first.record.pid,
            "last_beat": progress.beat if progress else None,
            "last_progress": progress.last_progress if progress else None, **evidence})]

    def check_recovery(self, run: TrackedRun, peers: Peers, now: float) -> list[Decision]:
        """A stalled job recovers when every recorded rank progresses again. (Once
        running, the tracker stops watching the beats and checks stalls again.)"""
        for _, peer in peers:
            peer.progress = self.reader.read_progress(peer)
            if is_stale(peer.progress, peer.record.started, self.timeout(peer), now):
                return []
        return [Say(run, Event(EventKind.PROGRESS_FRESH), Reason("job_resumed"))]

    def job_stacks(self, run: TrackedRun, now: float) -> Optional[dict[str, Any]]:
        """The stacks of every local rank of ``run``'s job, grouped (``job_stacks``):
        the alert's fields, {} if ``run`` is in no job, or None while they are
        being gathered (the stall check is to come back for them: ``STACK_WAIT``)."""
        found = self.rank_of(run)
        if found is None:
            return {}
        job = found[0]
        runs = self.runs
        ranks = [Rank(m.rank, m.ident, runs.get(m.run_id) if m.run_id is not None else None)
                 for m in job.members.values() if not m.gone]
        return self.stacks.poll(run.run_id, ranks, now, also=lambda: self._flight_recorder(job))

    @staticmethod
    def _flight_recorder(job: Job) -> str:
        """The Flight Recorder dumps' summary, where the job enabled it (on a worker thread)."""
        ranks = []
        for member in list(job.members.values()):
            env = read_environ(member.ident.pid) if member.rank is not None else None
            if env is not None and member.rank is not None:
                ranks.append((member.rank, member.ident, env))
        return flight_recorder.job_summary(ranks, job.uid)

    def forget_stacks(self, run: TrackedRun) -> None:
        self.stacks.forget(run.run_id)

    def stall_speaker(self, run: TrackedRun) -> TrackedRun:
        """The run whose stall state stands for ``run``'s job (``run`` itself if none)."""
        found = self.rank_of(run)
        live = [r for m, r in self._recorded(found[0]) if m.death is None] if found is not None else []
        return live[0] if live else run

    def gpu_fault_target(self, hit: XidHit) -> Optional[tuple[TrackedRun, Reason, dict[str, Any]]]:
        """The run that speaks for the job whose rank ``hit`` names, with what to say; None
        if no watched job has that rank."""
        run = self.speaker_for_pid(hit.pid) if hit.pid is not None else None
        found = self.member_of_pid(hit.pid) if run is not None and hit.pid is not None else None
        if run is None or found is None:
            return None
        job, rank = found
        if not hit.names(rank.ident):
            return None
        reason = Reason("job_gpu_fault", {"job": jobs.display_id(job.record),
                                          "rank": rank.label(job.host).as_arg(),
                                          "gpu": hit.reason().as_arg(), "line": hit.line})
        return run, reason, {"pid": hit.pid, "job": job_facts(job, rank.rank)}

    def speaker_for_pid(self, pid: int) -> Optional[TrackedRun]:
        """The recorded run that speaks for the job one of whose ranks is ``pid``."""
        for job in self.jobs.values():
            if pid not in job.members or job.alerted_at is not None:
                continue
            live = [r for _, r in self._recorded(job) if r.state.is_live]
            return live[0] if live else None
        return None

    def member_of_pid(self, pid: int) -> Optional[tuple[Job, Member]]:
        for job in self.jobs.values():
            member = job.members.get(pid)
            if member is not None:
                return job, member
        return None

    def close(self) -> None:
        self.finder.close()
        self.liveness.close()
        self.slurm.close()
        if self.state is not None:
            self.save(time.time(), force=True)
            self.state.close()
