"""The daemon's parts on their own: liveness (pidfd and polling), kernel-log
parsing, spool event classification, log-once and the shared-spool rule."""

from __future__ import annotations

import os
import select
import signal
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from sentinel.daemon.liveness import Liveness, Status, pidfd_supported
from sentinel.daemon.oom import OomDetector, parse_dmesg, parse_kmsg_record, parse_oom_line
from sentinel.daemon.run_reader import ProblemLog, RunReader, is_shared_spool
from sentinel.daemon.spool_watcher import Change, SpoolEvent, Wakeup, classify
from sentinel.formats import safe_json, spool
from sentinel.host.procid import ProcessIdentity, process_state
from tests.victims.harness import identity_of
from tests.waiting import wait_for

RUN_ID = "20250101T000000-42-abcdef"


MODES = [pytest.param(True, id="pidfd"), pytest.param(False, id="polling")]


@pytest.fixture(params=MODES)
def liveness(request: pytest.FixtureRequest) -> Iterator[Liveness]:
    if request.param and not pidfd_supported():
        pytest.skip("pidfd_open is not available on this kernel")
    epoll = select.epoll()
    live = Liveness(epoll, use_pidfd=request.param)
    yield live
    live.close()
    epoll.close()


def _exited(live: Liveness, key: str) -> bool:
    """One bounded look for ``key``'s exit, the way the loop looks."""
    if live.use_pidfd:
        return any(live.exited(fd) == key for fd, _ in live._epoll.poll(0.05))
    return key in live.poll()


def test_exit_of_a_watched_process_is_reported_once(
    liveness: Liveness, child: subprocess.Popen[bytes]
) -> None:
    assert liveness.watch("run", identity_of(child)) is Status.ALIVE
    assert not _exited(liveness, "run")
    child.kill()
    child.wait()
    wait_for(lambda: _exited(liveness, "run"), 10, what="the exit notice")
    assert not liveness.watching("run")


def test_zombie_counts_as_dead(liveness: Liveness, child: subprocess.Popen[bytes]) -> None:
    ident = identity_of(child)
    assert liveness.watch("run", ident) is Status.ALIVE
    os.kill(child.pid, signal.SIGKILL)  # not reaped: a zombie
    wait_for(lambda: process_state(child.pid) == "Z", 10, what="a zombie")
    wait_for(lambda: _exited(liveness, "run"), 10, what="the exit notice")
    assert process_state(child.pid) == "Z"
    assert liveness.watch("again", ident) is Status.DEAD  # and a zombie is never watched as alive


def test_reused_pid_is_dead(liveness: Liveness, child: subprocess.Popen[bytes]) -> None:
    ident = identity_of(child)
    impostor = ProcessIdentity(ident.pid, ident.start_ticks + 1, ident.boot_id)
    assert liveness.watch("run", impostor) is Status.DEAD
    assert not liveness.watching("run")


def test_other_boot_is_reported_as_such(liveness: Liveness, child: subprocess.Popen[bytes]) -> None:
    ident = identity_of(child)
    old = ProcessIdentity(ident.pid, ident.start_ticks, "00000000-0000-4000-8000-000000000000")
    assert liveness.watch("run", old) is Status.OTHER_BOOT


def test_gone_pid_is_dead(liveness: Liveness, child: subprocess.Popen[bytes]) -> None:
    ident = identity_of(child)
    child.kill()
    child.wait()
    assert liveness.watch("run", ident) is Status.DEAD


# ------------------------------------------------------------ kernel log


def test_oom_lines_of_both_shapes() -> None:
    assert parse_oom_line("Out of memory: Killed process 1234 (python) total-vm:1kB")[0] == 1234
    assert parse_oom_line("Memory cgroup out of memory: Killed process 77 (python3) total-vm:1kB")[0] == 77
    line = ("oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,"
            "oom_memcg=/x,task_memcg=/x,task=python,pid=4321,uid=0")
    assert parse_oom_line(line)[0] == 4321
    assert parse_oom_line("EXT4-fs (vda): mounted filesystem") is None


def test_kmsg_record_and_dmesg_parsing() -> None:
    hit = parse_kmsg_record(b"3,812,5000000,-;Out of memory: Killed process 99 (python) x\n SUBSYSTEM=mem\n")
    assert hit is not None and hit.pid == 99 and hit.since_boot == 5.0
    assert parse_kmsg_record(b"6,1,2,-;all is well\n") is None
    assert parse_kmsg_record(b"garbage") is None
    hits = parse_dmesg("[   12.500000] Out of memory: Killed process 5 (a)\n[13.0] unrelated\n")
    assert [(h.pid, h.since_boot) for h in hits] == [(5, 12.5)]


def test_kill_logged_before_the_process_started_is_not_blamed(tmp_path: Path,
                                                              child: subprocess.Popen[bytes]) -> None:
    detector = OomDetector(kmsg_path=str(tmp_path / "no-kmsg"), use_dmesg=False)
    ident = identity_of(child)
    line = f"Out of memory: Killed process {ident.pid} (x)"
    detector._remember(parse_kmsg_record(f"3,1,1000,-;{line}".encode()))
    assert detector.cause(ident, None) is None  # logged 1 ms after boot: some earlier owner of the pid
    started = ident.start_ticks / os.sysconf("SC_CLK_TCK")
    usec = int((started + 5) * 1e6)
    detector._remember(parse_kmsg_record(f"3,2,{usec},-;{line}".encode()))
    assert "OOM killer" in (detector.cause(ident, None) or "")


