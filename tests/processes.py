"""The processes tests start: default signals, their own group, none left behind.

- ``give_children_default_signals()`` (called once, in the pytest process):
  a signal ignored by whoever started the suite would stay ignored in every
  process the tests start (dispositions are inherited over fork and exec),
  so a SIGINT test would wait out its timeout. SIGINT gets Python's usual
  handler, SIGHUP a handler that ignores it (a handler, unlike SIG_IGN, is
  reset by exec: nohup still protects the suite, its children get the
  default), the others SIG_DFL; the signal mask is emptied.
- ``Launcher`` (the ``launch`` fixture): ``Popen`` in a new session, and the
  whole process group SIGKILLed at teardown, whatever path the test took.
- ``mark_session()`` / ``started_by()`` / ``kill_leftovers()``: every
  process started during the session inherits ``SENTINEL_TEST_SESSION`` and
  ``SENTINEL_TEST_STARTED_BY`` (the running test's id); at the end, any
  such process still alive is found through /proc, killed and reported.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Iterator, Optional, Sequence

from tests.waiting import wait_for

SESSION_VAR = "SENTINEL_TEST_SESSION"
STARTED_BY_VAR = "SENTINEL_TEST_STARTED_BY"
DEFAULT_SIGNALS = (signal.SIGQUIT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM,
                   signal.SIGCHLD, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU)
LEFTOVER_GRACE = 5.0  # seconds for just-killed processes to finish dying


def _ignore(signum: int, frame: Optional[FrameType]) -> None:
    """SIG_IGN for this process only: exec resets a handler to the default."""


def give_children_default_signals() -> None:
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if signal.getsignal(signal.SIGHUP) == signal.SIG_IGN:
        signal.signal(signal.SIGHUP, _ignore)
    for signum in DEFAULT_SIGNALS:
        if signal.getsignal(signum) == signal.SIG_IGN:
            signal.signal(signum, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, ())


def kill_group(pgid: int) -> None:
    """SIGKILL what is left of a process group (a test's orphans), if anything."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


class Launcher:
    """Starts processes, each leading its own process group, and kills them all."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[Any]] = []

    def __call__(self, argv: Sequence[str], **popen_kwargs: Any) -> subprocess.Popen[Any]:
        popen_kwargs.setdefault("start_new_session", True)
        proc: subprocess.Popen[Any] = subprocess.Popen(list(argv), **popen_kwargs)
        self.procs.append(proc)
        return proc

    def kill_all(self) -> None:
        for proc in self.procs:
            kill_group(proc.pid)  # the process and whatever it left in its group
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
        self.procs.clear()


# ---------------------------------------------------------------- leftovers


def mark_session() -> None:
    os.environ[SESSION_VAR] = f"{os.getpid()}-{uuid.uuid4().hex}"
    os.environ[STARTED_BY_VAR] = "(outside any test)"


@contextlib.contextmanager
def started_by(test_id: str) -> Iterator[None]:
    os.environ[STARTED_BY_VAR] = test_id
    try:
        yield
    finally:
        os.environ[STARTED_BY_VAR] = "(outside any test)"


@dataclass
class Leftover:
    pid: int
    started_by: str
    command: str


def _environ(pid_dir: Path) -> dict[str, str]:
    raw = (pid_dir / "environ").read_bytes()
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in pairs}


def leftovers() -> list[Leftover]:
    """Live processes (not zombies) started during this session, but not this process."""
    session = os.environ.get(SESSION_VAR)
    found: list[Leftover] = []
    if not session:
        return found
    for pid_dir in Path("/proc").iterdir():
        if not pid_dir.name.isdigit() or int(pid_dir.name) == os.getpid():
            continue
        try:
            env = _environ(pid_dir)
            if env.get(SESSION_VAR) != session:
                continue
            state = (pid_dir / "stat").read_text().rsplit(")", 1)[1].split()[0]
            command = (pid_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError):  # gone meanwhile, or not ours to read
            continue
        if state != "Z":
            found.append(Leftover(int(pid_dir.name), env.get(STARTED_BY_VAR, "?"), command.strip()))
    return found


def kill_leftovers() -> list[Leftover]:
    """What was still running once the grace period ended; all of it SIGKILLed."""
    try:
        wait_for(lambda: not leftovers(), LEFTOVER_GRACE, what="the tests' processes to end")
        return []
    except AssertionError:
        pass
    remaining = leftovers()
    for leftover in remaining:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(leftover.pid, signal.SIGKILL)
    return remaining
