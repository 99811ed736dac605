"""Keep the spool small: archive ended runs, prune old archives.

An ended run's directory is renamed into the archive (``<state>/archive/``,
see ``sentinel.state_dir``) once its
process is gone (a live process may still write into it), so every rescan
only meets runs that can still change. Archives older than the retention
period are deleted together with their alert journal. Nothing here follows
a symlink: ``os.rename`` moves the entry itself and ``shutil.rmtree``
refuses symlinks and never descends through them.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import stat
from pathlib import Path
from typing import Callable, Optional

from sentinel.spool import is_run_id, make_private_dir

log = logging.getLogger("sentinel.daemon.archive")


def archive_run(run_dir: Path, target_root: Path, now: float) -> Optional[Path]:
    """Move an ended run's directory into the archive ``target_root``; its new path, or None."""
    try:
        make_private_dir(target_root)
    except OSError as exc:
        log.error("cannot create archive %s: %s", target_root, exc)
        return None
    target = target_root / run_dir.name
    for attempt in range(1, 100):
        if not os.path.lexists(target):
            break
        target = target_root / f"{run_dir.name}.{attempt}"
    try:
        os.rename(run_dir, target)
    except FileNotFoundError:
        return None  # already gone (the user removed it)
    except OSError as exc:
        if exc.errno == errno.EXDEV:
            log.warning("cannot archive %s: the state directory is on another file system; "
                        "leaving it in the spool", run_dir)
        else:
            log.warning("cannot archive %s: %s", run_dir, exc.strerror)
        return None
    with contextlib.suppress(OSError):
        os.utime(target, (now, now), follow_symlinks=False)  # retention counts from archiving
    return target


def prune_archive(root: Path, retention: float, now: float,
                  forget_run: Callable[[str], None]) -> list[str]:
    """Delete archived runs under ``root`` older than ``retention``; return their run ids."""
    try:
        names = os.listdir(root)
    except OSError:
        return []
    pruned = []
    for name in names:
        path = root / name
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if st.st_mtime + retention > now:
            continue
        try:
            if stat.S_ISDIR(st.st_mode):
                shutil.rmtree(path)
            else:
                os.unlink(path)
        except OSError as exc:
            log.warning("cannot prune %s: %s", path, exc)
            continue
        run_id = name.split(".", 1)[0]
        if is_run_id(run_id):
            try:
                forget_run(run_id)
            except OSError as exc:
                log.warning("cannot forget the alert journal of %s: %s", run_id, exc)
            pruned.append(run_id)
    if pruned:
        log.info("pruned %d archived run(s) older than the retention period", len(pruned))
    return pruned
