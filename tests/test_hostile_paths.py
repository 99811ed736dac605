"""Paths a local user names, opened by the root daemon: a rank's
``TORCHELASTIC_ERROR_FILE`` naming the user's own terminal, a FIFO, a device,
a symlink or another user's private file. Real users, their real processes,
a real daemon in its own session (as a service is: no controlling terminal
to start with) and a fake phone on 127.0.0.1.

The daemon must never gain a controlling terminal (a ``^C`` typed on the
user's pty would stop it), never open a device (a watchdog would arm), never
block, read nothing the rank's user could not read, and still deliver
another user's alert.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from sentinel.model.alerts import AlertKind
from tests.daemon_harness import DaemonProcess, wait_for_push
from tests.fakes import FakeBark
from tests.users import (
    become,
    home_for,
    make_shared_spool,
    shared_for_user_python,  # noqa: F401  (the fixture "shared")
    user_python,
)
from tests.victims.harness import ROOT, WATCH_VICTIM, Victim
from tests.waiting import wait_for

K = AlertKind
AGENT = ROOT / "tests" / "job_victims" / "agent.py"
RANK_RECORD = ROOT / "tests" / "job_victims" / "rank_record.py"
JOB = {"LOCAL_WORLD_SIZE": "6", "WORLD_SIZE": "6",
       "TORCHELASTIC_RUN_ID": "5e1f0c2e-0000-4000-8000-0000000000aa", "TORCHELASTIC_RESTART_COUNT": "0",
       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29511"}
SECRET = "ALICE-PRIVATE-TRACEBACK"


def tty_nr(pid: int) -> int:
    """The controlling terminal of ``pid`` (0: none), from /proc/<pid>/stat."""
    raw = Path(f"/proc/{pid}/stat").read_bytes()
    return int(raw[raw.rfind(b")") + 2:].split()[4])


def user_env() -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(ROOT),
            "PYTHONDONTWRITEBYTECODE": "1", "HOME": "/nonexistent"}


def test_error_files_naming_a_pty_fifo_device_symlink_or_private_file(tmp_path: Path, shared: Path,
                                                                      mallory: int, alice: int) -> None:
    """Mallory's torchrun-like job: rank 0 recorded, ranks 1-5 name as their
    error file her pty, her FIFO, /dev/zero, her symlink to Alice's 0600
    error file, and that file itself. All five are killed: the daemon stays
    without a terminal (and a ^C on the pty afterwards leaves it running),
    nothing of Alice's file reaches an alert or the log, and Alice's own
    kill alert still arrives."""
    spool = make_shared_spool(shared)
    alice_home = home_for(shared, alice)
    mine, hers = home_for(shared, mallory) / "home", alice_home / "home"
    master, slave = os.openpty()  # the user's own terminal, as sshd would give her one
    os.fchown(slave, mallory, -1)
    pty_path = os.ttyname(slave)
    fifo = mine / "error.fifo"
    os.mkfifo(fifo)
    os.chown(fifo, mallory, -1)
    private = hers / "error.json"
    private.write_text(json.dumps({"message": {"message": SECRET, "extraInfo": {"py_callstack": SECRET}}}))
    os.chown(private, alice, -1)
    private.chmod(0o600)
    link = mine / "link.json"
    link.symlink_to(private)
    os.lchown(link, mallory, -1)
    named = [pty_path, str(fifo), "/dev/zero", str(link), str(private)]
    specs = [{"env": {**JOB, "RANK": "0", "LOCAL_RANK": "0"}}] + [
        {"env": {**JOB, "RANK": str(n), "LOCAL_RANK": str(n), "TORCHELASTIC_ERROR_FILE": path}}
        for n, path in enumerate(named, start=1)]
    try:
        with FakeBark() as phone, DaemonProcess(tmp_path / "d", {"phone": {"type": "bark",
                                                                          "url": phone.key_url}},
                                                spool=spool) as daemon:
            assert daemon.proc is not None
            agent = subprocess.Popen([user_python(), str(AGENT), json.dumps(specs)], cwd=mine, env=user_env(),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     preexec_fn=become(mallory))
            try:
                assert agent.stdout is not None
                pids = [int(p) for p in agent.stdout.readline().split()]
                assert len(pids) == 6
                for pid in pids:  # each child has exec'd sleep, with its environment
                    wait_for(lambda pid=pid: Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"sleep"),
                             10, what="the rank's exec")
                written = subprocess.run(
                    [user_python(), str(RANK_RECORD), str(spool), str(pids[0]), str(agent.pid),
                     json.dumps(specs[0]["env"])], cwd=mine, env=user_env(), capture_output=True, text=True,
                    preexec_fn=become(mallory), timeout=60)
                assert written.stdout.startswith("READY"), written.stderr
                daemon.wait_log("watching 5 more rank(s) on this host (6 in all)")
                with Victim(user_python(), WATCH_VICTIM, ["--heartbeat", "0.2", "sleep-forever", "--name",
                                                          "victim"], alice_home,
                            spool_dir=spool, preexec_fn=become(alice)) as victim:
                    victim.start()
                    victim.ready()
                    victim.expect("RUNNING")
                    for pid in pids[1:]:
                        os.kill(pid, signal.SIGKILL)
                    os.kill(pids[0], signal.SIGKILL)
                    wait_for(lambda: [p for p in phone.pushes if "jobby" in p.get("title", "")], 60,
                             what="the job's alert")
                    assert tty_nr(daemon.proc.pid) == 0
                    os.write(master, b"\x03")  # ^C: SIGINT to the terminal's foreground group, if any
                    victim.kill()
                    wait_for_push(phone, K.KILLED, "victim", signal="SIGKILL")
                    assert daemon.alive() and tty_nr(daemon.proc.pid) == 0
            finally:
                assert agent.stdin is not None
                agent.stdin.close()
                agent.wait(30)
            daemon.stop()
        shown = json.dumps(phone.pushes) + daemon.log()
        assert SECRET not in shown
    finally:
        os.close(master)
        os.close(slave)


if sys.platform != "linux":  # pragma: no cover
    pytest.skip("Linux only", allow_module_level=True)
