"""The recorder never kills training on a full spool: a real, tiny tmpfs
holds the spool, filled until one page is left when the run starts.

Before, ``live.bin`` was made by ``ftruncate`` alone (a sparse file) and
mapped: the first store into the mapping needed a page the disk did not
have, and the kernel's answer is SIGBUS, inside ``sentinel.watch()``. Now
its space is reserved first (``posix_fallocate``); when that fails the run
goes on with heartbeats only, says so once, and the daemon still reports
how it ended.
"""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path
from typing import Iterator

import pytest

from sentinel.model.alerts import AlertKind
from tests.daemon_harness import DaemonProcess, wait_for_push
from tests.fakes import FakeBark
from tests.tmpfs import mounted_tmpfs
from tests.victims.harness import Victim
from tests.waiting import wait_for

PAGE = os.sysconf("SC_PAGE_SIZE")


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs, unmounted afterwards (root only)."""
    with mounted_tmpfs(tmp_path / "small", "256k") as where:
        yield where


def fill_leaving(where: Path, pages: int) -> Path:
    """Fill the filesystem, then give back ``pages`` pages."""
    filler = where / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        chunk = b"x" * PAGE
        while True:
            try:
                os.write(fd, chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                break
        size = os.fstat(fd).st_size
        os.ftruncate(fd, size - size % PAGE - pages * PAGE)
    finally:
        os.close(fd)
    st = os.statvfs(where)
    assert st.f_bavail * st.f_frsize == pages * PAGE, (st.f_bavail, st.f_frsize)
    return filler


def holds_pidfd(holder: int, pid: int) -> bool:
    """Whether process ``holder`` has a pidfd of ``pid`` open (from /proc/<holder>/fdinfo)."""
    for name in os.listdir(f"/proc/{holder}/fdinfo"):
        try:
            info = Path(f"/proc/{holder}/fdinfo/{name}").read_text()
        except OSError:
            continue
        if f"\nPid:\t{pid}\n" in info:
            return True
    return False


def test_a_spool_with_one_free_page_degrades_to_heartbeats(tmp_path: Path, small_tmpfs: Path) -> None:
    spool = small_tmpfs / "spool"
    spool.mkdir(mode=0o700)
    with FakeBark() as phone, DaemonProcess(tmp_path / "d", {"phone": {"type": "bark", "url": phone.key_url}},
                                            spool=spool) as daemon:
        fill_leaving(small_tmpfs, 1)  # the run record takes it
        with Victim.watch(tmp_path / "run", "sleep-forever", "--name", "cramped", "--heartbeat", "0.2",
                          spool_dir=spool) as run:
            run.start()
            run_id = run.ready()  # past sentinel.watch()
            run.expect("RUNNING")  # training goes on: steps are being recorded
            assert daemon.proc is not None
            wait_for(lambda: holds_pidfd(daemon.proc.pid, run.pid), 30, what="the daemon watching the run")
            assert not (spool / run_id / "live.bin").exists()  # no half-made mapping left behind
            run.kill()
            wait_for_push(phone, AlertKind.KILLED, "cramped", signal="SIGKILL")
        daemon.stop()
    said = "".join(run.stderr)
    assert said.count("heartbeats only") == 1, said
    assert "No space left on device" in said


if sys.platform != "linux":  # pragma: no cover
    pytest.skip("Linux only", allow_module_level=True)
