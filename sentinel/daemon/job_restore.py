"""A daemon restart mid-job: the saved jobs brought back and their ranks judged.

``job_state`` reads the saved jobs (``SavedJob``); ``restore`` puts them back
into the job watch before the spool's runs are reconciled, not judged yet.
Once the runs are reconciled, ``judge_restored`` takes each restored job: a
rank still alive is watched again (its identity checked on the new pidfd);
one that ended while no daemon was watching gets what can still be known of
its end (its exit status if it is a zombie, the kernel log's OOM lines, its
error file), or is said to have ended while the daemon was down. Then the job
is judged as usual (``job_watch``): exactly one alert for it, none if it was
alerted before the restart.
"""

from __future__ import annotations

import logging
from typing import Callable, Mapping, Optional, Protocol

from sentinel.daemon.job_facts import Death, Decision, Job, Member
from sentinel.daemon.job_state import SavedJob, own_pidns
from sentinel.daemon.oom import OomDetector
from sentinel.daemon.run_reader import RunReader, TrackedRun
from sentinel.daemon.xid import GpuFaults
from sentinel.formats.spool import FinalRecord
from sentinel.host import jobs
from sentinel.host.procid import boot_id, zombie_exit_status
from sentinel.model.endings import Reason
from sentinel.model.exit_status import ending_of
from sentinel.model.run_states import RunState

log = logging.getLogger("sentinel.daemon.job_restore")


class RestoringWatch(Protocol):
    """What of the job watch (``job_watch.JobWatch``) a restart's judging uses."""

    jobs: dict[str, Job]
    by_run: dict[str, str]  # recorded run id -> job key
    runs: Mapping[str, TrackedRun]
    reader: RunReader
    oom: OomDetector
    gpu: GpuFaults

    def forget_saved(self, key: str) -> None: ...
    def rank_of(self, run: TrackedRun) -> Optional[tuple[Job, Member]]: ...
    def watch_rank(self, job: Job, member: Member, now: float) -> bool: ...
    def changed(self, job: Job, now: float) -> None: ...
    def drop_if_done(self, job: Job, force: bool = False) -> None: ...
    def discover(self, job: Job) -> bool: ...
    def holds_exit(self, run: TrackedRun, final: Optional[FinalRecord], oom: Optional[Reason],
                   status: Optional[int], now: float) -> Optional[list[Decision]]: ...


ErrorFileReader = Callable[[str, int], Optional[tuple[str, str]]]  # (path, uid) -> (message, traceback)


def restore(watch: RestoringWatch, saved: list[SavedJob]) -> int:
    """Put the saved jobs back into ``watch``, their ranks not judged yet (``judge_restored``
    does that once the runs are reconciled); returns how many came back."""
    pidns, this_boot = own_pidns(), boot_id()
    restored = 0
    for job in saved:
        if job.pidns != pidns or any(m.ident.boot_id != this_boot for m in job.members):
            # Its pids are another namespace's or another boot's: nothing here can be judged by them.
            log.info("saved job %s is of another boot or PID namespace: dropped", job.key[:80])
            watch.forget_saved(job.key)
            continue
        if job.key in watch.jobs:
            continue
        restored_job = Job(job.key, job.uid, job.record, job.host, first_failure=job.first_failure,
                           alerted_at=job.alerted_at, restored=True)
        for saved_member in job.members:
            member = Member(saved_member.ident, saved_member.rank, saved_member.local_rank,
                            saved_member.error_file, run_id=saved_member.run_id, gone=saved_member.gone)
            death = saved_member.death
            if death is not None:
                member.death = Death(at=death.at, status=death.status, oom=death.oom,
                                           message=death.message, traceback=death.traceback, down=death.down)
                member.status = death.status
            restored_job.members[member.ident.pid] = member
            if member.run_id is not None:
                watch.by_run[member.run_id] = job.key
        watch.jobs[job.key] = restored_job
        restored += 1
    log.info("start-up: %d job(s) restored from the state directory", restored)
    return restored


def run_ended_while_down(watch: RestoringWatch, run: TrackedRun, now: float) -> Optional[list[Decision]]:
    """A recorded rank of a restored job, found gone at start-up: its job holds its end
    (the decisions that follow), or it is not a restored job's (None: the run's own
    ending is alerted)."""
    found = watch.rank_of(run)
    if found is None or not found[0].restored:
        return None
    member = found[1]
    final = watch.reader.read_final(run)
    status = zombie_exit_status(run.identity.pid, run.identity.start_ticks)
    oom = None if final is not None else watch.oom.evidence(run.identity, run.cgroup)
    fresh = member.death is None
    held = watch.holds_exit(run, final, oom, status, now)
    if held is not None and fresh and member.death is not None and member.death.final is None \
            and status is None:
        member.death.down = True  # nothing was there to see it end
    return held


