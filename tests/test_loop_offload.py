"""No unbounded work on the daemon's main loop: /proc scans for jobs' ranks
and archive pruning run on worker threads.

A real root daemon on a sticky 1777 spool, throw-away users, their real
processes. Mallory writes 150 job records beside 1,500 idle processes of
hers: finding each job's other ranks reads the environment of every one of
her processes. Alice's run is SIGKILLed meanwhile. ``strace`` follows the
daemon's threads and shows which thread read what: no
``/proc/<pid>/environ`` is read by the main loop's thread, the rank
finder's thread reads them, once per process and batch of jobs (not
150 x 1,500 times), and Alice's kill is alerted (orders and counts, not
durations).

Pruning: an archived run of Mallory's holds 100,000 files, past its
retention. ``strace`` holds every ``unlinkat`` of the daemon for a
millisecond, so deleting them takes minutes: Alice's run is SIGKILLed once
the prune has begun, and her alert is delivered while Mallory's files are
still being deleted (an order: a prune on the loop delivers it only after
the last file is gone); the main loop's thread unlinks none of them.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from sentinel.formats import spool as spool_format
from sentinel.model.alerts import AlertKind
from tests.daemon_harness import DaemonProcess, wait_for_push
from tests.fakes import FakeBark
from tests.user_victims import user_run
from tests.users import become, home_for, make_shared_spool, shared_dir
from tests.victims.harness import Victim
from tests.waiting import wait_for

USER_PYTHON = "/usr/bin/python3"
JOB_FLOOD = Path(__file__).parent / "daemon_victims" / "job_flood.py"
JOBS, IDLE = 150, 1500
ENVIRON_OPEN = re.compile(r"^(\d+)\s+openat\([^\"]*\"/proc/\d+/environ\"")
UNLINK = re.compile(r"^(\d+)\s+unlinkat\(")
ARCHIVED_FILES = 100_000
UNLINK_DELAY_US = 1000  # strace holds each unlinkat this long: the prune lasts > 100 s


@pytest.fixture
def shared() -> Iterator[Path]:
    if not os.access(USER_PYTHON, os.X_OK):
        pytest.skip(f"{USER_PYTHON} is needed to run as another user")
    if shutil.which("strace") is None:
        pytest.skip("strace is needed to see which thread reads /proc")
    with shared_dir() as path:
        yield path


def traced(pid: int) -> bool:
    """Every thread of ``pid`` has a tracer attached."""
    tasks = os.listdir(f"/proc/{pid}/task")
    for task in tasks:
        status = Path(f"/proc/{pid}/task/{task}/status").read_text()
        if re.search(r"^TracerPid:\s+0$", status, re.M):
            return False
    return True


@contextmanager
def strace_attached(pid: int, trace: Path, *options: str) -> Iterator[None]:
    """strace on every thread of ``pid`` (``options``: what it traces), writing ``trace``;
    detached (SIGINT) when the block ends, the process going on."""
    tracer = subprocess.Popen(["strace", "-f", "-qq", *options, "-e", "signal=none",
                               "-o", str(trace), "-p", str(pid)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: traced(pid), 30, what="strace attached to every daemon thread")
        yield
    finally:
        tracer.send_signal(signal.SIGINT)
        tracer.wait(30)


def environ_reads(trace: Path, pattern: re.Pattern[str] = ENVIRON_OPEN) -> dict[int, int]:
    """tid -> how many /proc/<pid>/environ it opened (or other calls ``pattern`` matches)."""
    counts: dict[int, int] = {}
    for line in trace.read_text(errors="replace").splitlines():
        found = pattern.match(line)
        if found:
            tid = int(found.group(1))
            counts[tid] = counts.get(tid, 0) + 1
    return counts


def test_job_rank_scans_run_off_the_loop_while_another_users_kill_is_alerted(
        tmp_path: Path, shared: Path, mallory: int, alice: int) -> None:
    spool = make_shared_spool(shared)
    trace = tmp_path / "strace.out"
    phone = FakeBark()
    with phone, DaemonProcess(tmp_path / "d", {"phone": {"type": "bark", "url": phone.key_url}},
                              spool=spool) as daemon:
        assert daemon.proc is not None
        main_tid = daemon.proc.pid
        assert b"python" in Path(f"/proc/{main_tid}/cmdline").read_bytes()
        with strace_attached(main_tid, trace, "-e", "trace=openat"), \
                user_run(shared, spool, alice, "sleep-forever", "--name", "victim") as victim:
            victim.ready()
            victim.expect("RUNNING")
            with Victim(USER_PYTHON, JOB_FLOOD, [str(spool), str(JOBS), str(IDLE)],
                        home_for(shared, mallory), spool_dir=spool,
                        preexec_fn=become(mallory)).start() as flood:
                flood.ready(timeout=120)
                victim.kill()
                wait_for_push(phone, AlertKind.KILLED, "victim", signal="SIGKILL")
                # Mallory's jobs were all looked into: at least one environ read per idle process.
                wait_for(lambda: sum(n for tid, n in environ_reads(trace).items()
                                     if tid != main_tid) >= IDLE, 120,
                         what="the rank finder's scans of Mallory's processes")
        daemon.stop()
    reads = environ_reads(trace)
    assert reads.get(main_tid, 0) == 0, reads  # never on the loop
    off_loop = sum(n for tid, n in reads.items() if tid != main_tid)
    # Shared per batch of jobs: a few reads per process, not one per process and job.
    assert IDLE <= off_loop < JOBS * IDLE // 10, off_loop
    assert "Traceback" not in daemon.log()


def entries(path: Path) -> int:
    try:
        return len(os.listdir(path))
    except FileNotFoundError:
        return 0


def test_an_archive_of_100k_files_is_pruned_off_the_loop_while_another_users_kill_is_alerted(
        tmp_path: Path, shared: Path, mallory: int, alice: int) -> None:
    spool = make_shared_spool(shared)
    trace = tmp_path / "strace.out"
    big = tmp_path / "big"  # one of Mallory's runs left 100k tiny files
    big.mkdir()
    for n in range(ARCHIVED_FILES):
        fd = os.open(big / f"f{n}", os.O_CREAT | os.O_WRONLY, 0o600)
        os.fchown(fd, mallory, mallory)
        os.close(fd)
    os.chown(big, mallory, mallory)
    phone = FakeBark()
    with phone, DaemonProcess(tmp_path / "d", {"phone": {"type": "bark", "url": phone.key_url}},
                              spool=spool, retention="1h") as daemon:
        assert daemon.proc is not None
        main_tid = daemon.proc.pid
        with strace_attached(main_tid, trace, "-e", "trace=unlinkat",
                             "-e", f"inject=unlinkat:delay_enter={UNLINK_DELAY_US}"), \
                user_run(shared, spool, alice, "sleep-forever", "--name", "victim") as victim:
            victim.ready()
            victim.expect("RUNNING")
            archive = daemon.state / "archive"
            archive.mkdir(mode=0o700, exist_ok=True)
            archived = archive / spool_format.new_run_id()
            big.rename(archived)
            os.utime(archived, (1.0, 1.0))  # archived long ago: pruned when the next rescan ends
            wait_for(lambda: entries(archived) < ARCHIVED_FILES, 60, what="the prune begun")
            victim.kill()
            wait_for_push(phone, AlertKind.KILLED, "victim", signal="SIGKILL")
            left = entries(archived)
            assert left > 0, "the prune ended before the alert: the test proves nothing"
        # strace detached: the prune goes on at full speed
        wait_for(lambda: not archived.exists(), 120, what="the old archive pruned")
        daemon.stop()
    assert left < ARCHIVED_FILES  # the alert came while the prune was under way
    unlinks = environ_reads(trace, UNLINK)
    assert unlinks.get(main_tid, 0) < 1000, unlinks  # the loop's own few (its outbox), not the tree
    assert sum(n for tid, n in unlinks.items() if tid != main_tid) >= ARCHIVED_FILES - left, unlinks
    assert "Traceback" not in daemon.log()


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
