"""A real Docker for tests: our own dockerd, an empty image, the host's Python bind-mounted.

    docker = DockerDaemon(Path(tempfile.mkdtemp(prefix="sn-dk-"))).start()   # or the fixture
    container = docker.run(["python", "-c", "..."], name="x", pid_host=True)
    container.kill(); container.wait()
    docker.close()   # every container, the daemon, its directories

The dockerd is Debian's ``docker.io`` (``/usr/sbin/dockerd``) with its own
socket, data root, exec root and pidfile, ``--iptables=false --bridge=none``
(it touches no network of the host), started once per test session by the
``docker`` fixture. No registry is reachable: the image is imported from an
empty tarball and every container gets the host's ``/usr``, ``/lib``,
``/lib64``, ``/root/.pyenv``, the checkout and the victims' virtual
environments bind-mounted read-only, a tmpfs ``/tmp`` and ``--network none``;
the test's own directory (the spool) is bind-mounted read-write at the same
path. Tests run containers through ``containers`` (a fixture), which removes
every one it started when the test ends, however it ends.

Without root, a dockerd or a docker client the tests skip; under CI=true they
fail instead (tests/run.py installs ``docker.io`` as root).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import pytest

from tests.victims.harness import ROOT, missing
from tests.waiting import wait_for

IMAGE = "sentinel-empty"
DOCKERD_CANDIDATES = ("/usr/sbin/dockerd", "/usr/bin/dockerd")
CLIENT_CANDIDATES = ("/usr/local/bin/docker", "/usr/bin/docker")
READ_ONLY = ["/usr", "/lib", "/lib64", "/root/.pyenv"]
START_TIMEOUT = 60.0


def _first(paths: Sequence[str], name: str) -> Optional[str]:
    for path in paths:
        if os.access(path, os.X_OK):
            return path
    return shutil.which(name)


def venv_dirs() -> list[str]:
    """The checkout's virtual environments as real paths (some are symlinks to shared ones)."""
    found = []
    for name in (".venv", ".venv-swanlab-0.7.20", ".venv-swanlab-0.6.11"):
        path = ROOT / name
        if path.exists():
            found.append(os.path.realpath(path))
    return found


class Container:
    def __init__(self, docker: DockerDaemon, name: str) -> None:
        self.docker = docker
        self.name = name

    def inspect(self) -> dict[str, Any]:
        out = self.docker.client("inspect", self.name, capture=True)
        data: list[dict[str, Any]] = json.loads(out)
        return data[0]

    @property
    def id(self) -> str:
        return str(self.inspect()["Id"])

    @property
    def host_pid(self) -> int:
        """Its first process, as the host numbers it (0 once it stopped)."""
        return int(self.inspect()["State"]["Pid"])

    def kill(self, signame: str = "KILL") -> None:
        self.docker.client("kill", "--signal", signame, self.name)

    def stop(self, grace: int) -> None:
        self.docker.client("stop", "--time", str(grace), self.name)

    def wait(self) -> int:
        """Its exit code, once it has stopped (bounded by the client's own timeout)."""
        return int(self.docker.client("wait", self.name, capture=True).strip())

    def logs(self) -> str:
        return self.docker.client("logs", self.name, capture=True, stderr=True)

    def remove(self) -> None:
        self.docker.client("rm", "--force", "--volumes", self.name, check=False)


