"""The job watch and the tracker talk one way: the tracker tells, the job watch decides.

The job watch holds no reference to the tracker (nor to any of its bound
methods), so whatever it wants done to a run comes back as a decision the
tracker carries out; ``test_import_layers`` checks it does not import it
either. A real daemon object is built here and its job watch inspected,
then a job's verdict is driven through it with real processes.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sentinel.daemon import job_watch
from sentinel.daemon.job_watch import Decision, RetireIfEnded, Say
from sentinel.daemon.loop import Daemon
from sentinel.daemon.tracking import Tracker
from sentinel.formats import spool
from sentinel.model.alerts import AlertKind
from sentinel.model.run_states import EventKind
from tests.in_process_daemon import (
    NOW,
    in_process_daemon,  # noqa: F401  (the fixture "daemon")
    write_run,
)
from tests.victims.harness import identity_of
from tests.waiting import wait_for


def _reaches(value: Any, tracker: Tracker) -> bool:
    """``value`` is the tracker, one of its bound methods, or holds one directly."""
    if value is tracker or getattr(value, "__self__", None) is tracker:
        return True
    if isinstance(value, (list, tuple, set, frozenset)):
        return any(_reaches(v, tracker) for v in value)
    if isinstance(value, dict):
        return any(_reaches(v, tracker) for v in value.values())
    return False


def test_the_job_watch_holds_nothing_of_the_tracker(daemon: Daemon) -> None:
    tracker = daemon.tracker
    jobs = tracker.jobs
    held = {name: value for name, value in vars(jobs).items() if _reaches(value, tracker)}
    assert held == {}
    # Its helpers neither: the stacks desk, the finder, the Slurm oracle.
    for part in (jobs.stacks, jobs.finder, jobs.slurm):
        assert {n for n, v in vars(part).items() if _reaches(v, tracker)} == set()
    # What it reads of the tracker is the runs mapping: the same object, read only.
    assert jobs.runs is tracker.runs


def test_no_job_watch_code_names_the_trackers_actions() -> None:
    """What the tracker does to runs (alerting, retiring, scheduling, watching beats)
    is not spelled anywhere in the job watch's code: it returns decisions instead."""
    tree = ast.parse(Path(job_watch.__file__).read_text())
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    names |= {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    assert names & {"book", "tracker", "Tracker", "apply", "retire_soon", "schedule_stall_check",
                    "want_beats", "watcher"} == set()


def _job_run(spool_path: Path, child: subprocess.Popen[bytes], rank: int, key: str) -> str:
    job = spool.JobRecord(launcher="torchrun", job_id=key, rank=rank, local_rank=rank, world_size=2)
    return write_run(spool_path, identity_of(child), f"rank{rank}", at=NOW + rank, job=job).run_id


def test_a_jobs_verdict_comes_back_as_decisions_the_tracker_carries_out(
        daemon: Daemon, monkeypatch: pytest.MonkeyPatch) -> None:
    waiting = [sys.executable, "-c", "import sys; sys.stdin.read()"]
    children = [subprocess.Popen(waiting, stdin=subprocess.PIPE) for _ in range(2)]
    try:
        run_ids = [_job_run(daemon.spool, c, rank, "job-one-way") for rank, c in enumerate(children)]
        daemon.rescan(NOW)
        decided: list[list[Decision]] = []
        tick = daemon.jobs.tick

        def recording_tick(now: float) -> list[Decision]:
            out = tick(now)
            if out:
                decided.append(out)
            return out

        monkeypatch.setattr(daemon.jobs, "tick", recording_tick)
        for child in children:
            child.kill()
            child.wait()
        clock = [NOW]

        def step() -> bool:
            clock[0] += 1.0  # past the settle time once both ranks are gone
            daemon.poll_once(lambda: clock[0], max_wait=0.05)
            return all(daemon.outbox.journal(r) for r in run_ids)

        wait_for(step, 30, what="the job's verdict")
        says = [d for batch in decided for d in batch if isinstance(d, Say)]
        assert [(s.run.run_id, s.event.kind) for s in says] == [(run_ids[0], EventKind.JOB_ENDED),
                                                                 (run_ids[1], EventKind.FOLDED)]
        retired = {d.run.run_id for batch in decided for d in batch if isinstance(d, RetireIfEnded)}
        assert retired == set(run_ids)
        # ... and the tracker carried them out: one alert for the job, the other rank folded in quietly.
        kinds = [[a.kind for a in daemon.outbox.journal(r)] for r in run_ids]
        assert kinds[0] == [AlertKind.KILLED]
        assert len(kinds[1]) == 1 and daemon.outbox.journal(run_ids[1])[0].silenced
    finally:
        for child in children:
            child.kill()
            child.wait()
