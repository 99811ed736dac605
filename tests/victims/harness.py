"""Starting victims and reading what they left in the spool, for tests.

    victim = Victim.watch(tmp_path, "finish").start()
    run_id = victim.ready()            # blocks until "READY <run_id>"
    code = victim.wait()
    final = victim.final()

Also used by the daemon tests. Standard library + pytest only.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, NoReturn, Optional, Sequence

import pytest

from sentinel.formats import spool
from sentinel.host.procid import ProcessIdentity
from tests.processes import kill_group
from tests.waiting import wait_for  # also re-exported for the tests that import it from here

ROOT = Path(__file__).resolve().parents[2]
VICTIMS = Path(__file__).resolve().parent
WATCH_VICTIM = VICTIMS / "watch_victim.py"
SWANLAB_VICTIM = VICTIMS / "swanlab_victim.py"

# SwanLab generations: (test id, env var naming that python; None = this interpreter).
SWANLAB_PYTHONS = (
    ("swanlab-latest", None),
    ("swanlab-0.7.20", "SENTINEL_TEST_PY_SWANLAB_0720"),
    ("swanlab-0.6.11", "SENTINEL_TEST_PY_SWANLAB_0611"),
)


def identity_of(proc: subprocess.Popen[bytes]) -> ProcessIdentity:
    """The identity of a just-started process, once /proc shows it."""
    return wait_for(lambda: ProcessIdentity.of(proc.pid), 10, what="the child in /proc")


def missing(reason: str) -> NoReturn:
    """Something a test needs is not here: skipped, but a failure under CI (whose
    set-up installs everything)."""
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def swanlab_python(env_var: Optional[str]) -> str:
    """The interpreter for one SwanLab generation (tests/run.py builds them all)."""
    if env_var is None:
        return sys.executable
    path = os.environ.get(env_var)
    if not (path and Path(path).exists()):
        pytest.fail(f"{env_var} is not set to a python with that SwanLab (tests/run.py sets it)")
    return path


def swanlab_params() -> list[Any]:
    return [pytest.param(env_var, id=name) for name, env_var in SWANLAB_PYTHONS]


def victim_env(tmp: Path, spool_dir: Path, extra: Optional[dict[str, str]] = None) -> dict[str, str]:
    env = dict(os.environ)
    for key in list(env):
        if key.startswith(("SWANLAB_", "SENTINEL_")) and not key.startswith("SENTINEL_TEST_"):
            del env[key]
    env.update(
        SENTINEL_SPOOL=str(spool_dir),
        HOME=str(tmp / "home"),
        SWANLAB_ROOT=str(tmp / "swanlab-root"),
        SWANLAB_LOG_DIR=str(tmp / "swanlog"),
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
        PYTHONDONTWRITEBYTECODE="1",
    )
    env.update(extra or {})
    return env


class Victim:
    """One victim process; stdout/stderr are collected by threads."""

    def __init__(self, python: str, script: Path, args: Sequence[str], tmp: Path,
                 spool_dir: Optional[Path] = None, env: Optional[dict[str, str]] = None,
                 preexec_fn: Optional[Callable[[], None]] = None) -> None:
        self.tmp = Path(tmp)
        self.spool = Path(spool_dir) if spool_dir is not None else self.tmp / "spool"
        self.argv = [python, str(script), *args]
        self.env = victim_env(self.tmp, self.spool, env)
        self.preexec_fn = preexec_fn
        self.proc: Optional[subprocess.Popen[str]] = None
        self.lines: queue.Queue[Optional[str]] = queue.Queue()
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self.run_id: Optional[str] = None
        self._pumps: list[threading.Thread] = []

    @classmethod
    def watch(cls, tmp: Path, *args: str, **kwargs: Any) -> Victim:
        return cls(sys.executable, WATCH_VICTIM, args, tmp, **kwargs)

    @classmethod
    def swanlab(cls, python: str, tmp: Path, *args: str, **kwargs: Any) -> Victim:
        return cls(python, SWANLAB_VICTIM, args, tmp, **kwargs)

    def start(self) -> Victim:
        (self.tmp / "home").mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            self.argv, cwd=str(self.tmp), env=self.env, text=True, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=self.preexec_fn,
            start_new_session=True,  # its own group: kill() takes whatever it started too
        )
        self._pumps = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self.stdout, True), daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stderr, self.stderr, False), daemon=True),
        ]
        for pump in self._pumps:
            pump.start()
        return self

    def _pump(self, stream: Any, sink: list[str], announce: bool) -> None:
        for line in stream:
            sink.append(line)
            if announce:
                self.lines.put(line.rstrip("\n"))
        if announce:
            self.lines.put(None)  # stdout closed

    def expect(self, word: str, timeout: float = 60.0) -> str:
        """Wait for a stdout line starting with ``word``; fail at once if the
        victim ends first (e.g. an import error at start), with its output."""
        assert self.proc is not None, "call start() first"
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {word!r} from the victim in {timeout} s; {self.output()}")
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                self.lines.put(None)  # a later expect() fails at once too
                code = self.wait()  # stdout is closed: the victim is exiting, its stderr complete
                raise AssertionError(f"victim exited with {code} before {word!r}; {self.output()}")
            if line.startswith(word):
                return line

    def ready(self, timeout: float = 60.0) -> str:
        self.run_id = self.expect("READY", timeout).split()[1]
        return self.run_id

    def wait(self, timeout: float = 60.0) -> int:
        assert self.proc is not None
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"victim did not exit within {timeout} s; {self.output()}") from None
        for pump in self._pumps:  # the pipes are closed now: the pumps end by themselves
            pump.join(10)
        return code

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL the victim and anything left in its process group."""
        if self.proc is None:
            return
        kill_group(self.proc.pid)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def output(self) -> str:
        return f"stdout:\n{''.join(self.stdout)[-4000:]}\nstderr:\n{''.join(self.stderr)[-4000:]}"

    # ------------------------------------------------------------ the spool

    @property
    def paths(self) -> spool.RunPaths:
        assert self.run_id is not None, "call ready() first"
        return spool.RunPaths(self.spool, self.run_id)

    def record(self) -> spool.RunRecord:
        return spool.read_run(self.paths.run)[0]

    def progress(self) -> spool.Progress:
        return spool.read_progress(self.paths.beat)

    def final(self) -> spool.FinalRecord:
        return spool.read_final(self.paths.final)

    def messages(self) -> list[spool.Message]:
        return [spool.read_message(p) for _, p in spool.list_messages(self.paths)]

    def __enter__(self) -> Victim:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.kill()


def spool_files(root: Path) -> list[Path]:
    return [p for p in Path(root).rglob("*") if p.is_file()]
