"""One daemon per spool, whoever starts it, and no name in a shared spool a
user can plant to silence the daemon: real daemons, a real throw-away user.

Two daemons with two state directories (a system daemon and a user's
``sentinel-user.service``) used to watch one spool side by side and both
alert; a directory planted as ``daemon.json`` made every recorder believe no
daemon ran. Things planted as the spool's lock file are moved out of the way.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterator

import pytest

from sentinel import daemon_file, spool
from sentinel.spool_lock import LOCK_FILE
from tests.daemon_harness import DaemonProcess
from tests.users import as_user, make_shared_spool, shared_dir


@pytest.fixture
def shared() -> Iterator[Path]:
    with shared_dir() as path:
        yield path



def test_a_second_daemon_on_the_same_spool_refuses_clearly(tmp_path: Path, shared: Path) -> None:
    spool_path = make_shared_spool(shared)
    with DaemonProcess(tmp_path / "system", {}, spool=spool_path) as first:
        second = DaemonProcess(tmp_path / "user", {}, spool=spool_path).start(wait_ready=False)
        assert second.proc is not None
        assert second.proc.wait(60) == 1
        assert f"another daemon already watches {spool_path} (it holds {spool_path / LOCK_FILE})" \
            in second.log(), second.log()
        assert first.alive() and daemon_file.daemon_alive(spool_path)
        first.stop()
    # The lock goes with its daemon: the next one starts.
    with DaemonProcess(tmp_path / "user", {}, spool=spool_path) as after:
        assert daemon_file.daemon_alive(spool_path)
        after.stop()


@pytest.mark.parametrize("planted", ["directory", "symlink", "fifo", "stale file"])
def test_a_planted_lock_or_daemon_json_does_not_stop_or_hide_the_daemon(
        tmp_path: Path, shared: Path, mallory: int, planted: str) -> None:
    """Mallory plants ``.daemon.lock`` (a directory with a file in it, a
    symlink to a file of root's, a FIFO, a file nobody holds) and a non-empty
    ``daemon.json`` directory before the daemon starts: it starts, holds its
    own lock, and recorders see it watching; what she planted is moved aside,
    never followed, never opened."""
    spool_path = make_shared_spool(shared)
    lock = str(spool_path / LOCK_FILE)
    precious = shared / "precious"
    precious.write_text("root's\n")
    plant = {"directory": ["sh", "-c", f"mkdir {lock} && touch {lock}/x"],
             "symlink": ["ln", "-s", str(precious), lock],
             "fifo": ["mkfifo", lock],
             "stale file": ["touch", lock]}[planted]
    as_user(mallory, *plant)
    json_dir = spool_path / spool.DAEMON_FILE
    as_user(mallory, "sh", "-c", f"mkdir {json_dir} && touch {json_dir}/x")
    precious_before = precious.stat()
    with DaemonProcess(tmp_path / "d", {}, spool=spool_path) as daemon:
        assert daemon_file.daemon_alive(spool_path)  # what every recorder asks
        st = os.lstat(lock)
        assert st.st_uid == os.geteuid() and st.st_mode & 0o7777 == 0o600 and os.path.isfile(lock)
        daemon.stop()
    log = daemon.log()
    assert f"{spool_path / spool.DAEMON_FILE} was a directory of " in log, log
    assert f"{lock} was " in log and "moved out of the way" in log, log
    assert precious.read_text() == "root's\n"
    assert precious.stat().st_mtime_ns == precious_before.st_mtime_ns
    left = sorted(os.listdir(spool_path))
    assert [n for n in left if n.startswith(".planted-")], left  # hers, kept for her, out of the way


if sys.platform != "linux":  # pragma: no cover
    pytest.skip("Linux only", allow_module_level=True)