class DockerDaemon:
    """One dockerd of our own; ``close`` leaves nothing behind."""

    def __init__(self, root: Path) -> None:
        self.root = root  # short: a Unix socket path has room for 108 bytes
        self.socket = root / "docker.sock"
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.log_path = root / "dockerd.log"
        dockerd = _first(DOCKERD_CANDIDATES, "dockerd")
        client = _first(CLIENT_CANDIDATES, "docker")
        if dockerd is None or client is None:
            raise RuntimeError("no dockerd or docker client (Debian: apt-get install docker.io)")
        self.dockerd, self.docker = dockerd, client

    def start(self) -> DockerDaemon:
        argv = [self.dockerd, "--host", f"unix://{self.socket}", "--data-root", str(self.root / "data"),
                "--exec-root", str(self.root / "exec"), "--pidfile", str(self.root / "dockerd.pid"),
                "--iptables=false", "--ip-masq=false", "--bridge=none"]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while True:  # bounded: START_TIMEOUT
            if self.proc.poll() is not None:
                raise RuntimeError(f"dockerd exited with {self.proc.returncode}: {self.log()[-2000:]}")
            if self.socket.exists() and self.client("version", check=False, capture=True):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"dockerd not answering after {START_TIMEOUT} s: {self.log()[-2000:]}")
            time.sleep(0.1)  # polling a daemon we do not control; no event to wait on
        self._import_image()
        return self

    def _import_image(self) -> None:
        with tempfile.TemporaryFile() as empty:
            subprocess.run(["tar", "-cf", "-", "-T", "/dev/null"], stdout=empty, check=True)
            empty.seek(0)
            subprocess.run([self.docker, "-H", f"unix://{self.socket}", "import", "-", IMAGE], stdin=empty,
                           stdout=subprocess.DEVNULL, check=True, timeout=60)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def client(self, *args: str, check: bool = True, capture: bool = False, stderr: bool = False,
               timeout: float = 120.0) -> str:
        result = subprocess.run([self.docker, "-H", f"unix://{self.socket}", *args], capture_output=True,
                                text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed ({result.returncode}): {result.stderr}")
        if result.returncode != 0:
            return ""
        return result.stdout + (result.stderr if stderr else "") if capture else "ok"

    def run_argv(self, command: Sequence[str], *, name: str, workdir: Path,
                 env: Optional[dict[str, str]] = None, pid_host: bool = False, memory: Optional[str] = None,
                 detach: bool = False, tmpfs_tmp: bool = True) -> list[str]:
        """The ``docker run`` command line of a container (attached unless ``detach``)."""
        argv = [self.docker, "-H", f"unix://{self.socket}", "run", "--name", name,
                "--workdir", str(workdir), "--label", "sentinel-test=1"]
        if tmpfs_tmp:
            argv += ["--network", "none", "--tmpfs", "/tmp"]
        if detach:
            argv.append("--detach")
        if pid_host:
            argv.append("--pid=host")
        if memory:
            argv += ["--memory", memory, "--memory-swap", memory]  # no swap: the limit is the limit
        for path in [*READ_ONLY, str(ROOT), *venv_dirs()]:
            if os.path.exists(path):
                argv += ["--volume", f"{path}:{path}:ro"]
        argv += ["--volume", f"{workdir}:{workdir}:rw"]
        for key, value in (env or {}).items():
            argv += ["--env", f"{key}={value}"]
        return [*argv, IMAGE, *command]

    def remove_all(self) -> None:
        names = self.client("ps", "--all", "--quiet", "--filter", "label=sentinel-test=1", capture=True,
                            check=False).split()
        if names:
            self.client("rm", "--force", "--volumes", *names, check=False)

    def close(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(Exception):
                self.remove_all()
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)  # stops its containerd and shims too
                try:
                    self.proc.wait(60)
                except subprocess.TimeoutExpired:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait()
            self.proc = None
        _unmount_under(self.root)
        shutil.rmtree(self.root, ignore_errors=True)


def _unmount_under(root: Path) -> None:
    """Mounts dockerd left under ``root`` (its overlay and shm mounts), deepest first."""
    prefix = str(root) + "/"
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            points = [line.split()[4] for line in f if len(line.split()) > 4]
    except OSError:
        return
    for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)


class Containers:
    """The containers one test started; all removed when it ends."""

    def __init__(self, docker: DockerDaemon) -> None:
        self.docker = docker
        self.started: list[Container] = []
        self._serial = 0

    def name(self, stem: str) -> str:
        self._serial += 1
        return f"sn-{stem}-{os.getpid()}-{self._serial}"

    def adopt(self, name: str) -> Container:
        container = Container(self.docker, name)
        self.started.append(container)
        return container

    def wait_running(self, container: Container, timeout: float = 60.0) -> int:
        """Its host pid once it runs."""
        return wait_for(lambda: _running_pid(container), timeout, what=f"container {container.name} running")

    def remove_all(self) -> None:
        for container in self.started:
            container.remove()
        self.started.clear()


def _running_pid(container: Container) -> Optional[int]:
    try:
        state = container.inspect()["State"]
    except (AssertionError, IndexError, ValueError):
        return None
    return int(state["Pid"]) if state.get("Running") and state.get("Pid") else None


# ------------------------------------------------------------ fixtures


@pytest.fixture(scope="session")
def docker() -> Iterator[DockerDaemon]:
    """Our own dockerd for the session, or skip (fail under CI=true)."""
    if os.geteuid() != 0:
        missing("real Docker needs root (dockerd)")
    root = Path(tempfile.mkdtemp(prefix="sn-dk-"))
    try:
        daemon = DockerDaemon(root)
    except RuntimeError as exc:
        shutil.rmtree(root, ignore_errors=True)
        missing(str(exc))
    try:
        daemon.start()
    except (RuntimeError, subprocess.SubprocessError, OSError) as exc:
        daemon.close()
        missing(f"cannot start a dockerd here: {exc}")
    try:
        yield daemon
    finally:
        daemon.close()


@pytest.fixture
def containers(docker: DockerDaemon) -> Iterator[Containers]:
    made = Containers(docker)
    try:
        yield made
    finally:
        made.remove_all()
