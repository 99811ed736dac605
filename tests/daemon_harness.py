"""A real daemon process for end-to-end tests, and ways to watch it.

    with DaemonProcess(tmp, channels={...}) as daemon:   # started, READY=1 seen
        ...
        daemon.stop()                                    # SIGTERM, clean exit

The daemon runs as its own process (``tests/daemon_victims/launch_daemon.py``)
with its own spool and state directory; readiness and shutdown are observed
through a real ``NOTIFY_SOCKET`` (sd_notify datagrams), never by sleeping.

Run by root, the daemon gets exactly the privileges systemd/sentinel.service
gives it (``tests/unit_caps.py``: its capability bounding set, no new
privileges), not full root: every feature that needs a privilege is tested
under the unit as shipped.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Optional

import yaml

from sentinel.channels.bark import render_bark
from sentinel.delivery.outbox import Outbox
from sentinel.formats import safe_json, spool
from sentinel.host.procid import ProcessIdentity
from sentinel.model.alerts import Alert, AlertKind
from tests.processes import kill_group
from tests.unit_caps import unavailable, unit_privileges
from tests.victims.harness import ROOT
from tests.waiting import wait_for

LAUNCHER = ROOT / "tests" / "daemon_victims" / "launch_daemon.py"
ZOMBIE_PARENT = ROOT / "tests" / "daemon_victims" / "zombie_parent.py"


class NotifySocket:
    """A datagram socket standing in for systemd's; collects sd_notify states."""

    def __init__(self) -> None:
        # AF_UNIX paths are short (108 bytes): a private directory under /tmp.
        self.dir = Path(tempfile.mkdtemp(prefix="sn-notify-"))
        self.path = self.dir / "notify"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.states: list[str] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while True:
            try:
                data = self.sock.recv(4096)
            except OSError:
                return
            with self._cond:
                self.states.append(data.decode("utf-8", "replace"))
                self._cond.notify_all()

    def wait_for(self, state: str, count: int = 1, timeout: float = 30.0) -> bool:
        """Whether ``state`` arrived ``count`` times within ``timeout`` (False if not)."""
        try:
            wait_for(lambda: self.states.count(state) >= count, timeout, what=state, condition=self._cond)
        except AssertionError:
            return False
        return True

    def close(self) -> None:
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class DaemonProcess:
    """The daemon under test: config written to ``tmp``, logs kept per start."""

    def __init__(self, tmp: Path, channels: dict[str, dict[str, Any]], *, spool: Optional[Path] = None,
                 state: Optional[Path] = None, daemon_env: Optional[dict[str, str]] = None,
                 **settings: Any) -> None:
        self.tmp = Path(tmp)
        self.daemon_env = dict(daemon_env or {})
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.spool = spool if spool is not None else self.tmp / "spool"
        self.state = state if state is not None else self.tmp / "state"
        self.config_path = self.tmp / "daemon.yaml"
        config = {"spool": str(self.spool), "state_dir": str(self.state), "channels": channels,
                  "rescan_interval": "2s", **settings}
        self.config_path.write_text(yaml.safe_dump(config))
        self.config_path.chmod(0o600)  # it holds channel secrets
        # A command the daemon runs under (its argv's head): as root, the unit's privileges.
        self.wrapper: list[str] = [] if unavailable() else unit_privileges().command()
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.notify: Optional[NotifySocket] = None
        self.starts = 0
        self.logs: list[Path] = []

    def start(self, wait_ready: bool = True) -> DaemonProcess:
        self.starts += 1
        self.notify = NotifySocket()
        log_path = self.tmp / f"daemon-{self.starts}.log"
        self.logs.append(log_path)
        env = dict(os.environ, PYTHONPATH=str(ROOT), NOTIFY_SOCKET=str(self.notify.path),
                   PYTHONUNBUFFERED="1", **self.daemon_env)
        env.pop("SENTINEL_SPOOL", None)
        with open(log_path, "wb") as log_file:
            argv = [*self.wrapper, sys.executable, str(LAUNCHER), str(self.config_path)]
            self.proc = subprocess.Popen(argv, env=env,
                                         stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        if wait_ready:
            self.ready()
        return self

    def ready(self, timeout: float = 30.0) -> None:
        assert self.notify is not None and self.proc is not None
        if not self.notify.wait_for("READY=1", timeout=timeout):
            raise AssertionError(f"daemon not ready (exit {self.proc.poll()}); log:\n{self.log()}")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait: the clean shutdown path."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self._close_notify()
        return code

    def kill(self) -> None:
        """SIGKILL: the daemon gets no chance to clean up."""
        assert self.proc is not None
        kill_group(self.proc.pid)
        self.proc.kill()
        self.proc.wait(30)
        self._close_notify()

    def _close_notify(self) -> None:
        if self.notify is not None:
            self.notify.close()
            self.notify = None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self.logs if p.exists())

    def wait_log(self, text: str, timeout: float = 30.0) -> None:
        wait_for(lambda: text in self.log(), timeout, what=f"{text!r} in the daemon's log")

    def journal(self, run_id: str) -> list[Alert]:
        """What the daemon decided about a run (read after it stopped: one owner at a time)."""
        assert not self.alive(), "read the journal only while the daemon is stopped"
        return Outbox(self.state / "outbox").journal(run_id)

    def dead_letters(self) -> list[Any]:
        assert not self.alive(), "read dead letters only while the daemon is stopped"
        return Outbox(self.state / "outbox").dead_letters()

    def __enter__(self) -> DaemonProcess:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: Any) -> None:
        if self.alive():
            self.kill()
        self._close_notify()