def judge_restored(watch: RestoringWatch, now: float, read_error_file: ErrorFileReader) -> list[TrackedRun]:
    """Every restored job, once its recorded runs were admitted: a rank still alive is
    watched again (its identity checked on the new pidfd); one that ended while the
    daemon was down gets what can still be known of its end (its exit status if it
    is a zombie, the kernel log's OOM lines, its error file), or is said to have
    ended while the daemon was down. Then the job is judged as usual. Returns the
    stalled runs of jobs stalled before the restart: their recovery is to be watched
    on all their ranks."""
    stalled: list[TrackedRun] = []
    for job in [j for j in watch.jobs.values() if j.restored]:
        job.restored = False
        alive = False
        for member in list(job.members.values()):
            if member.gone or member.holds_pidfd:
                continue
            run = watch.runs.get(member.run_id) if member.run_id is not None else None
            if run is not None and (member.death is not None or run.state.is_terminal or run.watched):
                alive = alive or (run.watched and member.death is None)
                continue  # admitted: judged (or watched) with its run
            if member.ident.is_running():
                if not watch.watch_rank(job, member, now):
                    log.warning("job %s: rank pid %d runs again but cannot be watched (over its user's "
                                "pidfd budget)", job.key[:80], member.ident.pid)
                alive = True
                continue
            _ended_while_down(watch, job, member, now, read_error_file)
        if alive and job.alerted_at is None:
            watch.discover(job)  # ranks started while the daemon was down
        down = sum(1 for m in job.members.values() if m.death is not None and m.death.down)
        log.info("job %s restored: %d rank(s), %d ended while the daemon was down%s",
                 jobs.display_id(job.record), len(job.members), down,
                 "; alerted before the restart" if job.alerted_at is not None else "")
        watch.changed(job, now)
        if job.alerted_at is not None:
            watch.drop_if_done(job)
        stalled += _stalled_runs(watch, job)
    return stalled


def _stalled_runs(watch: RestoringWatch, job: Job) -> list[TrackedRun]:
    """A job stalled before the restart: its recovery is judged on every rank's
    progress now that all its recorded ranks are back (one at a time, the first
    admitted would have looked recovered on its own progress)."""
    runs = [watch.runs[m.run_id] for m in list(job.members.values())
            if m.run_id is not None and m.run_id in watch.runs]
    return [r for r in runs if r.watched and r.state is RunState.STALLED]


def _ended_while_down(watch: RestoringWatch, job: Job, member: Member, now: float,
                      read_error_file: ErrorFileReader) -> None:
    member.gone = True
    if member.death is not None:
        return  # its end was seen before the restart
    wait_status = zombie_exit_status(member.ident.pid, member.ident.start_ticks)
    status = ending_of(wait_status) if wait_status is not None else None
    death = Death(at=now, status=status, gpu=watch.gpu.notes_for(member.ident))
    if status is None or status.exit_code != 0:
        death.oom = watch.oom.evidence(member.ident, None)
        found = read_error_file(member.error_file, job.uid)
        if found is not None:
            death.message, death.traceback = found
    death.down = status is None and death.oom is None and death.message is None
    member.status = status
    member.death = death


def unknown_order(primary: list[Member]) -> list[Member]:
    """The candidates for a job's cause when they are several ranks that all ended while
    the daemon was down with nothing to tell them apart (which was first is not known);
    [] if the cause can be named."""
    if len(primary) < 2 or not all(m.death is not None and m.death.down for m in primary):
        return []
    return primary


def ended_down_reason(job: Job, ranks: list[Member]) -> Reason:
    """'Job X: ranks 1, 2, 3 ended while the daemon was down; which one failed first is not known'."""
    names = ", ".join(str(m.rank) if m.rank is not None else f"pid {m.ident.pid}"
                      for m in sorted(ranks, key=lambda m: (m.rank is None, m.rank or 0, m.ident.pid)))
    total = len(job.members)
    return Reason("job_ranks_ended_down", {"job": jobs.display_id(job.record), "names": names,
                                           "count": len(ranks), "ranks": total,
                                           "s": "" if total == 1 else "s"})
