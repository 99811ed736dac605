"""A stalled `sentinel run` command: the recorder is the wrapper, the training its
child. The daemon, with exactly the unit's privileges, takes the child's stacks
with py-spy and names the frame it waits in; without py-spy it says why not."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Optional

from sentinel.daemon.tree_stacks import python_processes, runs_python
from sentinel.formats import spool
from sentinel.host.procid import ProcessIdentity
from sentinel.model.alerts import Alert, AlertKind
from tests.cli_helpers import SENTINEL, read_line, sentinel_env
from tests.daemon_harness import DaemonProcess, wait_for_push
from tests.fakes import FakeBark

K = AlertKind
# The training: `sh -c` starts it, so it is a grandchild of the wrapper, as in a launcher script.
CHILD = ("import sys\ndef wait_for_peer():\n    print('ready', flush=True)\n    sys.stdin.read()\n"
         "wait_for_peer()\n")


def _stalled_run(tmp_path: Path, bark: FakeBark, name: str,
                 daemon_env: Optional[dict[str, str]] = None) -> tuple[dict[str, str], Alert]:
    """Run the command under `sentinel run` until its stall alert; let it finish; (push, alert)."""
    with DaemonProcess(tmp_path, {"phone": {"type": "bark", "url": bark.key_url}},
                       daemon_env=daemon_env) as daemon:
        command = f"{sys.executable} -c \"$0\"; true"
        proc = subprocess.Popen([*SENTINEL, "run", "--name", name, "--stall-timeout", "1", "--",
                                 "sh", "-c", command, CHILD],
                                env=sentinel_env(daemon.spool), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        try:
            assert proc.stdout is not None and proc.stdin is not None
            assert read_line(proc.stdout) == b"ready\n"
            (run_id,) = spool.list_run_ids(daemon.spool)
            stalled = wait_for_push(bark, K.STALLED, name)
            proc.stdin.close()  # the peer arrives: the command ends by itself
            assert proc.wait(timeout=60) == 0
            wait_for_push(bark, K.FINISHED, name)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        daemon.stop()
        alerts = daemon.journal(run_id)
    assert [a.kind for a in alerts] == [K.STALLED, K.FINISHED]
    return stalled, alerts[0]


def test_the_stall_alert_names_the_frame_the_command_waits_in(tmp_path: Path, bark: FakeBark) -> None:
    push, stall = _stalled_run(tmp_path, bark, "run-hang")
    assert stall.where is not None and stall.where.startswith("wait_for_peer (<string>:4)"), stall.where
    assert "Where: wait_for_peer (<string>:4)" in push["body"]
    assert stall.stacks is not None and "in wait_for_peer" in stall.stacks and "<module>" in stall.stacks
    assert stall.evidence_missing is None


def test_without_py_spy_the_alert_says_why_there_are_no_stacks(tmp_path: Path, bark: FakeBark) -> None:
    absent = tmp_path / "not-installed" / "py-spy"
    push, stall = _stalled_run(tmp_path, bark, "run-blind", daemon_env={"SENTINEL_PY_SPY": str(absent)})
    assert stall.where is None
    assert stall.evidence_missing == "py-spy is not installed"
    assert "py-spy is not installed" in push["body"]


def test_only_python_processes_of_the_tree_are_dumped(tmp_path: Path) -> None:
    """The shell between the wrapper and the training is not given to py-spy."""
    script = "import sys\nprint('ready', flush=True)\nsys.stdin.read()\n"
    shell = subprocess.Popen(["sh", "-c", f"{sys.executable} -c \"$0\"; true", script],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert shell.stdout is not None and shell.stdin is not None
        assert read_line(shell.stdout) == b"ready\n"
        wrapper = ProcessIdentity.of(shell.pid)
        found = python_processes(wrapper, os.geteuid())
        assert len(found) == 1 and runs_python(found[0].pid) and found[0].pid != shell.pid
        assert not runs_python(shell.pid)
        assert python_processes(wrapper, os.geteuid() + 1) == []  # not the run owner's: never dumped
        shell.stdin.close()
        assert shell.wait(timeout=60) == 0
    finally:
        if shell.poll() is None:
            shell.kill()
            shell.wait()


def test_a_tree_without_python_has_nothing_to_dump(tmp_path: Path) -> None:
    shell = subprocess.Popen(["sh", "-c", "read line; true"], stdin=subprocess.PIPE)
    try:
        assert shell.stdin is not None
        wrapper = ProcessIdentity.of(shell.pid)
        assert python_processes(wrapper, os.geteuid()) == []
        shell.stdin.close()
        assert shell.wait(timeout=60) == 0
    finally:
        if shell.poll() is None:
            shell.kill()
            shell.wait()
