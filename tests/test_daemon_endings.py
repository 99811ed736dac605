"""End to end: every way a process ends gives exactly one alert that names it.

Real victims die for real (SIGKILL, SIGSEGV, SIGABRT, SIGTERM, os._exit,
a clean finish with the process living on) under a real daemon, once with
the runs' sub-threads watched by thread pidfd and once with that switched
off (``SENTINEL_THREAD_PIDFDS=0``): both paths must say the same thing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Iterator, Optional

import pytest

from sentinel.daemon.pidfd import ENV_DISABLE, thread_pidfds_supported
from sentinel.host.procid import process_state
from sentinel.model.alerts import AlertKind
from tests.daemon_harness import ZOMBIE_PARENT, DaemonProcess, wait_for_push
from tests.fakes import FakeBark
from tests.victims.harness import Victim, wait_for

K = AlertKind
HEARTBEAT = "0.1"
THREADS_LOG = "watching runs' sub-threads too"
PROCESS_ONLY_LOG = "watching process pidfds only"


@pytest.fixture(params=["thread-pidfds", "process-pidfd-only"])
def daemon(request: pytest.FixtureRequest, tmp_path: Path, bark: FakeBark) -> Iterator[DaemonProcess]:
    """conftest's ``daemon``, once watching threads' pidfds and once the process's only."""
    threads = request.param == "thread-pidfds"
    if threads and not thread_pidfds_supported():
        pytest.skip("this kernel lacks PIDFD_THREAD or PIDFD_GET_INFO")
    env = {} if threads else {ENV_DISABLE: "0"}
    with DaemonProcess(tmp_path, {"phone": {"type": "bark", "url": bark.key_url}}, daemon_env=env) as proc:
        proc.wait_log(THREADS_LOG if threads else PROCESS_ONLY_LOG)
        yield proc


def victim(daemon: DaemonProcess, mode: str, name: str) -> Victim:
    return Victim.watch(daemon.tmp, mode, "--name", name, "--heartbeat", HEARTBEAT,
                        "--resume-file", str(daemon.tmp / f"go-{name}"), spool_dir=daemon.spool).start()


def pidfds_held(daemon: DaemonProcess) -> set[int]:
    """The pids and tids the daemon holds pidfds for (its /proc fdinfo says)."""
    assert daemon.proc is not None
    held = set()
    fdinfo = Path(f"/proc/{daemon.proc.pid}/fdinfo")
    for entry in fdinfo.iterdir():
        try:
            text = entry.read_text()
        except OSError:
            continue  # closed meanwhile
        held.update(int(line.split()[1]) for line in text.splitlines() if line.startswith("Pid:"))
    return held


def watched(daemon: DaemonProcess, v: Victim) -> None:
    """Wait until the daemon watches the victim's process and, if it uses them, its sub-threads."""
    wanted = {v.pid}
    if THREADS_LOG in daemon.log():
        wanted |= {tid for tid, _ in v.record().watch_threads}
    try:
        wait_for(lambda: wanted <= pidfds_held(daemon), 30, what=f"the daemon to watch {sorted(wanted)}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; it holds pidfds for {sorted(pidfds_held(daemon))}") from None


def only_alert(daemon: DaemonProcess, run_id: str) -> Optional[AlertKind]:
    daemon.stop()
    [alert] = daemon.journal(run_id)
    return alert.kind


def test_the_record_names_two_watched_sub_threads(daemon: DaemonProcess) -> None:
    with victim(daemon, "sleep-forever", "threads") as v:
        v.ready()
        v.expect("RUNNING")
        record = v.record()
        tids = {int(t) for t in os.listdir(f"/proc/{v.pid}/task")}
        v.kill()
    assert len(record.watch_threads) == 2
    assert {tid for tid, _ in record.watch_threads} <= tids - {v.pid}


@pytest.mark.parametrize("mode, name, signame, code", [
    ("sleep-forever", "nine", "SIGKILL", None),
    ("segfault", "segv", "SIGSEGV", None),
    ("abort", "abrt", "SIGABRT", None),
    ("os-exit-3", "exit3", None, 3),
])
def test_a_death_without_an_exit_record_is_named_by_the_kernel(
        daemon: DaemonProcess, bark: FakeBark, mode: str, name: str, signame: Optional[str],
        code: Optional[int]) -> None:
    with victim(daemon, mode, name) as v:
        run_id = v.ready()
        v.expect("RUNNING")
        watched(daemon, v)
        if mode == "sleep-forever":
            v.kill()
        else:
            (daemon.tmp / f"go-{name}").touch()
        v.wait()
        push = wait_for_push(bark, K.KILLED, name, signal=signame, exit_code=code)
    assert "no exit record" in push["body"]
    daemon.stop()
    [alert] = daemon.journal(run_id)
    assert alert.kind is K.KILLED and (alert.signal, alert.exit_code) == (signame, code)
    assert [p["title"] for p in bark.pushes].count(push["title"]) == 1


