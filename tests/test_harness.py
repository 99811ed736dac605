"""The test suite's own machinery: the bounded wait, victims, process hygiene."""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import struct
import subprocess
import sys
import termios
import textwrap
import threading
import time
from pathlib import Path

import pytest

from tests import processes
from tests.fakes.server import SO_TIMESTAMPNS, kernel_arrival_ns, receive_stamps_on
from tests.processes import Launcher
from tests.victims.harness import ROOT, Victim
from tests.waiting import wait_for

# ---------------------------------------------------------------- wait_for


def test_wait_for_returns_the_predicates_value() -> None:
    answers = iter([None, 0, [], ["run-1"]])
    assert wait_for(lambda: next(answers), 30, what="a run") == ["run-1"]


def test_wait_for_fails_naming_what_it_waited_for() -> None:
    with pytest.raises(AssertionError, match=r"timed out after 0\.05 s waiting for the impossible"):
        wait_for(lambda: False, 0.05, what="the impossible")


def test_wait_for_on_a_condition_wakes_when_notified() -> None:
    condition = threading.Condition()
    items: list[str] = []

    def produce() -> None:
        with condition:
            items.append("item")
            condition.notify_all()

    producer = threading.Timer(0.01, produce)
    producer.start()
    try:
        assert wait_for(lambda: list(items), 30, what="an item", condition=condition) == ["item"]
    finally:
        producer.join()


# ---------------------------------------------------------------- Victim


def test_victim_dying_at_start_fails_expect_at_once_with_its_stderr(tmp_path: Path) -> None:
    script = tmp_path / "broken_victim.py"
    script.write_text("import no_such_module_for_sentinel_tests\n")
    with Victim(sys.executable, script, [], tmp_path).start() as victim, \
            pytest.raises(AssertionError) as info:
        victim.ready(timeout=60)
    message = str(info.value)
    assert "victim exited with 1 before 'READY'" in message  # not "no 'READY' ... in 60 s"
    assert "No module named 'no_such_module_for_sentinel_tests'" in message
    with pytest.raises(AssertionError, match="victim exited with 1 before 'DONE'"):
        victim.expect("DONE")  # asking again fails at once as well


def test_victim_kill_takes_its_process_group(tmp_path: Path) -> None:
    script = tmp_path / "parent_victim.py"
    script.write_text(textwrap.dedent("""
        import subprocess, sys
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
        print("CHILD", child.pid, flush=True)
        child.wait()
    """))
    with Victim(sys.executable, script, [], tmp_path).start() as victim:
        grandchild = int(victim.expect("CHILD").split()[1])
    # The grandchild is not ours to reap: it is gone or a zombie of init.
    wait_for(lambda: not _alive(grandchild), 30, what="the victim's child to die with it")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


# ---------------------------------------------------------------- processes


def test_processes_started_by_a_test_are_tracked_to_it(request: pytest.FixtureRequest,
                                                       launch: Launcher) -> None:
    proc = launch([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    found = wait_for(lambda: [p for p in processes.leftovers() if p.pid == proc.pid], 10,
                     what="the child among the session's processes")
    assert found[0].started_by == request.node.nodeid
    assert "sys.stdin.read()" in found[0].command


def test_launch_kills_the_whole_group_at_teardown() -> None:
    launcher = Launcher()
    wrapper = launcher([sys.executable, "-c", textwrap.dedent("""
        import subprocess, sys
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
        print(child.pid, flush=True)
        sys.stdin.read()
    """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    grandchild = int(wrapper.stdout.readline())
    launcher.kill_all()
    assert wrapper.returncode == -signal.SIGKILL
    wait_for(lambda: not _alive(grandchild), 30, what="the grandchild killed with its group")


IGNORING_PARENT = textwrap.dedent("""
    import signal, subprocess, sys
    from tests import processes
    processes.give_children_default_signals()
    mine = [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT)]
    assert mine == [signal.default_int_handler, signal.SIG_DFL, signal.SIG_DFL], mine
    assert signal.getsignal(signal.SIGHUP) not in (signal.SIG_DFL, signal.SIG_IGN)  # still not fatal here
    code = ("import signal; print([int(signal.getsignal(s)) for s in (1, 3, 15)],"
            " signal.getsignal(2).__name__, sorted(signal.pthread_sigmask(signal.SIG_BLOCK, [])))")
    sys.exit(subprocess.call([sys.executable, "-c", code]))
""")


def test_children_get_default_signals_when_the_suite_ignores_them() -> None:
    """As when the suite runs as a background job (SIGINT, SIGQUIT ignored)
    under nohup (SIGHUP ignored), with SIGTERM blocked."""
    def like_a_background_job() -> None:
        for signum in (signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})

    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-c", IGNORING_PARENT], env=env, capture_output=True, text=True,
                            timeout=60, preexec_fn=like_a_background_job)
    assert result.returncode == 0, result.stderr
    # SIG_DFL (0) for SIGHUP, SIGQUIT, SIGTERM; Python's own SIGINT handler; nothing blocked.
    assert result.stdout.split("\n")[0] == "[0, 0, 0] default_int_handler []"


# ---------------------------------------------------------------- the fakes' arrival stamp


def test_a_fakes_arrival_stamp_is_the_kernels_receive_time() -> None:
    """The latency benchmarks read a request's arrival off the fake: it is when
    the request reached the socket (the kernel's stamp, on the monotonic
    clock), not when the fake's Python got round to reading it. The request is
    sent, and acknowledged by the receiving kernel (so received, and stamped,
    before that); only after the clock is read again is the stamp asked for.
    (The kernel turns stamping on a moment after it is first asked for: the
    fakes wait for that once per process, ``receive_stamps_on``.)"""
    assert receive_stamps_on()
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        before = time.monotonic_ns()
        with socket.create_connection(server.getsockname()) as conn:
            accepted, _ = server.accept()
            with accepted:
                conn.sendall(b"POST /push HTTP/1.0\r\nContent-Length: 0\r\n\r\n")
                wait_for(lambda: unacknowledged_bytes(conn) == 0, 30, what="the request acknowledged")
                acknowledged = time.monotonic_ns()
                stamp = kernel_arrival_ns(accepted)
                assert accepted.recv(100).startswith(b"POST /push")  # peeked: still there to read
    assert before < stamp < acknowledged


def unacknowledged_bytes(conn: socket.socket) -> int:
    """Bytes sent on ``conn`` that its peer's kernel has not acknowledged yet (SIOCOUTQ)."""
    return int(struct.unpack("i", fcntl.ioctl(conn.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0])
