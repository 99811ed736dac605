"""`sentinel run -- CMD`: the wrapper knows how its child ended and says so."""

from __future__ import annotations

import fcntl
import os
import resource
import select
import shlex
import signal
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from sentinel.formats import spool
from tests.cli_helpers import (
    SENTINEL,
    final_of,
    only_run,
    read_line,
    run_sentinel,
    sentinel_env,
)
from tests.processes import Launcher
from tests.waiting import wait_for

PY = sys.executable
# A child that says when it is ready, then waits to be signalled.
WAITER = "import time; print('ready', flush=True); time.sleep(3600)"


def no_core_dumps() -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


@pytest.fixture
def spool_path(tmp_path: Path) -> Path:
    return tmp_path / "spool"


def run(spool_path: Path, *command: str, name: str = "job") -> subprocess.CompletedProcess:
    return run_sentinel(["run", "--name", name, "--", *command], sentinel_env(spool_path),
                        preexec_fn=no_core_dumps, cwd=spool_path.parent)


def test_success_is_finished(spool_path: Path) -> None:
    result = run(spool_path, PY, "-c", "print('hello from the job')", name="hello")
    assert result.returncode == 0, result.stderr
    assert "hello from the job" in result.stdout  # the child's output is its own
    paths = only_run(spool_path)
    record, _ = spool.read_run(paths.run)
    assert record.name == "hello"
    assert record.source == "run"
    assert shlex.split(record.labels["command"]) == [PY, "-c", "print('hello from the job')"]
    final = final_of(paths)
    assert final is not None and final.state == "finished" and final.exit_code == 0
    assert spool.read_progress(paths.beat).beat >= record.started