# ------------------------------------------------------------ spool events


def test_classify_spool_paths(tmp_path: Path) -> None:
    run = tmp_path / RUN_ID
    assert classify(tmp_path, str(run)) == SpoolEvent(RUN_ID, Change.RUN)
    assert classify(tmp_path, str(run / "run.json")) == SpoolEvent(RUN_ID, Change.RUN)
    assert classify(tmp_path, str(run / "final.json")) == SpoolEvent(RUN_ID, Change.FINAL)
    assert classify(tmp_path, str(run / "beat.json")) == SpoolEvent(RUN_ID, Change.BEAT)
    assert classify(tmp_path, str(run / "msg" / "00000003.json")) == SpoolEvent(RUN_ID, Change.MESSAGE)
    assert classify(tmp_path, str(run / ".beat.json.1.ab.tmp")) is None
    assert classify(tmp_path, str(tmp_path / ".daemon" / "outbox")) is None
    assert classify(tmp_path, str(tmp_path / "daemon.json")) is None
    assert classify(tmp_path, "/elsewhere/x") is None


def test_wakeup_fd_turns_readable_and_clears() -> None:
    wakeup = Wakeup()
    poller = select.epoll()
    poller.register(wakeup.fd, select.EPOLLIN)
    try:
        assert poller.poll(0) == []
        wakeup.wake()
        wakeup.wake()
        assert len(poller.poll(0)) == 1
        wakeup.clear()
        assert poller.poll(0) == []
    finally:
        poller.close()
        wakeup.close()


# ------------------------------------------------------------ records


def test_problem_is_logged_once_per_version_of_a_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bad = tmp_path / "run.json"
    bad.write_text("{")
    problems = ProblemLog()
    assert problems.report(bad, "not valid JSON")
    assert not problems.report(bad, "not valid JSON")
    bad.write_text("{{")  # a new version of the file: worth saying again
    assert problems.report(bad, "not valid JSON")
    assert caplog.text.count("skipping") == 2


def test_shared_spool_detection(tmp_path: Path) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    assert not is_shared_spool(private)
    os.chmod(private, 0o1777)
    assert is_shared_spool(private)


def test_reader_refuses_a_record_naming_another_directory(tmp_path: Path) -> None:
    paths = spool.RunPaths(tmp_path, RUN_ID)
    safe_json.make_private_dir(paths.dir)
    other = "20250101T000000-43-abcdef"
    record = spool.RunRecord(run_id=other, pid=43, start_ticks=1, boot_id="b", hostname="h", uid=os.getuid(),
                             user="u", cmdline=[], cwd="/", started=1.0, heartbeat_interval=1.0)
    safe_json.write_json(paths.run, record.to_dict())
    assert RunReader(tmp_path, False, ProblemLog()).read_run(RUN_ID) is None


def _fake_dmesg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, output: str, status: int) -> Path:
    """A ``dmesg`` first on PATH that prints ``output``, exits ``status`` and counts its runs."""
    calls = tmp_path / "dmesg-calls"
    tool = tmp_path / "bin" / "dmesg"
    tool.parent.mkdir()
    tool.write_text(f"#!/bin/sh\necho run >> {calls}\ncat <<'EOF'\n{output}EOF\nexit {status}\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tool.parent}:{os.environ['PATH']}")
    return calls


def test_without_kmsg_one_dmesg_read_serves_a_loop_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        child: subprocess.Popen[bytes]) -> None:
    """A flood of deaths judged in one pass costs one dmesg process, not one per death."""
    ident = identity_of(child)
    since_boot = ident.start_ticks / os.sysconf("SC_CLK_TCK") + 5
    calls = _fake_dmesg(tmp_path, monkeypatch, f"[{since_boot:.6f}] Out of memory: Killed process "
                                                f"{ident.pid} (python)\n", 0)
    detector = OomDetector(kmsg_path=str(tmp_path / "no-kmsg"))
    for _ in range(50):
        assert "OOM killer" in (detector.cause(ident, None) or "")
    assert calls.read_text().count("run") == 1
    detector.new_pass()  # deaths seen from now on may be newer than that read
    assert "OOM killer" in (detector.cause(ident, None) or "")
    assert calls.read_text().count("run") == 2


def test_a_dmesg_that_cannot_read_the_log_is_not_asked_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             child: subprocess.Popen[bytes]) -> None:
    refused = "dmesg: read kernel buffer failed: Operation not permitted\n"
    calls = _fake_dmesg(tmp_path, monkeypatch, refused, 1)
    detector = OomDetector(kmsg_path=str(tmp_path / "no-kmsg"))
    ident = identity_of(child)
    for _ in range(3):
        assert detector.cause(ident, None) is None
        detector.new_pass()
    assert calls.read_text().count("run") == 1
