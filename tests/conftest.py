"""Fixtures shared by the test modules, and the suite's process hygiene.

Every process a test starts gets default signal dispositions, however the
suite itself was started (a background job of a non-interactive shell
ignores SIGINT, nohup ignores SIGHUP, and both are inherited over exec).
And every process a test starts carries ``SENTINEL_TEST_STARTED_BY`` (the
test's id) in its environment: one still alive when the session ends is
killed, listed and fails the run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from tests import processes
from tests.daemon_harness import DaemonProcess
from tests.docker_harness import containers, docker  # noqa: F401  (fixtures: our own dockerd, its containers)
from tests.fakes import FakeBark
from tests.users import alice, mallory, other_uid, shared  # noqa: F401  (fixtures: throw-away users, a shared dir)
from tests.victims.harness import wait_for


def pytest_configure(config: pytest.Config) -> None:
    processes.give_children_default_signals()
    processes.mark_session()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: object) -> Iterator[None]:
    with processes.started_by(item.nodeid):
        yield


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    leftovers = processes.kill_leftovers()
    if not leftovers:
        return
    lines = ["processes started by the tests were still running at the end (now killed):"]
    lines += [f"  pid {p.pid} from {p.started_by}: {p.command}" for p in leftovers]
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_sep("=", "LEFTOVER PROCESSES", red=True, bold=True)
        for line in lines:
            reporter.write_line(line, red=True)
    else:
        print("\n".join(lines), file=sys.stderr)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def child() -> Iterator[subprocess.Popen[bytes]]:
    """A live process that waits (on stdin) until the test is over."""
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    yield proc
    proc.kill()
    proc.wait()


@pytest.fixture
def memory_cgroup() -> Iterator[Path]:
    """A cgroup limited to 96 MiB (v1 memory controller), or skip."""
    root = Path("/sys/fs/cgroup/memory")
    if os.geteuid() != 0 or not (root / "memory.limit_in_bytes").exists():
        pytest.skip("needs root and a cgroup v1 memory controller to cage an OOM victim")
    cage = root / f"sentinel-test-{os.getpid()}"
    try:
        cage.mkdir()
        (cage / "memory.limit_in_bytes").write_text(str(96 * 1024 * 1024))
    except OSError as exc:
        pytest.skip(f"cannot create a memory cgroup: {exc}")
    yield cage
    for _ in range(100):  # the dead victim leaves the group asynchronously
        try:
            cage.rmdir()
            break
        except OSError:
            wait_for(lambda: not (cage / "cgroup.procs").read_text().strip(), 10, what="an empty cgroup")


@pytest.fixture
def launch() -> Iterator[processes.Launcher]:
    """``launch(argv, **popen_kwargs)``: a process in its own process group,
    the whole group SIGKILLed when the test ends, however it ends."""
    launcher = processes.Launcher()
    yield launcher
    launcher.kill_all()


@pytest.fixture
def bark() -> Iterator[FakeBark]:
    """A Bark server on 127.0.0.1 (``tests.fakes.bark``) that keeps every push it is sent."""
    with FakeBark() as fake:
        yield fake


@pytest.fixture
def daemon(tmp_path: Path, bark: FakeBark) -> Iterator[DaemonProcess]:
    """A real daemon, ready, under the unit's privileges (``tests.daemon_harness``), spool and
    state in ``tmp_path``, its one channel ``phone`` the ``bark`` fixture; stopped at the end.
    A module whose daemon differs (other settings, an in-process object) defines its own."""
    with DaemonProcess(tmp_path, {"phone": {"type": "bark", "url": bark.key_url}}) as proc:
        yield proc