def test_wrapper_pid_is_the_watched_process(spool_path: Path, launch: Launcher) -> None:
    proc = launch([*SENTINEL, "run", "--", PY, "-c", WAITER], env=sentinel_env(spool_path),
                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert read_line(proc.stdout) == b"ready\n"
    paths = wait_for(lambda: spool.list_run_ids(spool_path) and only_run(spool_path), what="run record")
    record, _ = spool.read_run(paths.run)
    assert record.pid == proc.pid
    assert final_of(paths) is None  # still running


def test_exit_code_is_crashed_with_the_code(spool_path: Path) -> None:
    result = run(spool_path, PY, "-c", "import sys; sys.exit(3)")
    assert result.returncode == 3
    final = final_of(only_run(spool_path))
    assert final.state == "crashed"
    assert final.exit_code == 3
    assert final.signal is None
    assert "exited with code 3" in final.error


@pytest.mark.parametrize("signame,state,status", [
    ("SIGKILL", "killed", 128 + 9),
    ("SIGSEGV", "crashed", 128 + 11),
    ("SIGTERM", "terminated", 128 + 15),
    ("SIGUSR1", "terminated", 128 + 10),
])
def test_death_by_signal_is_recorded_with_the_signal(spool_path: Path, signame: str, state: str,
                                                     status: int) -> None:
    code = f"import os, signal; os.kill(os.getpid(), signal.{signame})"
    result = run(spool_path, PY, "-c", code)
    assert result.returncode == status
    final = final_of(only_run(spool_path))
    assert (final.state, final.signal, final.exit_code) == (state, signame, None)
    assert signame in final.error


def test_command_not_found(spool_path: Path) -> None:
    result = run(spool_path, "no-such-command-for-sentinel-tests")
    assert result.returncode == 127
    assert "no-such-command-for-sentinel-tests: command not found" in result.stderr
    final = final_of(only_run(spool_path))
    assert (final.state, final.exit_code) == ("crashed", 127)


def test_no_command_is_a_usage_error(spool_path: Path) -> None:
    result = run_sentinel(["run", "--name", "x", "--"], sentinel_env(spool_path))
    assert result.returncode == 2
    assert "no command given" in result.stderr
    assert not spool.list_run_ids(spool_path)


@pytest.mark.parametrize("sig,state,status", [
    (signal.SIGTERM, "terminated", 128 + 15),
    (signal.SIGINT, "aborted", 128 + 2),
])
def test_signals_to_the_wrapper_are_forwarded(spool_path: Path, launch: Launcher, sig: int, state: str,
                                              status: int) -> None:
    proc = launch([*SENTINEL, "run", "--", PY, "-c", WAITER], env=sentinel_env(spool_path),
                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert read_line(proc.stdout) == b"ready\n"
    proc.send_signal(sig)
    assert proc.wait(timeout=60) == status
    final = final_of(only_run(spool_path))
    assert (final.state, final.signal) == (state, signal.Signals(sig).name)


CHILD_LOGGING_SIGNALS = """
import signal, sys
log = open(sys.argv[1], "a", buffering=1)
def on_signal(signum, frame):
    log.write(signal.Signals(signum).name + "\\n")
    if signum == signal.SIGTERM:
        sys.exit(0)
signal.signal(signal.SIGINT, on_signal)
signal.signal(signal.SIGTERM, on_signal)
print("ready", flush=True)
while True:
    signal.pause()
"""


def test_ctrl_c_on_the_terminal_reaches_the_child_once(spool_path: Path, tmp_path: Path,
                                                         launch: Launcher) -> None:
    """^C on a terminal signals the whole foreground process group: the child
    has it already, so the wrapper must not send a second one. A SIGTERM sent
    afterwards by a process is forwarded; the child's log shows the order."""
    log = tmp_path / "signals.log"
    master, slave = os.openpty()

    def own_terminal() -> None:  # runs in the new session: the pty becomes its terminal
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = launch([*SENTINEL, "run", "--", PY, "-c", CHILD_LOGGING_SIGNALS, str(log)],
                  env=sentinel_env(spool_path), stdin=slave, stdout=subprocess.PIPE,
                  stderr=subprocess.DEVNULL, preexec_fn=own_terminal)  # a new session: the pty's
    os.close(slave)
    try:
        assert read_line(proc.stdout) == b"ready\n"
        os.write(master, b"\x03")  # the terminal's interrupt character
        wait_for(lambda: log.exists() and "SIGINT" in log.read_text(), what="the child's SIGINT")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        os.close(master)
    assert log.read_text().split() == ["SIGINT", "SIGTERM"]
    assert final_of(only_run(spool_path)).state == "finished"


def test_channels_named_on_the_command_line_are_recorded(spool_path: Path) -> None:
    # No daemon watching: the names are checked against the config file the user can read.
    config = spool_path.parent / "channels.yaml"
    config.write_text("channels:\n  phone: {type: console}\n  ops: {type: console}\n")
    result = run_sentinel(["run", "--channel", "phone", "--channel", "ops", "--", PY, "-c", "pass"],
                          sentinel_env(spool_path, SENTINEL_CONFIG=str(config)))
    assert result.returncode == 0, result.stderr
    record, _ = spool.read_run(only_run(spool_path).run)
    assert record.channels == ["phone", "ops"]
    assert record.name == shlex.join([PY, "-c", "pass"])  # no --name: the command


CRASHING = ("import os, sys; print('tty' if os.isatty(2) else 'no tty', flush=True); "
            "print('Traceback (most recent call last):', file=sys.stderr); "
            "print('RuntimeError: CUDA out of memory', file=sys.stderr); sys.exit(3)")


def test_a_crashed_childs_stderr_is_relayed_and_its_tail_kept(spool_path: Path) -> None:
    result = run(spool_path, PY, "-c", CRASHING)
    assert result.returncode == 3
    assert result.stdout == "no tty\n"  # stderr is a pipe here: the child gets a pipe
    assert "RuntimeError: CUDA out of memory" in result.stderr  # still shown where it went
    final = final_of(only_run(spool_path))
    assert final.error.splitlines()[0] == "the command exited with code 3"
    assert final.error.splitlines()[-1] == "RuntimeError: CUDA out of memory"  # the alert's summary


def test_a_terminal_on_stderr_stays_a_terminal_for_the_child(spool_path: Path, launch: Launcher) -> None:
    master, slave = os.openpty()
    proc = launch([*SENTINEL, "run", "--", PY, "-c", CRASHING], env=sentinel_env(spool_path),
                  stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    seen = b""
    try:
        assert read_line(proc.stdout) == b"tty\n"
        assert proc.wait(timeout=60) == 3
        while b"CUDA out of memory" not in seen:  # relayed to our terminal
            assert select.select([master], [], [], 30)[0], f"nothing more on the terminal after {seen!r}"
            seen += os.read(master, 4096)
    finally:
        os.close(master)
    final = final_of(only_run(spool_path))
    assert final.error.splitlines()[-1] == "RuntimeError: CUDA out of memory"


def test_a_finished_child_keeps_no_error(spool_path: Path) -> None:
    result = run(spool_path, PY, "-c", "import sys; print('just a warning', file=sys.stderr)")
    assert result.returncode == 0 and "just a warning" in result.stderr
    final = final_of(only_run(spool_path))
    assert final.state == "finished" and final.error is None


# A trainer under a shell that does not exec it: it says its pid, then waits.
# ``IGNORE`` makes it ignore SIGTERM and SIGHUP (a worker that will not stop).
TRAINER = ("import os, signal, sys, time\n"
           "if 'IGNORE' in sys.argv:\n"
           "    signal.signal(signal.SIGTERM, signal.SIG_IGN); signal.signal(signal.SIGHUP, signal.SIG_IGN)\n"
           "print(os.getpid(), flush=True)\n"
           "time.sleep(3600)\n")


def dies(pid: int) -> int:
    """A pidfd of live ``pid`` (readable once it has ended)."""
    return os.pidfd_open(pid)


def ended(pidfd: int, timeout: float = 60.0) -> bool:
    try:
        return bool(select.select([pidfd], [], [], timeout)[0])
    finally:
        os.close(pidfd)


@pytest.mark.parametrize("ignore", [False, True], ids=["stops-on-sigterm", "ignores-sigterm"])
def test_stopping_the_wrapper_takes_the_whole_tree_down(spool_path: Path, launch: Launcher,
                                                        ignore: bool) -> None:
    """``sentinel run -- sh -c 'python train.py; ...'``: SIGTERM kills the shell; the trainer,
    orphaned, is the wrapper's (a subreaper) to stop, not left running unwatched."""
    script = shlex.join([PY, "-c", TRAINER, *(["IGNORE"] if ignore else [])]) + "; echo after"
    proc = launch([*SENTINEL, "run", "--", "sh", "-c", script], env=sentinel_env(spool_path),
                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    trainer = int(read_line(proc.stdout))
    watch = dies(trainer)
    assert f"PPid:\t{proc.pid}\n" not in Path(f"/proc/{trainer}/status").read_text()  # the shell's child
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    assert ended(watch, timeout=0), "the trainer outlived the wrapper"
    final = final_of(only_run(spool_path))
    assert (final.state, final.signal) == ("terminated", "SIGTERM")
    assert proc.stderr is not None
    assert f"stopped 1 process(es) the command left running (pids {trainer})" in proc.stderr.read().decode()


def test_a_background_process_left_by_a_finished_command_is_stopped(spool_path: Path) -> None:
    # The shell starts the trainer in the background, prints its pid once it runs, and exits 0.
    result = run(spool_path, "sh", "-c", f"{shlex.join([PY, '-c', TRAINER])} > pid & "
                 "while [ ! -s pid ]; do sleep 0.05; done; cat pid", name="bg")
    assert result.returncode == 0, result.stderr
    trainer = int(result.stdout.split()[-1])
    assert not Path(f"/proc/{trainer}").exists()  # stopped and reaped by the wrapper
    assert f"stopped 1 process(es) the command left running (pids {trainer})" in result.stderr
    final = final_of(only_run(spool_path))
    assert final.state == "finished"


def test_sigkill_of_the_wrapper_reaches_only_its_direct_child(spool_path: Path, launch: Launcher) -> None:
    """What the kernel allows: PDEATHSIG kills the shell, the trainer under it lives on (the
    daemon names it in the run's alert: tests/test_survivors.py)."""
    script = shlex.join([PY, "-c", TRAINER]) + "; echo after"
    proc = launch([*SENTINEL, "run", "--", "sh", "-c", script], env=sentinel_env(spool_path),
                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    trainer = int(read_line(proc.stdout))
    watch = dies(trainer)
    proc.kill()
    proc.wait(60)
    try:
        assert not ended(os.dup(watch), timeout=0)
        assert f"PPid:\t{proc.pid}\n" not in Path(f"/proc/{trainer}/status").read_text()
    finally:
        os.kill(trainer, signal.SIGKILL)
        ended(watch)
