"""A run's descendants that outlive it are named in its alert (a real daemon, real processes).

A killed main process whose workers ignore SIGTERM and SIGHUP leaves them
running, reparented away from it: the daemon noted them while the run lived
(``sentinel.daemon.survivors``) and names them, with their memory, in the
alert about the kill. The same for ``sentinel run``'s trainer when the
wrapper itself is SIGKILLed (PDEATHSIG reaches only its direct child).
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from sentinel.daemon import survivors
from sentinel.formats import spool
from sentinel.model.alerts import AlertKind
from tests.cli_helpers import SENTINEL, read_line, sentinel_env
from tests.daemon_harness import DaemonProcess, wait_for_push
from tests.fakes import FakeBark
from tests.processes import Launcher
from tests.victims.harness import ROOT, Victim
from tests.waiting import wait_for

K = AlertKind
LEAKY = ROOT / "tests" / "daemon_victims" / "leaky_workers.py"

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="Linux only")


def kill_all(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_workers_outliving_a_killed_main_process_are_named(daemon: DaemonProcess, bark: FakeBark,
                                                           tmp_path: Path) -> None:
    workers: list[int] = []
    with Victim(sys.executable, LEAKY, ["leaky", "3"], tmp_path, spool_dir=daemon.spool) as victim:
        try:
            victim.start()
            workers = [int(word) for word in victim.expect("WORKERS").split()[1:]]
            run_id = victim.ready()
            daemon.wait_log(f"run {run_id}: 3 descendant process(es) noted")
            victim.signal(signal.SIGKILL)
            push = wait_for_push(bark, K.KILLED, "leaky", signal="SIGKILL")
            assert all(Path(f"/proc/{pid}").exists() for pid in workers)  # they did live on
        finally:
            kill_all(workers)
    said = re.search(r"3 of its child processes still alive \(pids ([\d, ]+); ([\d.]+) MiB resident\)",
                     push["body"])
    assert said, push["body"]
    assert sorted(int(p) for p in said.group(1).split(", ")) == workers
    assert float(said.group(2)) >= 3 * 16  # each holds 16 MiB, touched
    assert daemon.stop() == 0
    (alert,) = daemon.journal(run_id)
    assert alert.kind is K.KILLED and alert.signal == "SIGKILL"  # the kernel named the kill
    assert alert.reason == "survivors" and "3 of its child processes still alive" in (alert.detail or "")


def test_a_run_whose_workers_ended_with_it_says_nothing_of_survivors(daemon: DaemonProcess, bark: FakeBark,
                                                                     tmp_path: Path) -> None:
    workers: list[int] = []
    with Victim(sys.executable, LEAKY, ["tidy", "2"], tmp_path, spool_dir=daemon.spool) as victim:
        try:
            victim.start()
            workers = [int(word) for word in victim.expect("WORKERS").split()[1:]]
            run_id = victim.ready()
            daemon.wait_log(f"run {run_id}: 2 descendant process(es) noted")
            watches = [os.pidfd_open(pid) for pid in workers]
            kill_all(workers)
            for fd in watches:  # the workers are gone before their parent
                wait_for(lambda fd=fd: select.select([fd], [], [], 0)[0], 30, what="a worker's end")
                os.close(fd)
            victim.signal(signal.SIGKILL)
            push = wait_for_push(bark, K.KILLED, "tidy", signal="SIGKILL")
        finally:
            kill_all(workers)
    assert "still alive" not in push["body"]


def test_the_trainer_under_a_sigkilled_sentinel_run_is_named(daemon: DaemonProcess, bark: FakeBark,
                                                             launch: Launcher) -> None:
    trainer_code = "import os, time; print(os.getpid(), flush=True); time.sleep(600)"
    script = shlex.join([sys.executable, "-c", trainer_code]) + "; echo after"
    proc = launch([*SENTINEL, "run", "--name", "wrapped", "--", "sh", "-c", script],
                  env=sentinel_env(daemon.spool), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    trainer = int(read_line(proc.stdout))
    try:
        run_id = wait_for(lambda: spool.list_run_ids(daemon.spool), 30, what="the wrapper's record")[0]
        daemon.wait_log(f"run {run_id}: 2 descendant process(es) noted")  # the shell and the trainer
        proc.kill()
        push = wait_for_push(bark, K.KILLED, "wrapped", signal="SIGKILL")
        named = re.search(rf"child processes? still alive \(pids [\d, ]*\b{trainer}\b", push["body"])
        assert named, push["body"]
    finally:
        kill_all([trainer])


FAMILY = ("import subprocess, sys\n"
          "wait = [sys.executable, '-c', 'import sys; sys.stdin.read()']\n"
          "kids = [subprocess.Popen(wait) for _ in range(4)]\n"
          "print(*(k.pid for k in kids), flush=True)\n"
          "sys.stdin.read()\n")  # the parent and its four children end when stdin closes


def test_noting_is_bounded_and_ignores_other_owners() -> None:
    """A process with more descendants than the bound costs no more than the bound."""
    parent = subprocess.Popen([sys.executable, "-c", FAMILY], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert parent.stdout is not None
        children = {int(word) for word in read_line(parent.stdout).split()}
        mine = survivors.descendants(parent.pid, os.getuid(), limit=3)
        assert len(mine) == 3 and {p.pid for p in mine} <= children
        assert survivors.descendants(parent.pid, os.getuid() + 12345) == ()
        assert survivors.descendants(parent.pid, os.getuid(), reads=1) == ()  # the thread list, no more
        everyone = survivors.descendants(parent.pid, os.getuid())
        assert {p.pid for p in everyone} == children
        reason = survivors.survivors_reason(everyone)
        assert reason is not None and reason.args["count"] == 4
        assert reason.text("en").startswith("4 of its child processes still alive (pids ")
    finally:
        assert parent.stdin is not None
        parent.stdin.close()
        parent.wait(30)
    wait_for(lambda: survivors.survivors_reason(everyone) is None, 30, what="the children's end")
