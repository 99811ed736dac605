"""sd_notify over a real datagram socket, and the unit files as systemd reads them."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
from pathlib import Path

import pytest

from sentinel.daemon import systemd
from tests.unit_caps import unit_settings

ROOT = Path(__file__).resolve().parent.parent
UNITS = ROOT / "systemd"


# ---------------------------------------------------------------- sd_notify


@pytest.fixture
def notify_socket(tmp_path: Path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify.sock"
    sock.bind(str(path))
    sock.settimeout(10)  # a bound on a failing test, not a synchronisation
    yield sock, str(path)
    sock.close()


def test_notify_sends_ready_and_watchdog(notify_socket) -> None:
    sock, path = notify_socket
    env = {"NOTIFY_SOCKET": path}
    assert systemd.notify("READY=1", env=env) is True
    assert sock.recv(4096) == b"READY=1"
    assert systemd.notify("WATCHDOG=1", env=env) is True
    assert sock.recv(4096) == b"WATCHDOG=1"


def test_notify_from_the_environment(notify_socket, monkeypatch: pytest.MonkeyPatch) -> None:
    sock, path = notify_socket
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    assert systemd.notify("STATUS=watching 3 runs\nREADY=1") is True
    assert sock.recv(4096) == b"STATUS=watching 3 runs\nREADY=1"


def test_notify_abstract_namespace_socket() -> None:
    name = f"sentinel-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(10)
        assert systemd.notify("WATCHDOG=1", env={"NOTIFY_SOCKET": "@" + name}) is True
        assert sock.recv(4096) == b"WATCHDOG=1"


def test_notify_is_a_no_op_outside_systemd() -> None:
    assert systemd.notify("READY=1", env={}) is False


def test_notify_to_a_vanished_socket_fails_quietly(tmp_path: Path) -> None:
    assert systemd.notify("READY=1", env={"NOTIFY_SOCKET": str(tmp_path / "gone.sock")}) is False


def test_watchdog_period_is_half_of_watchdog_sec() -> None:
    pid = str(os.getpid())
    assert systemd.watchdog_period({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": pid}) == 15.0
    assert systemd.watchdog_period({"WATCHDOG_USEC": "30000000"}) == 15.0
    # A ping meant for another process (a parent's watchdog) is not ours to send.
    assert systemd.watchdog_period({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None
    assert systemd.watchdog_period({}) is None
    assert systemd.watchdog_period({"WATCHDOG_USEC": "0"}) is None
    assert systemd.watchdog_period({"WATCHDOG_USEC": "soon"}) is None


# ---------------------------------------------------------------- unit files


def read_unit(name: str) -> dict[str, list[str]]:
    """'Section.Key' -> values, from one of our unit files (comments dropped)."""
    return unit_settings(UNITS / name)


@pytest.mark.parametrize("name", ["sentinel.service", "sentinel-user.service"])
def test_unit_essentials(name: str) -> None:
    unit = read_unit(name)
    assert unit["Service.Type"] == ["notify"]
    assert unit["Service.Restart"] == ["always"]
    assert unit["Service.WatchdogSec"]
    assert unit["Service.ExecStart"][0].endswith("sentinel daemon")
    assert unit["Service.ExecReload"] == ["/bin/kill -HUP $MAINPID"]  # SIGHUP: the daemon re-reads its config


def test_system_unit_keeps_what_the_daemon_needs() -> None:
    unit = read_unit("sentinel.service")
    # Other users' processes must stay visible, and the kernel log readable.
    assert "Service.ProtectProc" not in unit
    assert "Service.ProtectKernelLogs" not in unit
    assert "Service.PrivateDevices" not in unit
    assert unit["Service.DeviceAllow"] == ["/dev/kmsg r"]
    assert "CAP_SYSLOG" in unit["Service.CapabilityBoundingSet"][0]
    assert "User" not in {k.split(".")[1] for k in unit}
    # The shared spool: sticky and world-writable, like /tmp.
    assert "/usr/bin/install -d -m 1777 /var/lib/sentinel/spool" in unit["Service.ExecStartPre"]
    assert unit["Service.Environment"] == ["SENTINEL_SPOOL=/var/lib/sentinel/spool"]


def test_every_hardening_option_has_a_comment() -> None:
    """Each hardening line is explained by a comment line somewhere above it
    in its block (the block of options that share one reason)."""
    lines = (UNITS / "sentinel.service").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("# --- Hardening"))
    end = next(i for i, line in enumerate(lines) if line.startswith("[Install]"))
    commented = False
    for line in lines[start:end]:
        if line.startswith("#"):
            commented = True
        elif not line.strip():
            commented = False
        else:
            assert commented, f"hardening option without a comment: {line}"


def systemd_analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed on this machine (apt-get install systemd)")
    return tool


def verify(tool: str, unit: Path, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    # --man=no: the Documentation= pages need not exist here; verify still
    # parses every directive and checks that every Exec path is executable.
    return subprocess.run([tool, "verify", "--man=no", *extra, str(unit)], capture_output=True, text=True,
                          timeout=120, env=env)


def installed_copy(tmp_path: Path, name: str, target_name: str, fake_exec: Path) -> Path:
    """The unit with ExecStart pointing at an executable that exists here
    (verify checks that it does); everything else exactly as shipped."""
    text = (UNITS / name).read_text()
    for path in ("/opt/run-sentinel/bin/sentinel", "%h/.local/bin/sentinel"):
        text = text.replace(path, str(fake_exec))
    assert str(fake_exec) in text
    unit = tmp_path / target_name
    unit.write_text(text)
    return unit


@pytest.fixture
def fake_exec(tmp_path: Path) -> Path:
    exe = tmp_path / "bin" / "sentinel"
    exe.parent.mkdir()
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return exe


def assert_clean(result: subprocess.CompletedProcess) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # Unknown directives are only warnings to verify: they must not be there either.
    for word in ("Unknown key", "Unknown section", "Failed to parse", "ignoring"):
        assert word not in output, output


def test_system_unit_passes_systemd_analyze_verify(tmp_path: Path, fake_exec: Path) -> None:
    tool = systemd_analyze()
    unit = installed_copy(tmp_path, "sentinel.service", "sentinel.service", fake_exec)
    assert_clean(verify(tool, unit))


def test_user_unit_passes_systemd_analyze_verify(tmp_path: Path, fake_exec: Path) -> None:
    tool = systemd_analyze()
    unit = installed_copy(tmp_path, "sentinel-user.service", "sentinel.service", fake_exec)
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime)}  # --user needs one; no user manager runs here
    assert_clean(verify(tool, unit, "--user", env=env))


def test_verify_catches_a_missing_executable(tmp_path: Path) -> None:
    """The check above can fail: verify does look at ExecStart."""
    tool = systemd_analyze()
    unit = tmp_path / "sentinel.service"
    unit.write_text((UNITS / "sentinel.service").read_text())  # /opt/run-sentinel is not installed here
    if Path("/opt/run-sentinel/bin/sentinel").exists():
        pytest.skip("run-sentinel is installed in /opt/run-sentinel on this machine")
    result = verify(tool, unit)
    assert result.returncode != 0
    assert "/opt/run-sentinel/bin/sentinel" in result.stdout + result.stderr


def test_notify_never_blocks_on_a_full_socket(tmp_path: Path) -> None:
    """Nobody reads the socket: its queue fills, and notify drops rather than stalls the daemon."""
    import socket

    path = tmp_path / "full.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as unread:
        unread.bind(str(path))
        results = [systemd.notify("WATCHDOG=1", env={"NOTIFY_SOCKET": str(path)}) for _ in range(5000)]
    assert results[0] is True and results[-1] is False  # the queue filled; later pings were dropped


def syscall_groups(tool: str) -> dict[str, list[str]]:
    """systemd's own system call groups (``@name`` -> members, groups nested)."""
    groups: dict[str, list[str]] = {}
    current = ""
    output = subprocess.run([tool, "syscall-filter"], capture_output=True, text=True, timeout=60).stdout
    for raw in output.splitlines():
        line = raw.strip()
        if raw.startswith("@"):  # a group's header is not indented; its members (groups too) are
            current = line
            groups[current] = []
        elif line and not line.startswith("#") and current:
            groups[current].append(line)
    return groups


def allowed_syscalls(tool: str, filters: list[str]) -> set[str]:
    groups = syscall_groups(tool)
    allowed: set[str] = set()

    def add(name: str) -> None:
        if name.startswith("@"):
            for member in groups[name]:
                add(member)
        else:
            allowed.add(name)

    for value in filters:
        assert not value.startswith("~"), "the unit's filter is an allow list"
        for name in value.split():
            add(name)
    return allowed


def test_system_call_filter_allows_what_the_features_call() -> None:
    """pidfd_open/waitid: exit detection; process_vm_readv and ptrace: stack dumps of a
    live process (py-spy). SystemCallFilter= needs systemd to apply, so it is checked here."""
    tool = systemd_analyze()
    allowed = allowed_syscalls(tool, read_unit("sentinel.service")["Service.SystemCallFilter"])
    needed = {"pidfd_open", "waitid", "inotify_init1", "process_vm_readv", "ptrace", "prctl"}
    assert needed <= allowed, needed - allowed
    assert "ptrace" not in allowed_syscalls(tool, ["@system-service"])  # why the unit names it
    assert "perf_event_open" not in allowed  # only ptrace from @debug, not the group
