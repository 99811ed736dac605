"""Thread pidfds and the kernel's word on an ending: the pure table, the
run record's ``watch_threads`` field, and ``Liveness`` against real processes."""

from __future__ import annotations

import select
import signal
import subprocess
import sys
from typing import Iterator, Optional

import pytest

from sentinel.daemon.liveness import Exit, Liveness, Status
from sentinel.daemon.pidfd import thread_pidfds_supported
from sentinel.formats import spool
from sentinel.host.procid import ProcessIdentity, thread_start_ticks
from sentinel.model.alerts import Alert, AlertKind, from_run
from sentinel.model.endings import Reason
from sentinel.model.exit_status import Ending, ending_of, words
from sentinel.model.render import headline, summary
from tests.victims.harness import wait_for

# ------------------------------------------------------------ the table


@pytest.mark.parametrize("status, ending", [
    (signal.SIGKILL, Ending("killed", signal="SIGKILL")),
    (signal.SIGSEGV, Ending("native_crash", signal="SIGSEGV")),
    (signal.SIGSEGV | 0x80, Ending("native_crash", signal="SIGSEGV")),  # core dumped
    (signal.SIGABRT, Ending("native_crash", signal="SIGABRT")),
    (signal.SIGBUS, Ending("native_crash", signal="SIGBUS")),
    (signal.SIGTERM, Ending("terminated", signal="SIGTERM")),
    (signal.SIGHUP, Ending("signaled", signal="SIGHUP")),
    (3 << 8, Ending("exited", exit_code=3)),
    (0, Ending("exited", exit_code=0)),
])
def test_a_wait_status_names_its_ending(status: int, ending: Ending) -> None:
    assert ending_of(status) == ending


def _killed(status: Optional[int], reason: Optional[Reason] = None) -> Alert:
    """A kill alert about run "r", as the tracker builds it with the kernel's wait status."""
    record = spool.RunRecord.from_dict(_record(name="r"))
    return from_run("x", AlertKind.KILLED, record, now=0.0, reason=reason, kernel_status=status)


@pytest.mark.parametrize("status, en, zh", [
    (signal.SIGKILL, "Killed (SIGKILL): r", "进程被杀死（SIGKILL）: r"),
    (signal.SIGSEGV, "Crashed in native code (SIGSEGV): r", "原生代码崩溃（SIGSEGV）: r"),
    (signal.SIGTERM, "Terminated (SIGTERM): r", "被终止（SIGTERM）: r"),
    (3 << 8, "Exited with code 3: r", "退出码 3: r"),
])
def test_a_killed_alert_is_headed_with_the_kernel_s_word(status: int, en: str, zh: str) -> None:
    alert = _killed(status)
    assert (headline(alert, "en"), headline(alert, "zh")) == (en, zh)
    assert "no exit record" in summary(alert, "en")


def test_without_the_kernel_s_word_a_kill_reads_as_before() -> None:
    alert = _killed(None)
    assert headline(alert) == "Killed: r"
    assert summary(alert) == "killed (SIGKILL or crash of the interpreter; no exit record)"
    assert words(None, None, "en") is None


def test_the_oom_killer_is_still_named_over_the_signal() -> None:
    alert = _killed(signal.SIGKILL, Reason("oom_kernel", {"line": "Killed process 1"}))
    assert headline(alert) == "Killed by the OOM killer: r"


# ------------------------------------------------------------ the record field


def _record(**extra: object) -> dict:
    return {"v": spool.FORMAT_VERSION, "run_id": "20250101T000000-42-abcdef", "pid": 42, "start_ticks": 1,
            "boot_id": "b", "hostname": "h", "uid": 0, "user": "u", "cmdline": [], "cwd": "/",
            "started": 1.0, "heartbeat_interval": 10.0, **extra}


@pytest.mark.parametrize("value", [
    "1,2", [[1]], [[1, 2, 3]], [["1", 2]], [[True, 2]], [[0, 2]], [[1, -1]], [[1, 2.5]],
    [[n, 1] for n in range(1, 9)],
])
def test_a_malformed_watch_threads_field_is_read_as_empty_not_rejected(value: object) -> None:
    assert spool.RunRecord.from_dict(_record(watch_threads=value)).watch_threads == []


