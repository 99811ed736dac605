"""`sentinel daemon` as systemd runs it: READY/WATCHDOG on a real notify
socket, journald-style logs, alerts for `sentinel run` jobs on the console."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from tests.cli_helpers import SENTINEL, kill_group, read_line, run_sentinel, sentinel_env
from tests.processes import Launcher
from tests.waiting import wait_for

PY = sys.executable


class DaemonUnderTest:
    def __init__(self, tmp_path: Path, args: list[str], journal: bool) -> None:
        self.spool = tmp_path / "spool"
        self.stdout_path = tmp_path / "daemon.out"
        self.stderr_path = tmp_path / "daemon.err"
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(tmp_path / "notify.sock"))
        self.notify.settimeout(60)  # a bound on a failing test, not a synchronisation
        self.env = sentinel_env(self.spool)
        self.stdout = open(self.stdout_path, "w")  # noqa: SIM115 -- closed in stop()
        self.stderr = open(self.stderr_path, "w")  # noqa: SIM115
        daemon_env = {**self.env, "NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "400000"}
        if journal:
            st = os.fstat(self.stderr.fileno())
            daemon_env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        self.proc = subprocess.Popen([*SENTINEL, "daemon", *args], env=daemon_env, stdout=self.stdout,
                                     stderr=self.stderr)

    def notifications(self, wanted: set[str]) -> set[str]:
        """Read notify datagrams until every state in ``wanted`` was seen."""
        seen: set[str] = set()
        for _ in range(1000):
            if wanted <= seen:
                return seen
            try:
                data = self.notify.recv(4096).decode()
            except socket.timeout:
                break
            seen.update(data.split("\n"))
        raise AssertionError(f"notify: saw {sorted(seen)}, wanted {sorted(wanted)}; "
                             f"stderr: {self.stderr_path.read_text()}")

    def output(self) -> str:
        return self.stdout_path.read_text()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=60)
        finally:
            self.stdout.close()
            self.stderr.close()
            self.notify.close()


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Iterator:
    daemons: list[DaemonUnderTest] = []

    def start(args: list[str], journal: bool = False) -> DaemonUnderTest:
        daemon = DaemonUnderTest(tmp_path, args, journal)
        daemons.append(daemon)
        return daemon

    yield start
    for daemon in daemons:
        if daemon.proc.poll() is None:
            daemon.proc.kill()
            daemon.proc.wait()


def test_embedded_default_daemon_alerts_on_the_console(daemon_factory, launch: Launcher) -> None:
    """The newcomer's path: no config at all, alerts printed where the daemon runs."""
    daemon = daemon_factory([], journal=True)
    daemon.notifications({"READY=1", "WATCHDOG=1"})

    job = ["run", "--name", "newcomer-job", "--", PY, "-c", "raise SystemExit(3)"]
    result = run_sentinel(job, daemon.env)
    assert result.returncode == 3
    assert "no sentinel daemon is watching" not in result.stderr
    wait_for(lambda: "newcomer-job" in daemon.output(), what="the crash alert on the console")
    assert "3" in daemon.output()

    # kill -9 of a watched job: no exit record, and still an alert.
    victim = launch([*SENTINEL, "run", "--name", "doomed-job", "--", PY, "-c",
                     "import time; print('ready', flush=True); time.sleep(3600)"],
                    env=daemon.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert read_line(victim.stdout) == b"ready\n"
    victim.kill()
    victim.wait(timeout=60)
    kill_group(victim.pid)  # the killed wrapper's child lives on, as it would for a user
    wait_for(lambda: "doomed-job" in daemon.output(), what="the kill alert on the console")

    assert daemon.stop() == 0
    log = daemon.stderr_path.read_text().splitlines()
    assert log, "the daemon logged nothing"
    # journald form: a priority prefix, no timestamp of our own.
    assert all(line.startswith("<") and line[1].isdigit() and line[2] == ">" for line in log), log
    assert any(line.startswith("<6>sentinel: config: embedded default") for line in log), log


def test_daemon_with_a_config_file(daemon_factory, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"""
spool: {tmp_path / "spool"}
alert_on: [crashed, killed]
channels:
  screen: {{type: console, stream: stdout}}
""")
    config.chmod(0o600)
    daemon = daemon_factory(["--config", str(config)])
    daemon.notifications({"READY=1"})
    finished = run_sentinel(["run", "--name", "quiet-success", "--", PY, "-c", "pass"], daemon.env)
    job = ["run", "--name", "loud-failure", "--", PY, "-c", "raise SystemExit(4)"]
    crashed = run_sentinel(job, daemon.env)
    assert (finished.returncode, crashed.returncode) == (0, 4)
    wait_for(lambda: "loud-failure" in daemon.output(), what="the crash alert")
    assert daemon.stop() == 0
    # `finished` is not in alert_on: journalled, never printed.
    assert "quiet-success" not in daemon.output()
    stderr = daemon.stderr_path.read_text()
    assert f"config: {config}" in stderr
    assert " INFO sentinel: " in stderr  # plain level names outside the journal


def test_log_format_json_is_one_object_a_line(tmp_path: Path) -> None:
    env = sentinel_env(tmp_path / "spool")
    proc = subprocess.Popen([*SENTINEL, "daemon", "--log-format", "json"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline() if proc.stderr else ""
        wait_for(lambda: (tmp_path / "spool" / "daemon.json").exists(), what="the daemon up")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=60)
    lines = [line, *rest.splitlines()]
    entries = [json.loads(text) for text in lines if text.strip()]
    assert entries and all(set(e) >= {"time", "level", "logger", "message"} for e in entries)
    assert any(e["message"] == "stopped" for e in entries)
