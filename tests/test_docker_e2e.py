"""Runs in real Docker containers, watched by a real daemon on the host.

Our own dockerd (tests/docker_harness.py); the containers bind-mount the
daemon's spool read-write and run either in their own PID namespace (Docker's
default: the recorder is pid 1 there and the daemon resolves it to its host
pid) or in the host's (``--pid=host``, also a supported deployment). Each test
checks what the phone gets: exactly one alert per ending, naming the container.
The reverse direction (the daemon in a container without ``--pid=host``)
must say "unwatchable", then "lost", and never "killed".
"""

from __future__ import annotations

import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import pytest

from sentinel.formats import spool
from sentinel.host.containers import identify
from sentinel.model.alerts import Alert, AlertKind
from tests.daemon_harness import DaemonProcess, wait_for_push
from tests.docker_harness import IMAGE, Container, Containers
from tests.fakes import FakeBark
from tests.victims.harness import SWANLAB_VICTIM, Victim, victim_env
from tests.waiting import wait_for

K = AlertKind
HEARTBEAT = "0.2"
PASSED_ENV = ("SENTINEL_SPOOL", "HOME", "SWANLAB_ROOT", "SWANLAB_LOG_DIR", "PYTHONPATH", "PYTHONUNBUFFERED",
              "PYTHONDONTWRITEBYTECODE")
OOM_VICTIM = Path(__file__).parent / "daemon_victims" / "oom_victim.py"
STUBBORN_RUN = Path(__file__).parent / "daemon_victims" / "stubborn_run.py"


@pytest.fixture
def daemon_unstarted(tmp_path: Path, bark: FakeBark) -> DaemonProcess:
    """conftest's ``daemon``, not started yet."""
    return DaemonProcess(tmp_path, {"phone": {"type": "bark", "url": bark.key_url}})


@pytest.fixture
def events_daemon(containers: Containers, tmp_path: Path, bark: FakeBark) -> Iterator[DaemonProcess]:
    """conftest's ``daemon``, following our dockerd's events (it tells ``docker stop`` from a kill)."""
    with DaemonProcess(tmp_path, {"phone": {"type": "bark", "url": bark.key_url}},
                       daemon_env={"DOCKER_HOST": f"unix://{containers.docker.socket}"}) as daemon:
        daemon.wait_log("following docker events")
        yield daemon


PID_MODES = [pytest.param(False, id="own-pidns"), pytest.param(True, id="pid-host")]