def test_watch_threads_round_trips() -> None:
    rec = spool.RunRecord.from_dict(_record(watch_threads=[[43, 100], [44, 101]]))
    assert spool.RunRecord.from_dict(rec.to_dict()).watch_threads == [[43, 100], [44, 101]]
    assert spool.RunRecord.from_dict(_record()).watch_threads == []


# ------------------------------------------------------------ Liveness with real threads

THREADED = """
import sys, threading
done = threading.Event()
say = threading.Lock()  # one whole line per thread: print() writes the text and its newline apart
def sub():
    with say:
        print(threading.get_native_id(), flush=True)
    done.wait()
for _ in range(2):
    threading.Thread(target=sub, daemon=True).start()
line = sys.stdin.readline()
if line.strip() == "end-threads":
    done.set()
    for t in threading.enumerate():
        if t is not threading.main_thread():
            t.join()
    print("ENDED", flush=True)
    sys.stdin.readline()
"""


@pytest.fixture
def threaded() -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen([sys.executable, "-c", THREADED], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    yield proc
    proc.kill()
    proc.wait(30)


@pytest.fixture
def liveness() -> Iterator[Liveness]:
    if not thread_pidfds_supported():
        pytest.skip("this kernel lacks PIDFD_THREAD or PIDFD_GET_INFO")
    epoll = select.epoll()
    live = Liveness(epoll, use_pidfd=True, use_threads=True)
    yield live
    live.close()
    epoll.close()


def _threads(proc: subprocess.Popen[str]) -> list[list[int]]:
    assert proc.stdout is not None
    tids = [int(proc.stdout.readline()) for _ in range(2)]
    found = []
    for tid in tids:
        ticks = thread_start_ticks(proc.pid, tid)
        assert ticks is not None
        found.append([tid, ticks])
    return found


def _next_exit(live: Liveness) -> Optional[Exit]:
    for fd, _ in live._epoll.poll(0.05):
        found = live.exit_of(fd)
        if found is not None:
            return found
    return None


def _watch(live: Liveness, proc: subprocess.Popen[str], threads: list[list[int]]) -> None:
    ident = ProcessIdentity.of(proc.pid)
    assert ident is not None
    assert live.watch("run", ident, threads) is Status.ALIVE


def test_a_kill_is_reported_once_with_its_signal(liveness: Liveness, threaded: subprocess.Popen[str]) -> None:
    _watch(liveness, threaded, _threads(threaded))
    assert liveness.watched_threads("run") == 2
    threaded.kill()
    found = wait_for(lambda: _next_exit(liveness), 10, what="the exit")
    assert found == Exit("run", signal.SIGKILL)
    assert not liveness.watching("run") and liveness.watched_threads("run") == 0
    assert _next_exit(liveness) is None  # nothing more about it


def test_threads_that_end_alone_are_let_go_and_the_process_still_reports(
        liveness: Liveness, threaded: subprocess.Popen[str]) -> None:
    _watch(liveness, threaded, _threads(threaded))
    assert threaded.stdin is not None and threaded.stdout is not None
    threaded.stdin.write("end-threads\n")
    threaded.stdin.flush()
    assert threaded.stdout.readline().strip() == "ENDED"
    wait_for(lambda: _next_exit(liveness) is None and liveness.watched_threads("run") == 0, 10,
             what="both thread pidfds to be let go")
    assert liveness.watching("run")
    threaded.kill()
    found = wait_for(lambda: _next_exit(liveness), 10, what="the exit")
    assert found == Exit("run", signal.SIGKILL)  # from /proc: the child is an unreaped zombie


def test_a_recorded_thread_with_another_start_time_is_not_watched(
        liveness: Liveness, threaded: subprocess.Popen[str]) -> None:
    threads = _threads(threaded)
    _watch(liveness, threaded, [[tid, ticks + 1] for tid, ticks in threads])
    assert liveness.watched_threads("run") == 0
    assert liveness.watching("run")  # the process pidfd remains


def test_a_thread_of_another_process_is_not_watched(
        liveness: Liveness, threaded: subprocess.Popen[str]) -> None:
    other = subprocess.Popen([sys.executable, "-c", THREADED], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
    try:
        _threads(threaded)
        _watch(liveness, threaded, _threads(other))
        assert liveness.watched_threads("run") == 0
    finally:
        other.kill()
        other.wait(30)
