"""Finding a job's ranks, in-process with a real daemon object and real processes.

A stand-in agent (``job_victims/agent.py``) starts children with launcher
environments; one of them has a run record. The daemon must watch exactly
the children that are ranks of the same job and belong to the run's user.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sentinel.daemon import reconcile
from sentinel.daemon.config import Budgets
from sentinel.daemon.loop import Daemon
from sentinel.formats import safe_json, spool
from sentinel.host import jobs
from sentinel.host.procid import ProcessIdentity
from sentinel.model.alerts import AlertKind
from tests.in_process_daemon import (
    in_process_daemon,  # noqa: F401  (the fixture "daemon")
    open_daemon,
    plain_config,
)
from tests.victims.harness import wait_for

AGENT = Path(__file__).parent / "job_victims" / "agent.py"
JOB = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "4",
       "TORCHELASTIC_RUN_ID": "4f0c1a2e-0000-4000-8000-00000000beef", "TORCHELASTIC_RESTART_COUNT": "0",
       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}


def start_agent(specs: list[dict]) -> tuple[subprocess.Popen[str], list[int]]:
    agent = subprocess.Popen([sys.executable, str(AGENT), json.dumps(specs)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    assert agent.stdout is not None
    pids = [int(p) for p in agent.stdout.readline().split()]
    for pid in pids:  # each child has exec'd sleep, with its environment
        wait_for(lambda pid=pid: Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"sleep"), 10,
                 what="the child's exec")
    return agent, pids


def record_rank(daemon: Daemon, pid: int, agent_pid: int) -> str:
    ident = wait_for(lambda: ProcessIdentity.of(pid), 10, what="the rank in /proc")
    run_id = spool.new_run_id(pid)
    record = spool.RunRecord(
        run_id=run_id, pid=pid, start_ticks=ident.start_ticks, boot_id=ident.boot_id,
        hostname=socket.gethostname(), uid=os.getuid(), user="tester", cmdline=["train.py"], cwd="/",
        started=time.time(), heartbeat_interval=10.0, name="jobby", job=jobs.from_environ(JOB, agent_pid))
    paths = spool.RunPaths(daemon.spool, run_id)
    safe_json.make_private_dir(paths.dir)
    safe_json.write_json(paths.run, record.to_dict())
    return run_id


def test_only_the_same_users_ranks_of_the_same_job_are_watched(daemon: Daemon) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to start a child as another user")
    specs = [
        {"env": JOB},  # the recorded rank
        {"env": {**JOB, "RANK": "1", "LOCAL_RANK": "1"}},  # a sibling
        {"env": {**JOB, "RANK": "2", "LOCAL_RANK": "2"}, "uid": 65534},  # same job id, another user
        {"env": {**JOB, "RANK": "3", "LOCAL_RANK": "3", "TORCHELASTIC_RUN_ID": "other"}},  # another job
        {"env": {"PATH": os.environ.get("PATH", "")}},  # the agent's helper, no job at all
    ]
    agent, pids = start_agent(specs)
    try:
        run_id = record_rank(daemon, pids[0], agent.pid)
        run = reconcile.admit(daemon.tracker, run_id, time.time(), at_startup=False)
        assert run is not None and run.watched
        [job] = daemon.jobs.jobs.values()
        # The siblings are found on the rank finder's thread, all in one answer.
        wait_for(lambda: (daemon.poll_once(time.time, 0.2), pids[1] in job.members)[1], 10,
                 what="the sibling found")
        assert set(job.members) == {pids[0], pids[1]}

        os.kill(pids[1], signal.SIGKILL)  # the sibling dies first ...
        wait_for(lambda: (daemon.poll_once(time.time, 0.2), job.members[pids[1]].death)[1], 10,
                 what="the sibling's death seen")
        os.kill(pids[0], signal.SIGTERM)  # ... then the recorded rank, torn down
        wait_for(lambda: (daemon.poll_once(time.time, 0.2), daemon.jobs.jobs == {})[1], 20,
                 what="the job's verdict")
    finally:
        assert agent.stdin is not None
        agent.stdin.close()
        agent.wait(30)
    [alert] = daemon.outbox.journal(run_id)  # type: ignore[attr-defined]
    assert alert.kind is AlertKind.KILLED and alert.pid == pids[1] and alert.signal == "SIGKILL"
    assert "rank 1 (local rank 1" in (alert.detail or "") and "stopped the other rank" in (alert.detail or "")


def test_a_jobs_ranks_count_against_the_users_pidfd_budget(tmp_path: Path,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    """In a shared spool with ``pidfds_per_user: 3``: the recorded rank's run watch
    (1) and its job pidfd (1) leave room for one sibling of five; the others are
    not watched (logged), and every job pidfd is given back once the job is done."""
    config = plain_config(tmp_path, budgets=Budgets(pidfds_per_user=3))
    safe_json.make_private_dir(config.spool_path())
    config.spool_path().chmod(0o1777)  # shared: per-user budgets apply
    daemon = open_daemon(config, tmp_path)
    siblings = [{"env": {**JOB, "RANK": str(n), "LOCAL_RANK": str(n)}} for n in range(1, 6)]
    agent, pids = start_agent([{"env": JOB}, *siblings])
    budgets = daemon.tracker.budgets
    try:
        run_id = record_rank(daemon, pids[0], agent.pid)
        with caplog.at_level("WARNING", logger="sentinel.daemon.budgets"):
            run = reconcile.admit(daemon.tracker, run_id, time.time(), at_startup=False)
            assert run is not None and run.watched
            [job] = daemon.jobs.jobs.values()
            wait_for(lambda: (daemon.poll_once(time.time, 0.2), len(job.members) >= 2)[1], 10,
                     what="a sibling found")
            daemon.poll_once(time.time, 0.2)
        assert len(job.members) == 2, job.members  # the recorded rank and one sibling
        assert budgets.pidfds == 3
        assert "job ranks not watched" in caplog.text
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        wait_for(lambda: (daemon.poll_once(time.time, 0.2), daemon.jobs.jobs == {})[1], 20,
                 what="the job's verdict")
        assert budgets.pidfds == 0  # the run's watch and both job pidfds given back
    finally:
        assert agent.stdin is not None
        agent.stdin.close()
        agent.wait(30)
        daemon.close()