def in_container(containers: Containers, daemon: DaemonProcess, script: Path, *args: str,
                 memory: Optional[str] = None, pid_host: bool = False) -> tuple[Victim, Container]:
    """A victim script run by the venv's python inside a container (attached: its
    stdout is the docker client's), in its own PID namespace unless ``pid_host``."""
    python = str(Path(__file__).resolve().parent.parent / ".venv" / "bin" / "python")
    victim = Victim(python, script, args, daemon.tmp, spool_dir=daemon.spool)
    env = victim_env(daemon.tmp, daemon.spool)
    name = containers.name(script.stem)
    container = containers.adopt(name)
    victim.argv = containers.docker.run_argv(
        [python, str(script), *args], name=name, workdir=daemon.tmp, pid_host=pid_host, memory=memory,
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


@contextmanager
def sleeping_swanlab_run(containers: Containers, daemon: DaemonProcess, name: str,
                         pid_host: bool) -> Iterator[tuple[Container, str, str]]:
    """A SwanLab run sleeping in a container, running and admitted by ``daemon``: its
    container, run id and container id; the victim is killed when the block ends."""
    victim, container = in_container(containers, daemon, SWANLAB_VICTIM, "sleep-forever", "--name", name,
                                     "--heartbeat", HEARTBEAT, pid_host=pid_host)
    try:
        run_id = victim.ready()
        victim.expect("RUNNING")
        yield container, run_id, admitted_in(daemon, run_id, container)
    finally:
        victim.kill()


def test_a_container_from_the_empty_image_is_identified_by_its_cgroup(
        containers: Containers, daemon: DaemonProcess) -> None:
    victim, container = in_container(containers, daemon, SWANLAB_VICTIM, "sleep-forever", "--name", "probe",
                                     "--heartbeat", HEARTBEAT, pid_host=True)
    try:
        victim.ready()
        pid = containers.wait_running(container)
        found = identify(pid)
        assert found is not None and found.container_id == container.id and found.runtime == "docker"
        assert found.pod_uid == ""
        assert identify(daemon.proc.pid if daemon.proc else 1) is None  # the daemon itself is on the host
    finally:
        victim.kill()


@pytest.mark.parametrize("pid_host", PID_MODES)
def test_swanlab_run_in_a_container_killed_by_docker_kill(
        containers: Containers, daemon: DaemonProcess, bark: FakeBark, pid_host: bool) -> None:
    with sleeping_swanlab_run(containers, daemon, "boxed", pid_host) as (container, run_id, cid):
        assert bark.pushes == []  # alive: nothing said, and no false "killed" at start
        record = spool.read_run(spool.RunPaths(daemon.spool, run_id).run)[0]
        assert record.hostname == cid[:12]  # what the recorder sees: the container's own name
        assert record.pid == (containers.wait_running(container) if pid_host else 1)
        container.kill()
        assert container.wait() == 137
        push = wait_for_push(bark, K.KILLED, "boxed", signal="SIGKILL")
    assert f"container {cid[:12]}" in push["subtitle"]
    alert = only_alert(daemon, run_id)
    assert alert.kind is K.KILLED and alert.signal == "SIGKILL"
    assert alert.container["id"] == cid
    assert alert.hostname == socket.gethostname()  # the host's name, not the record's


@pytest.mark.parametrize("pid_host", PID_MODES)
@pytest.mark.parametrize(("mode", "kind"), [("finish", K.FINISHED), ("exception", K.CRASHED)])
def test_swanlab_run_in_a_container_ends_with_exactly_one_alert(containers: Containers, daemon: DaemonProcess,
        bark: FakeBark, mode: str, kind: AlertKind, pid_host: bool) -> None:
    name = f"boxed-{mode}"
    victim, container = in_container(containers, daemon, SWANLAB_VICTIM, mode, "--name", name,
                                     "--heartbeat", HEARTBEAT, pid_host=pid_host)
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


def test_a_container_killed_while_the_daemon_is_down_is_reported_once_at_restart(
        containers: Containers, daemon: DaemonProcess, bark: FakeBark) -> None:
    victim, container = in_container(containers, daemon, SWANLAB_VICTIM, "sleep-forever",
                                     "--name", "box-down", "--heartbeat", HEARTBEAT)
    try:
        run_id = victim.ready()
        admitted_in(daemon, run_id, container)
        daemon.stop()
        container.kill()
        assert container.wait() == 137
        daemon.start()
        wait_for_push(bark, K.KILLED, "box-down")
    finally:
        victim.kill()
    daemon.stop()
    daemon.start()  # a second restart says nothing more
    daemon.wait_log("start-up:")
    daemon.stop()
    assert [a.kind for a in daemon.journal(run_id)] == [K.KILLED]
    assert sum(1 for p in bark.pushes if "box-down" in p.get("title", "")) == 1


@pytest.mark.parametrize("pid_host", PID_MODES)
def test_docker_stop_of_a_recorded_run_is_one_terminated_alert(
        containers: Containers, daemon: DaemonProcess, bark: FakeBark, pid_host: bool) -> None:
    with sleeping_swanlab_run(containers, daemon, "stopped", pid_host) as (container, run_id, cid):
        container.stop(grace=30)  # SIGTERM: the recorder records it, the process ends at once
        # (as pid 1 of its namespace SIGTERM cannot kill it: the recorder exits with 143 itself)
        assert container.wait() == 143
        wait_for_push(bark, K.TERMINATED, "stopped")
    alert = only_alert(daemon, run_id)
    assert alert.kind is K.TERMINATED and alert.signal == "SIGTERM" and alert.container["id"] == cid


@pytest.mark.parametrize("pid_host", PID_MODES)
def test_docker_stop_past_the_grace_period_is_named_as_such(
        containers: Containers, events_daemon: DaemonProcess, bark: FakeBark, pid_host: bool) -> None:
    daemon = events_daemon
    victim, container = in_container(containers, daemon, STUBBORN_RUN, "stubborn", pid_host=pid_host)
    try:
        run_id = victim.ready()
        cid = admitted_in(daemon, run_id, container)
        container.stop(grace=1)  # SIGTERM (its handler shrugs), SIGKILL a second later
        assert container.wait() == 137
        victim.expect("SIGTERM ignored")
        wait_for(lambda: bark.pushes, 30, what="the alert")
    finally:
        victim.kill()
    daemon.stop()
    [alert] = daemon.journal(run_id)
    assert alert.kind is K.KILLED and alert.signal == "SIGKILL" and alert.container["id"] == cid
    assert alert.reason == "container_stopped"
    assert (alert.detail or "").startswith("stopped (SIGTERM, then SIGKILL after the grace period")
    assert alert.reason_args["after"] >= 1.0  # the grace period given to docker stop
    assert "stopped (SIGTERM, then SIGKILL" in bark.pushes[0]["title"] + bark.pushes[0]["body"]


def test_docker_kill_is_not_called_a_stop(
        containers: Containers, events_daemon: DaemonProcess, bark: FakeBark) -> None:
    daemon = events_daemon
    victim, container = in_container(containers, daemon, STUBBORN_RUN, "killed-box")
    try:
        run_id = victim.ready()
        admitted_in(daemon, run_id, container)
        container.kill()
        wait_for(lambda: bark.pushes, 30, what="the alert")
    finally:
        victim.kill()
    daemon.stop()
    [alert] = daemon.journal(run_id)
    assert alert.kind is K.KILLED and alert.signal == "SIGKILL" and alert.reason != "container_stopped"


@pytest.mark.parametrize("pid_host", PID_MODES)
def test_a_container_past_its_memory_limit_is_one_oom_alert_naming_the_container(
        containers: Containers, daemon: DaemonProcess, bark: FakeBark, pid_host: bool) -> None:
    go = daemon.tmp / "go"
    victim, container = in_container(containers, daemon, OOM_VICTIM, "boxed-hog", str(go), memory="64m",
                                     pid_host=pid_host)
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


# ------------------------------------------------------------ the daemon in a container


def daemon_in_container(containers: Containers, daemon: DaemonProcess, pid_host: bool) -> Container:
    """Make ``daemon`` start inside a container (host network: its Bark is on 127.0.0.1;
    host /tmp: its notify socket and directories are there)."""
    name = containers.name("daemon")
    argv = containers.docker.run_argv([], name=name, workdir=daemon.tmp, pid_host=pid_host,
                                      env=None, tmpfs_tmp=False)
    image = argv.index(IMAGE)
    extra = ["--network", "host", "--volume", "/tmp:/tmp:rw"]
    for key in ("NOTIFY_SOCKET", "PYTHONPATH", "PYTHONUNBUFFERED"):
        extra += ["--env", key]  # the value the client was given (DaemonProcess sets them)
    daemon.wrapper = [*argv[:image], *extra, IMAGE]
    return containers.adopt(name)


def test_a_daemon_in_a_container_without_pid_host_says_unwatchable_then_lost_never_killed(
        containers: Containers, daemon_unstarted: DaemonProcess, bark: FakeBark) -> None:
    daemon = daemon_unstarted
    box = daemon_in_container(containers, daemon, pid_host=False)
    with daemon:
        v = Victim.watch(daemon.tmp, "sleep-forever", "--name", "host-run", "--heartbeat", HEARTBEAT,
                         "--stall-timeout", "1", spool_dir=daemon.spool).start()
        with v:
            run_id = v.ready()
            daemon.wait_log(f"run {run_id}: pid {v.pid} of PID namespace")
            daemon.wait_log("unwatchable")
            assert bark.pushes == []  # no false "killed" at admission
            v.kill()
            wait_for_push(bark, K.LOST, "host-run")
        daemon.stop()
    assert box.wait() == 0 and box.inspect()["HostConfig"]["PidMode"] == ""  # it was the container
    assert [a.kind for a in daemon.journal(run_id)] == [K.LOST]
    assert not any("Killed" in p.get("title", "") for p in bark.pushes)


def test_a_daemon_in_a_container_with_pid_host_watches_host_runs(
        containers: Containers, daemon_unstarted: DaemonProcess, bark: FakeBark) -> None:
    daemon = daemon_unstarted
    box = daemon_in_container(containers, daemon, pid_host=True)
    with daemon:
        v = Victim.watch(daemon.tmp, "sleep-forever", "--name", "host-run", "--heartbeat", HEARTBEAT,
                         spool_dir=daemon.spool).start()
        with v:
            run_id = v.ready()
            v.expect("RUNNING")
            v.kill()
            wait_for(lambda: bark.pushes, 30, what="the kill alert")
        daemon.stop()
    assert box.wait() == 0 and box.inspect()["HostConfig"]["PidMode"] == "host"
    assert [a.kind for a in daemon.journal(run_id)] == [K.KILLED]
    assert "unwatchable" not in daemon.log()
