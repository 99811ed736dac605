"""``<spool>/daemon.json``: tells training processes a daemon is watching.

Written by the daemon at start and on every rescan, removed on a clean
shutdown. It names the daemon by pid + start ticks + boot id, so a stale
file left by a killed daemon is recognised as stale. World-readable: in a
shared spool every user's training process must be able to read it, and it
holds nothing secret.

Every local user can write into a shared spool, so ``daemon_alive`` (the
one check, used by the in-process fallback and by ``sentinel status``)
trusts the file only if it is owned by root or by the reader itself, and
only if the process it names is that very process (pid, start time, boot
id), runs as the file's owner and calls itself ``sentinel-daemon`` (the
name the daemon gives its process). A forged file, naming pid 1 or any
live process, therefore never switches a user's fallback off.

Across PID namespaces (a training process in a container, the daemon on the
host) the pid names nothing the reader can check. The file records the
daemon's PID namespace and how often it is rewritten (``refresh``, the
rescan interval); a reader in another namespace counts the daemon alive
while a root- (or self-) owned file is no older than twice that, plus
``FRESH_SLACK``. A daemon that was SIGKILLed therefore looks alive for up to
that long to a containerised reader.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import time
from pathlib import Path
from typing import Optional, Sequence

from sentinel import __version__
from sentinel.formats import safe_json, spool
from sentinel.formats.safe_json import SpoolFormatError
from sentinel.formats.spool import DAEMON_FILE, DaemonLiveness
from sentinel.formats.spool_lock import clear_squatter
from sentinel.host import pidns
from sentinel.host.procid import ProcessIdentity, process_uid

log = logging.getLogger("sentinel.daemon_file")

PROCESS_NAME = "sentinel-daemon"  # the daemon's /proc/<pid>/comm
FRESH_SLACK = 5.0  # seconds a rewrite may be late (a busy loop, a slow disk) before the daemon counts as gone


def write(spool_path: Path, refresh: Optional[float] = None, unwatchable: Sequence[str] = (),
          channels: Optional[Sequence[str]] = None) -> bool:
    """Say a daemon watches ``spool_path``: ``refresh``, seconds to the next rewrite;
    ``unwatchable``, runs whose process it cannot see; the names of its ``channels``."""
    me = ProcessIdentity.current()
    record = DaemonLiveness(pid=me.pid, start_ticks=me.start_ticks, boot_id=me.boot_id, version=__version__,
                            pidns=pidns.namespace_of(), refresh=refresh,
                            unwatchable=list(unwatchable)[:spool.MAX_UNWATCHABLE],
                            channels=None if channels is None else list(channels))
    try:
        try:
            safe_json.write_json(Path(spool_path) / DAEMON_FILE, record.to_dict(), mode=0o644)
        except OSError:
            if not _clear_planted(Path(spool_path)):
                raise
            safe_json.write_json(Path(spool_path) / DAEMON_FILE, record.to_dict(), mode=0o644)
    except OSError as exc:
        log.error("cannot write %s: %s (training processes will think no daemon runs)",
                  Path(spool_path) / DAEMON_FILE, exc.strerror)
        return False
    return True


def _clear_planted(spool_path: Path) -> bool:
    """A directory (or anything but a regular file of ours) another user
    planted as daemon.json would make every recorder believe no daemon runs:
    moved out of the way; True if something was."""
    try:
        dir_fd = os.open(spool_path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        st = os.stat(DAEMON_FILE, dir_fd=dir_fd, follow_symlinks=False)
        if stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid():
            return False  # ours: whatever failed, it was not a squatter
        return clear_squatter(dir_fd, DAEMON_FILE, st, spool_path)
    except OSError:
        return False
    finally:
        os.close(dir_fd)


def remove(spool_path: Path) -> None:
    """Remove the file if it still names this process (another daemon may own it now)."""
    try:
        record, _ = spool.read_daemon_liveness(spool_path)
    except (FileNotFoundError, SpoolFormatError):
        return
    if record.pid != os.getpid():
        return
    with contextlib.suppress(OSError):
        os.unlink(Path(spool_path) / DAEMON_FILE)


def live_daemon(spool_path: Path, now: Optional[float] = None) -> Optional[DaemonLiveness]:
    """The record of the daemon watching ``spool_path`` now, or None (see the module docstring)."""
    try:
        record, st = spool.read_daemon_liveness(spool_path)
    except (OSError, SpoolFormatError):
        return None
    if st.st_uid not in (0, os.getuid()):
        return None  # written by another user: forged, whatever it says
    if record.pidns and record.pidns != pidns.namespace_of():
        return record if _fresh(record, st, now) else None
    if not ProcessIdentity(record.pid, record.start_ticks, record.boot_id).is_running():
        return None
    if process_uid(record.pid) != st.st_uid or process_name(record.pid) != PROCESS_NAME:
        return None
    return record


def _fresh(record: DaemonLiveness, st: os.stat_result, now: Optional[float]) -> bool:
    """A daemon of another PID namespace, whose pid means nothing here: alive
    if it rewrote the file lately (it does at every rescan, ``refresh``)."""
    if record.refresh is None:
        return False
    age = (time.time() if now is None else now) - st.st_mtime
    return -FRESH_SLACK <= age <= 2 * record.refresh + FRESH_SLACK


def daemon_alive(spool_path: Path) -> bool:
    return live_daemon(spool_path) is not None


def process_name(pid: int) -> Optional[str]:
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as f:
            return f.read().rstrip("\n")
    except OSError:
        return None


def name_this_process(name: str = PROCESS_NAME) -> Optional[str]:
    """Set this process's name (its /proc comm); the previous name, or None if it cannot."""
    previous = process_name(os.getpid())
    try:
        with open(f"/proc/{os.getpid()}/comm", "w", encoding="utf-8") as f:
            f.write(name[:15])
    except OSError:
        return None
    return previous


def published_channels(spool_path: Path) -> Optional[list[str]]:
    """The channel names the daemon watching ``spool_path`` published; None if
    no daemon is watching (checked as ``live_daemon`` checks) or it names none."""
    record = live_daemon(spool_path)
    return None if record is None else record.channels
