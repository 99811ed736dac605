"""Runs in real Docker containers, watched by a real daemon on the host.

Our own dockerd (tests/docker_harness.py); the containers share the host's
PID namespace (``--pid=host``, a supported deployment: the recorder's pid is
the daemon's) and bind-mount the daemon's spool read-write. Each test checks
what the phone gets: exactly one alert per ending, naming the container.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Iterator, Optional

import pytest

from sentinel import spool
from sentinel.alerts import Alert, AlertKind
from sentinel.containers import identify
from tests.daemon_harness import DaemonProcess, wait_for_push
from tests.docker_harness import Container, Containers
from tests.fakes import FakeBark
from tests.victims.harness import SWANLAB_VICTIM, Victim, victim_env

K = AlertKind
HEARTBEAT = "0.2"
PASSED_ENV = ("SENTINEL_SPOOL", "HOME", "SWANLAB_ROOT", "SWANLAB_LOG_DIR", "PYTHONPATH", "PYTHONUNBUFFERED",
              "PYTHONDONTWRITEBYTECODE")
OOM_VICTIM = Path(__file__).parent / "daemon_victims" / "oom_victim.py"


@pytest.fixture
def bark() -> Iterator[FakeBark]:
    with FakeBark() as fake:
        yield fake


@pytest.fixture
def daemon(tmp_path: Path, bark: FakeBark) -> Iterator[DaemonProcess]:
    with DaemonProcess(tmp_path, {"phone": {"type": "bark", "url": bark.key_url}}) as proc:
        yield proc


def in_container(containers: Containers, daemon: DaemonProcess, script: Path, *args: str,
                 memory: Optional[str] = None) -> tuple[Victim, Container]:
    """A victim script run by the venv's python inside a container (attached: its
    stdout is the docker client's), sharing the host's PID namespace."""
    python = str(Path(__file__).resolve().parent.parent / ".venv" / "bin" / "python")
    victim = Victim(python, script, args, daemon.tmp, spool_dir=daemon.spool)
    env = victim_env(daemon.tmp, daemon.spool)
    name = containers.name(script.stem)
    container = containers.adopt(name)
    victim.argv = containers.docker.run_argv(
        [python, str(script), *args], name=name, workdir=daemon.tmp, pid_host=True, memory=memory,
        env={key: env[key] for key in PASSED_ENV})
    (daemon.tmp / "home").mkdir(parents=True, exist_ok=True)
    return victim.start(), container


def only_alert(daemon: DaemonProcess, run_id: str) -> Alert:
    daemon.stop()
    alerts = daemon.journal(run_id)
    assert len(alerts) == 1, [a.kind for a in alerts]
    return alerts[0]


def admitted_in(daemon: DaemonProcess, run_id: str, container: Container) -> str:
    """The container's id, once the daemon logged it tracks the run in it."""
    cid = container.id
    daemon.wait_log(f"run {run_id} is in container {cid[:12]} (docker)")
    return cid


def test_a_container_from_the_empty_image_is_identified_by_its_cgroup(
        containers: Containers, daemon: DaemonProcess) -> None:
    victim, container = in_container(containers, daemon, SWANLAB_VICTIM, "sleep-forever", "--name", "probe",
                                     "--heartbeat", HEARTBEAT)
    try:
        victim.ready()
        pid = containers.wait_running(container)
        found = identify(pid)
        assert found is not None and found.container_id == container.id and found.runtime == "docker"
        assert found.pod_uid == ""
        assert identify(daemon.proc.pid if daemon.proc else 1) is None  # the daemon itself is on the host
    finally:
        victim.kill()


def test_swanlab_run_in_a_container_killed_by_docker_kill(
        containers: Containers, daemon: DaemonProcess, bark: FakeBark) -> None:
    victim, container = in_container(containers, daemon, SWANLAB_VICTIM, "sleep-forever", "--name", "boxed",
                                     "--heartbeat", HEARTBEAT)
    try:
        run_id = victim.ready()
        victim.expect("RUNNING")
        cid = admitted_in(daemon, run_id, container)
        assert bark.pushes == []  # alive: nothing said, and no false "killed" at start
        record = spool.read_run(spool.RunPaths(daemon.spool, run_id).run)[0]
        assert record.hostname == cid[:12]  # what the recorder sees: the container's own name
        container.kill()
        assert container.wait() == 137
        push = wait_for_push(bark, K.KILLED, "boxed", signal="SIGKILL")
    finally:
        victim.kill()
    assert f"container {cid[:12]}" in push["subtitle"]
    alert = only_alert(daemon, run_id)
    assert alert.kind is K.KILLED and alert.signal == "SIGKILL"
    assert alert.container["id"] == cid
    assert alert.hostname == socket.gethostname()  # the host's name, not the record's


@pytest.mark.parametrize(("mode", "kind"), [("finish", K.FINISHED), ("exception", K.CRASHED)])
def test_swanlab_run_in_a_container_ends_with_exactly_one_alert(
        containers: Containers, daemon: DaemonProcess, bark: FakeBark, mode: str, kind: AlertKind) -> None:
    name = f"boxed-{mode}"
    victim, container = in_container(containers, daemon, SWANLAB_VICTIM, mode, "--name", name,
                                     "--heartbeat", HEARTBEAT)
    try:
        run_id = victim.ready()
        victim.wait()
        wait_for_push(bark, kind, name)
    finally:
        victim.kill()
    alert = only_alert(daemon, run_id)
    assert alert.kind is kind
    if kind is K.CRASHED:
        assert "RuntimeError" in (alert.error or "")


def test_docker_stop_of_a_recorded_run_is_one_terminated_alert(
        containers: Containers, daemon: DaemonProcess, bark: FakeBark) -> None:
    victim, container = in_container(containers, daemon, SWANLAB_VICTIM, "sleep-forever", "--name", "stopped",
                                     "--heartbeat", HEARTBEAT)
    try:
        run_id = victim.ready()
        victim.expect("RUNNING")
        cid = admitted_in(daemon, run_id, container)
        container.stop(grace=30)  # SIGTERM: the recorder records it and the process ends by it
        wait_for_push(bark, K.TERMINATED, "stopped")
    finally:
        victim.kill()
    alert = only_alert(daemon, run_id)
    assert alert.kind is K.TERMINATED and alert.signal == "SIGTERM" and alert.container["id"] == cid


def test_a_container_past_its_memory_limit_is_one_oom_alert_naming_the_container(
        containers: Containers, daemon: DaemonProcess, bark: FakeBark) -> None:
    go = daemon.tmp / "go"
    victim, container = in_container(containers, daemon, OOM_VICTIM, "boxed-hog", str(go), memory="64m")
    try:
        run_id = victim.ready()
        cid = admitted_in(daemon, run_id, container)
        go.touch()
        assert container.wait() == 137
        assert container.inspect()["State"]["OOMKilled"] is True
        push = wait_for_push(bark, K.KILLED, "boxed-hog", detail="OOM killer")
    finally:
        victim.kill()
    assert f"container {cid[:12]}" in push["subtitle"]
    alert = only_alert(daemon, run_id)
    assert "OOM killer" in (alert.detail or "") and alert.container["id"] == cid
