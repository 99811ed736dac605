"""``<spool>/daemon.json``: tells training processes a daemon is watching.

Written at start and on every rescan (its ``written`` time shows the daemon
is not wedged), removed on a clean shutdown. It names the daemon by pid +
start ticks + boot id, so a stale file left by a killed daemon is recognised
as stale by readers. World-readable: in a shared spool every user's training
process must be able to read it, and it holds nothing secret.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from sentinel import __version__, spool
from sentinel.procid import ProcessIdentity
from sentinel.spool import DAEMON_FILE, DaemonLiveness, SpoolFormatError

log = logging.getLogger("sentinel.daemon.liveness_file")


def write(spool_path: Path, now: float) -> bool:
    me = ProcessIdentity.current()
    record = DaemonLiveness(pid=me.pid, start_ticks=me.start_ticks, boot_id=me.boot_id, written=now,
                            version=__version__)
    try:
        spool.write_json(Path(spool_path) / DAEMON_FILE, record.to_dict(), mode=0o644)
    except OSError as exc:
        log.error("cannot write %s: %s (training processes will think no daemon runs)",
                  Path(spool_path) / DAEMON_FILE, exc.strerror)
        return False
    return True


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