def hand_written_record(spool_dir: Path, pid: int, name: str, **fields: Any) -> tuple[spool.RunPaths, dict]:
    """The run record a recorder would write for live process ``pid`` (its
    directory made, the record not yet written), with ``fields`` over it."""
    ident = wait_for(lambda: ProcessIdentity.of(pid), 10, what=f"process {pid} in /proc")
    run_id = spool.new_run_id(pid)
    paths = spool.RunPaths(spool_dir, run_id)
    safe_json.make_private_dir(paths.dir)
    record = spool.RunRecord(
        run_id=run_id, pid=pid, start_ticks=ident.start_ticks, boot_id=ident.boot_id,
        hostname="here", uid=os.getuid(), user="tester", cmdline=["train.py"], cwd="/",
        started=time.time(), heartbeat_interval=10.0, name=name,
    ).to_dict()
    return paths, {**record, **fields}


def bark_title(kind: AlertKind, run_name: str, detail: Optional[str] = None,
               signal: Optional[str] = None, exit_code: Optional[int] = None, lang: str = "en") -> str:
    """The title the Bark channel gives an alert of ``kind`` about ``run_name``."""
    alert = Alert(alert_id="x", kind=kind, created=0.0, run_name=run_name, text="", detail=detail,
                  signal=signal, exit_code=exit_code)
    return render_bark(alert, lang).title


def titles(bark: Any) -> list[str]:
    return [push.get("title", "") for push in bark.pushes]


def wait_for_push(bark: Any, kind: AlertKind, run_name: str, timeout: float = 30.0,
                  detail: Optional[str] = None, signal: Optional[str] = None,
                  exit_code: Optional[int] = None, lang: str = "en") -> dict[str, Any]:
    """The first accepted Bark push of ``kind`` about ``run_name`` (``detail``,
    ``signal`` and ``exit_code`` matter where they change the headline: the
    OOM killer, a death the kernel named), in ``lang``."""
    title = bark_title(kind, run_name, detail, signal, exit_code, lang)

    def find() -> Optional[dict[str, Any]]:
        return next((p for p in bark.pushes if p.get("title") == title), None)

    try:
        return wait_for(find, timeout, what=f"a {kind.value} push for {run_name}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; pushes so far: {titles(bark)}") from None


PRETENDER = ("import sys\n"
             "open('/proc/self/comm', 'w').write('sentinel-daemon')\n"
             "print('named', flush=True)\n"
             "sys.stdin.read()\n")  # lives until its stdin closes


class PretendDaemon:
    """A real process named as the daemon names itself, and a ``daemon.json``
    naming it: what a training process sees while a daemon watches its spool."""

    def __init__(self, spool_dir: Path) -> None:
        self.spool = Path(spool_dir)
        self.proc: Optional[subprocess.Popen[str]] = None

    def __enter__(self) -> PretendDaemon:
        from sentinel.formats import safe_json, spool
        from sentinel.host.procid import ProcessIdentity

        self.proc = subprocess.Popen([sys.executable, "-c", PRETENDER], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None and self.proc.stdout.readline() == "named\n"
        me = ProcessIdentity.of(self.proc.pid)
        assert me is not None
        safe_json.make_private_dir(self.spool)
        safe_json.write_json(self.spool / spool.DAEMON_FILE,
                         spool.DaemonLiveness(me.pid, me.start_ticks, me.boot_id).to_dict())
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self.proc is not None
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(30)
