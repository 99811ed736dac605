"""The daemon under exactly the privileges systemd/sentinel.service gives it.

The unit's capability bounding set is parsed and applied with setpriv
(tests/unit_caps.py); tests/daemon_harness.py starts every daemon of the
suite that way when it runs as root. Here: that the set really is applied,
that each capability the features need is in it (each test below also shows
the feature failing without its capability, so the check can fail), and
that another user's torchrun job is attributed as the unit starts the daemon.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sentinel.model.alerts import Alert, AlertKind
from tests.daemon_harness import DaemonProcess, titles
from tests.fakes import FakeBark
from tests.torch_jobs import TorchJob, torch_python_path, watching_siblings
from tests.unit_caps import (
    UnitPrivileges,
    capability_mask,
    effective_capabilities,
    unavailable,
    unit_privileges,
)
from tests.users import (  # noqa: F401 (fixture)
    become,
    home_for,
    make_shared_spool,
    other_uid,  # noqa: F401 (fixture)
    shared,
    user_python,
)
from tests.victims.harness import missing
from tests.waiting import wait_for

K = AlertKind

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="Linux only")


@pytest.fixture(autouse=True)
def _needs_setpriv() -> None:
    reason = unavailable()
    if reason:
        pytest.skip(reason)


def test_the_unit_grants_exactly_what_the_features_need() -> None:
    unit = unit_privileges()
    # Why each is there is said in the unit; the tests below prove each one is needed.
    assert unit.bounding == {"CAP_DAC_READ_SEARCH", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_SYSLOG",
                             "CAP_SYS_PTRACE", "CAP_KILL"}
    assert unit.ambient == frozenset() and unit.no_new_privileges


def test_the_daemon_runs_with_the_units_capabilities_and_no_more(tmp_path: Path, bark: FakeBark) -> None:
    with DaemonProcess(tmp_path, {"phone": {"type": "bark", "url": bark.key_url}}) as daemon:
        assert daemon.proc is not None
        status = Path(f"/proc/{daemon.proc.pid}/status").read_text()
        assert "launch_daemon.py" in Path(f"/proc/{daemon.proc.pid}/cmdline").read_text()  # setpriv exec'd it
        assert effective_capabilities(daemon.proc.pid) == capability_mask(unit_privileges().bounding)
        assert re.search(r"^NoNewPrivs:\s+1$", status, re.M)
        assert daemon.stop() == 0


# ------------------------------------------------------ ptrace rights (stacks, job attribution)

PROBE = textwrap.dedent("""
    import ctypes, ctypes.util, sys
    pid = int(sys.argv[1])
    results = []
    try:
        open(f"/proc/{pid}/environ", "rb").read()
        results.append("environ")
    except OSError as exc:
        results.append(f"environ-denied:{exc.errno}")
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    # process_vm_readv: how py-spy reads a live interpreter's memory.
    try:
        start = int(open(f"/proc/{pid}/maps").readline().split("-")[0], 16)
    except OSError:
        start = 0x10000  # maps is ptrace-guarded too; the call is refused before the address matters
    class iovec(ctypes.Structure):
        _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]
    buf = ctypes.create_string_buffer(8)
    local, remote = iovec(ctypes.addressof(buf), 8), iovec(start, 8)
    libc.process_vm_readv.restype = ctypes.c_ssize_t
    n = libc.process_vm_readv(pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
    results.append("vm_readv" if n == 8 else f"vm_readv-denied:{ctypes.get_errno()}")
    # PTRACE_SEIZE then PTRACE_DETACH: how py-spy pauses threads for a consistent stack.
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    if libc.ptrace(0x4206, pid, None, None) == 0:
        results.append("seize")
        libc.ptrace(17, pid, None, None)
    else:
        results.append(f"seize-denied:{ctypes.get_errno()}")
    print(" ".join(results))
""")


def probe_as(privileges: UnitPrivileges, pid: int) -> list[str]:
    result = subprocess.run([*privileges.command(), sys.executable, "-c", PROBE, str(pid)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_ptrace_rights_over_another_users_process_come_from_cap_sys_ptrace(
    other_uid: int,  # noqa: F811
) -> None:
    """What job attribution (/proc/PID/environ) and stack dumps (process_vm_readv,
    PTRACE_SEIZE) need of another user's process, under the unit and without CAP_SYS_PTRACE."""
    victim = subprocess.Popen([user_python(), "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE,
                              preexec_fn=become(other_uid))
    try:
        wait_for(lambda: Path(f"/proc/{victim.pid}/status").read_text().count(f"\t{other_uid}\t") >= 1, 30,
                 what="the victim running as the other user")
        unit = unit_privileges()
        assert probe_as(unit, victim.pid) == ["environ", "vm_readv", "seize"]
        denied = probe_as(unit.without("CAP_SYS_PTRACE"), victim.pid)
        assert [word.split(":")[0] for word in denied] == [
            "environ-denied", "vm_readv-denied", "seize-denied"]
    finally:
        assert victim.stdin is not None
        victim.stdin.close()
        victim.wait(30)


def test_the_unit_without_cap_syslog_cannot_read_the_kernel_log() -> None:
    """CAP_SYSLOG names the OOM killer (/dev/kmsg under kernel.dmesg_restrict=1)."""
    if Path("/proc/sys/kernel/dmesg_restrict").read_text().strip() != "1":
        pytest.skip("kernel.dmesg_restrict is 0 here: anyone may read the kernel log")
    read = [sys.executable, "-c", "import os; os.close(os.open('/dev/kmsg', os.O_RDONLY | os.O_NONBLOCK))"]
    unit = unit_privileges()
    assert subprocess.run([*unit.command(), *read], capture_output=True).returncode == 0
    assert subprocess.run([*unit.without("CAP_SYSLOG").command(), *read], capture_output=True).returncode != 0


# ------------------------------------------------------ another user's torchrun job, as the unit starts it


def torch_python() -> str:
    path = torch_python_path()
    if path:
        return path
    missing("SENTINEL_TEST_PY_TORCH is not set to a python with torch (tests/run.py builds .venv-torch)")


def killed_rank_alert(tmp_path: Path, shared_dir: Path, uid: int, bark: FakeBark,
                      privileges: UnitPrivileges) -> tuple[TorchJob, str, Alert]:
    spool_dir = make_shared_spool(shared_dir)
    daemon = DaemonProcess(tmp_path, {"phone": {"type": "bark", "url": bark.key_url}}, spool=spool_dir)
    daemon.wrapper = privileges.command()
    with daemon, TorchJob(daemon, "sleep", "--name", "theirs", python=torch_python(), uid=uid,
                          home=home_for(shared_dir, uid)) as job:
        job.victim.expect("RUNNING")
        watching_siblings(daemon, 3)
        os.kill(job.ranks[3], signal.SIGKILL)
        job.victim.wait(120)
        wait_for(lambda: bark.pushes, 60, what="an alert about the job")
        assert daemon.stop() == 0
        journal = daemon.journal(job.run_id)
    assert len(journal) == 1, journal
    return job, titles(bark)[0], journal[0]


def test_another_users_killed_rank_is_named_under_the_unit(
    tmp_path: Path, shared: Path, other_uid: int, bark: FakeBark  # noqa: F811
) -> None:
    job, title, alert = killed_rank_alert(tmp_path, shared, other_uid, bark, unit_privileges())
    assert alert.kind is K.KILLED and alert.signal == "SIGKILL" and alert.pid == job.ranks[3]
    assert f"rank 3 (local rank 3, host {os.uname().nodename}, pid {job.ranks[3]}) was killed by SIGKILL" \
        in (alert.detail or "")
    assert "SIGKILL" in title or "Killed" in title, title
    assert len(bark.pushes) == 1, titles(bark)
