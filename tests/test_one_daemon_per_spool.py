"""One daemon per spool, whoever starts it, and no name in a shared spool a
user can plant to silence the daemon: real daemons, a real throw-away user.

Two daemons with two state directories (a system daemon and a user's
``sentinel-user.service``) used to watch one spool side by side and both
alert; a directory planted as ``daemon.json`` made every recorder believe no
daemon ran. Things planted as the spool's lock file are moved out of the way.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sentinel.formats import daemon_file, spool
from sentinel.formats.spool_lock import LOCK_FILE
from tests.daemon_harness import DaemonProcess
from tests.processes import Launcher
from tests.users import as_user, become, make_shared_spool


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


# Mallory's lock holder: her own file at the lock's name, flocked until stdin closes.
HOLD_LOCK = """
import fcntl, sys
f = open(sys.argv[1], "w")
fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
print("HELD", flush=True)
sys.stdin.read()
"""


def test_a_lock_a_user_plants_and_holds_does_not_keep_the_spools_daemon_from_starting(
        tmp_path: Path, shared: Path, mallory: int, launch: Launcher) -> None:
    """Mallory makes ``.daemon.lock`` a regular file of hers and holds its
    ``flock`` (as a daemon of hers would): root's daemon, the spool's
    owner's, still starts and takes the spool; her file is moved aside, her
    lock on it untouched."""
    spool_path = make_shared_spool(shared)
    lock = spool_path / LOCK_FILE
    holder = launch(["/usr/bin/python3", "-c", HOLD_LOCK, str(lock)], stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE, text=True, cwd="/", preexec_fn=become(mallory))
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "HELD"
        planted = os.lstat(lock)
        assert planted.st_uid == mallory
        with DaemonProcess(tmp_path / "d", {}, spool=spool_path) as daemon:
            assert daemon_file.daemon_alive(spool_path)
            st = os.lstat(lock)
            assert st.st_uid == os.geteuid() and st.st_ino != planted.st_ino
            daemon.stop()
        assert holder.poll() is None  # her process was left alone
    finally:
        launch.kill_all()
    assert f"{lock} was a file of " in daemon.log() and "moved out of the way" in daemon.log()
    assert any(name.startswith(".planted-daemon.lock-") for name in os.listdir(spool_path))


def test_the_name_a_squatter_is_moved_to_cannot_be_occupied_first(
        tmp_path: Path, shared: Path, mallory: int) -> None:
    """Mallory plants ``.daemon.lock`` and, knowing its inode number, a
    non-empty directory at every name it was ever moved to
    (``.planted-daemon.lock-<inode>``): a rename onto it fails, and the
    daemon used to refuse to start. The name aside has a random part now."""
    spool_path = make_shared_spool(shared)
    lock = spool_path / LOCK_FILE
    as_user(mallory, "touch", str(lock))
    aside = spool_path / f".planted-daemon.lock-{os.lstat(lock).st_ino}"
    as_user(mallory, "sh", "-c", f"mkdir {aside} && touch {aside}/x")
    with DaemonProcess(tmp_path / "d", {}, spool=spool_path) as daemon:
        assert daemon_file.daemon_alive(spool_path)
        assert os.lstat(lock).st_uid == os.geteuid()
        daemon.stop()
    assert (aside / "x").exists()  # hers, untouched


if sys.platform != "linux":  # pragma: no cover
    pytest.skip("Linux only", allow_module_level=True)


def test_a_daemon_whose_lock_is_taken_over_stops(tmp_path: Path, shared: Path) -> None:
    """A daemon that took the spool first (a user's, on the shared spool) has
    its lock moved aside and a new one made in its place, as the spool's
    owner's daemon does when it starts: the first one sees it at its next pass
    (the rename wakes it) and stops, exit status 1, saying why, rather than
    alert beside the other."""
    spool_path = make_shared_spool(shared)
    lock = spool_path / LOCK_FILE
    with DaemonProcess(tmp_path / "first", {}, spool=spool_path) as first:
        assert first.proc is not None
        os.rename(lock, spool_path / ".planted-daemon.lock-taken")
        taker = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            assert first.proc.wait(60) == 1
        finally:
            os.close(taker)
    assert f"another daemon took over {spool_path} (its lock {lock} is no longer this daemon's): stopping" \
        in first.log(), first.log()