def test_sigterm_with_the_default_disposition_is_terminated(daemon: DaemonProcess, bark: FakeBark) -> None:
    with victim(daemon, "sleep-forever", "term") as v:
        run_id = v.ready()
        v.expect("RUNNING")
        watched(daemon, v)
        v.signal(signal.SIGTERM)
        assert v.wait() == -signal.SIGTERM
        wait_for_push(bark, K.TERMINATED, "term")
    daemon.stop()
    [alert] = daemon.journal(run_id)
    assert alert.kind is K.TERMINATED and alert.signal == "SIGTERM"


def test_a_clean_finish_with_the_process_living_on_is_finished(daemon: DaemonProcess, bark: FakeBark) -> None:
    with victim(daemon, "finish-then-live", "lives-on") as v:
        run_id = v.ready()
        v.expect("FINISHED")
        wait_for_push(bark, K.FINISHED, "lives-on")
        # The heartbeat thread has ended (a watched thread gone): still no second alert at the kill.
        wait_for(lambda: len(os.listdir(f"/proc/{v.pid}/task")) <= 2, 30, what="the heartbeat thread to end")
        v.kill()
        v.wait()
    assert only_alert(daemon, run_id) is K.FINISHED


def test_a_watched_thread_that_ends_alone_is_no_death(daemon: DaemonProcess, bark: FakeBark) -> None:
    with victim(daemon, "heartbeat-ends-alone", "alone") as v:
        run_id = v.ready()
        [heartbeat, _sentry] = [tid for tid, _ in v.record().watch_threads]
        watched(daemon, v)
        (daemon.tmp / "go-alone").touch()
        v.expect("ALONE")
        wait_for(lambda: not os.path.exists(f"/proc/{v.pid}/task/{heartbeat}"), 30,
                 what="the heartbeat thread to be gone")
        # The daemon has seen the thread end (it let go of that pidfd) before the kill.
        wait_for(lambda: heartbeat not in pidfds_held(daemon), 30, what="the heartbeat's pidfd to be closed")
        v.kill()
        wait_for_push(bark, K.KILLED, "alone", signal="SIGKILL")
    assert only_alert(daemon, run_id) is K.KILLED  # nothing was said when the thread ended


def test_exec_of_another_program_is_no_death(daemon: DaemonProcess, bark: FakeBark) -> None:
    with victim(daemon, "exec-sleep", "execs") as v:
        run_id = v.ready()
        v.expect("RUNNING")
        watched(daemon, v)
        (daemon.tmp / "go-execs").touch()
        wait_for(lambda: _comm(v.pid) == "sleep", 30, what="the exec")
        threads = {tid for tid, _ in v.record().watch_threads}
        # The exec ended the watched sub-threads; the daemon has let go of them before the kill.
        wait_for(lambda: not threads & pidfds_held(daemon), 30, what="the thread pidfds to be closed")
        v.kill()
        # An alert at the exec would have come first, with no signal: this title would never show.
        wait_for_push(bark, K.KILLED, "execs", signal="SIGKILL")
    assert only_alert(daemon, run_id) is K.KILLED


def test_a_forked_child_ending_is_not_the_run_ending(daemon: DaemonProcess, bark: FakeBark) -> None:
    with victim(daemon, "fork", "forks") as v:
        run_id = v.ready()
        assert v.wait() == 0
        wait_for_push(bark, K.FINISHED, "forks")
    assert only_alert(daemon, run_id) is K.FINISHED


def test_an_unreaped_zombie_is_named_too(daemon: DaemonProcess, bark: FakeBark) -> None:
    parent = subprocess.Popen(
        [sys.executable, str(ZOMBIE_PARENT), "--name", "zombie", "--heartbeat", HEARTBEAT],
        env=Victim.watch(daemon.tmp, "finish", spool_dir=daemon.spool).env,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert parent.stdout is not None and parent.stdin is not None
        run_id = parent.stdout.readline().split()[1]
        child = int(parent.stdout.readline().split()[1])
        wait_for(lambda: child in pidfds_held(daemon), 30, what="the daemon to watch the child")
        os.kill(child, signal.SIGKILL)
        wait_for_push(bark, K.KILLED, "zombie", signal="SIGKILL")
        assert process_state(child) == "Z"  # still unreaped when the alert went out
    finally:
        if parent.stdin is not None:
            parent.stdin.close()
        parent.wait(30)
    assert only_alert(daemon, run_id) is K.KILLED


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8") as f:
            return f.read().strip()
    except OSError:
        return ""
