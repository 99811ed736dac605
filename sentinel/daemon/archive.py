"""Keep the spool small: archive ended runs, prune old archives.

An ended run's directory is renamed into the archive (``<state>/archive/``,
see ``sentinel.formats.state_dir``) once its process is gone (a live process may
still write into it), so every rescan only meets runs that can still change.
Archives older than the retention period are deleted together with their
alert journal.

A run directory and everything in it belongs to its user, who may swap any
of it for a symlink at any moment, even after it was archived (a process
whose working directory is inside keeps writing there). So nothing here
works on a path below the spool or the archive: the spool and the archive
are opened once, the run directory is renamed by name between those two
fds (``rename`` moves the entry itself, a symlink included, and never
follows it), and a tree is deleted by ``remove_tree``, which opens each
directory with ``O_NOFOLLOW`` relative to its parent's fd and unlinks
entries in that fd. A symlink is only ever unlinked, never followed.

Pruning runs on a worker thread (``Pruner``), never on the daemon's loop:
a user can leave hundreds of thousands of files in a run directory, and
deleting them takes seconds. The worker deletes in bounded batches
(``PRUNE_BATCH`` entries per ``remove_tree`` call, so closing the daemon
stops it between two batches) and hands the pruned run ids back to the
loop (``Pruner.take`` after a wake-up: ``worker_thread.OffLoopWorker``), which
forgets their alert journals.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import os
import stat
from pathlib import Path
from typing import Callable, Optional

from sentinel.daemon.worker_thread import OffLoopWorker
from sentinel.formats.safe_json import DirId, dir_id, make_private_dir, open_dir
from sentinel.formats.spool import is_run_id

log = logging.getLogger("sentinel.daemon.archive")

# Directories met while pruning are moved up to the archive's top level under
# this prefix, so deleting a tree of any depth holds one fd and no recursion;
# one left behind by an interrupted prune is removed by the next.
SCRATCH_PREFIX = ".prune."
# One prune removes at most this many entries per tree (a process still
# writing into an archived directory cannot keep it busy for ever); the rest
# goes at the next rescan.
MAX_ENTRIES_PER_PRUNE = 1_000_000
PRUNE_BATCH = 10_000  # entries one ``remove_tree`` call of the pruning thread removes

_scratch_numbers = itertools.count()


def _open(path: Path) -> int:
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def archive_run(spool_path: Path, run_id: str, target_root: Path, now: float,
                expect: Optional[DirId] = None) -> Optional[str]:
    """Move an ended run's directory ``<spool>/<run_id>`` into the archive
    ``target_root``; its name there, or None. ``expect``: the directory the
    run was admitted with; another one (or a symlink) in its place is left."""
    try:
        make_private_dir(target_root)
        spool_fd = _open(spool_path)
    except OSError as exc:
        log.error("cannot create archive %s: %s", target_root, exc)
        return None
    try:
        archive_fd = _open(target_root)
    except OSError as exc:
        os.close(spool_fd)
        log.error("cannot open archive %s: %s", target_root, exc)
        return None
    try:
        return _move(spool_fd, run_id, archive_fd, now, expect, spool_path)
    finally:
        os.close(spool_fd)
        os.close(archive_fd)


def _move(spool_fd: int, run_id: str, archive_fd: int, now: float, expect: Optional[DirId],
          spool_path: Path) -> Optional[str]:
    try:
        st = os.stat(run_id, dir_fd=spool_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None  # already gone (the user removed it)
    except OSError as exc:
        log.warning("cannot archive %s: %s", spool_path / run_id, exc.strerror)
        return None
    if not stat.S_ISDIR(st.st_mode) or (expect is not None and dir_id(st) != expect):
        return None  # not the run's directory any more: nothing of ours to move
    _touch(spool_fd, run_id, dir_id(st), now)
    target = run_id
    for attempt in range(1, 100):
        if not _exists(target, archive_fd):
            break
        target = f"{run_id}.{attempt}"
    try:
        # Should the entry be swapped for a symlink since the stat, the
        # symlink itself is moved; pruning later unlinks it, unfollowed.
        os.rename(run_id, target, src_dir_fd=spool_fd, dst_dir_fd=archive_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.EXDEV:
            log.warning("cannot archive %s: the state directory is on another file system; "
                        "leaving it in the spool", spool_path / run_id)
        else:
            log.warning("cannot archive %s: %s", spool_path / run_id, exc.strerror)
        return None
    with contextlib.suppress(OSError):  # retention counts from archiving
        os.utime(target, (now, now), dir_fd=archive_fd, follow_symlinks=False)
    return target


def _touch(spool_fd: int, run_id: str, expect: DirId, now: float) -> None:
    """Set the run directory's mtime to now before it enters the archive.

    The pruning thread judges an archived run's age by its mtime and may
    list the archive between the rename and the ``utime`` after it: a run
    older than the retention period would be deleted the moment it is
    archived. Done through a no-follow fd of the very directory stat'ed."""
    try:
        fd = open_dir(run_id, spool_fd)
    except OSError:
        return  # gone or swapped: the rename below moves whatever is there, unfollowed
    try:
        if dir_id(os.fstat(fd)) == expect:
            os.utime(fd, (now, now))
    except OSError:
        pass
    finally:
        os.close(fd)


def _exists(name: str, dir_fd: int) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    except OSError:
        return True
    return True


def remove_tree(root_fd: int, name: str, limit: int = MAX_ENTRIES_PER_PRUNE) -> bool:
    """Delete ``name`` in the directory ``root_fd`` and all below it; True if
    it is gone. Never follows a symlink and never works on a path: each
    directory is opened by name in its parent's fd with ``O_NOFOLLOW``, and a
    directory found inside is first moved up into ``root_fd`` (under
    ``SCRATCH_PREFIX``), so any depth takes one fd and no recursion. At most
    ``limit`` entries are removed; False leaves the rest for the next call."""
    work = [name]
    budget = limit
    while work and budget > 0:
        current = work.pop()
        try:
            fd = open_dir(current, root_fd)
        except FileNotFoundError:
            continue
        except NotADirectoryError:  # a file or a symlink: unlinked, never followed
            with contextlib.suppress(FileNotFoundError):
                os.unlink(current, dir_fd=root_fd)
            continue
        try:
            with os.scandir(fd) as entries:
                for entry in entries:
                    budget -= 1
                    if budget <= 0:
                        break
                    _remove_entry(fd, entry, root_fd, work)
        finally:
            os.close(fd)
        try:
            os.rmdir(current, dir_fd=root_fd)
        except FileNotFoundError:
            pass
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            work.append(current)  # something was added meanwhile: another round
    return not work


def _remove_entry(dir_fd: int, entry: os.DirEntry[str], root_fd: int, work: list[str]) -> None:
    if not entry.is_dir(follow_symlinks=False):
        try:
            os.unlink(entry.name, dir_fd=dir_fd)
            return
        except FileNotFoundError:
            return
        except IsADirectoryError:
            pass  # became a directory since the listing
    scratch = f"{SCRATCH_PREFIX}{os.getpid()}.{next(_scratch_numbers)}"
    try:
        os.rename(entry.name, scratch, src_dir_fd=dir_fd, dst_dir_fd=root_fd)
    except FileNotFoundError:
        return
    work.append(scratch)


def prune_archive(root: Path, retention: float, now: float,
                  forget_run: Callable[[str], None]) -> list[str]:
    """Delete archived runs under ``root`` older than ``retention``; return their run ids."""
    try:
        root_fd = _open(root)
    except OSError:
        return []
    try:
        return _prune(root, root_fd, retention, now, forget_run)
    finally:
        os.close(root_fd)


def _prune(root: Path, root_fd: int, retention: float, now: float,
           forget_run: Callable[[str], None], batch: int = MAX_ENTRIES_PER_PRUNE,
           stopping: Callable[[], bool] = lambda: False) -> list[str]:
    try:
        names = os.listdir(root_fd)
    except OSError:
        return []
    pruned = []
    for name in names:
        if stopping():
            break
        try:
            st = os.stat(name, dir_fd=root_fd, follow_symlinks=False)
        except OSError:
            continue
        if st.st_mtime + retention > now and not name.startswith(SCRATCH_PREFIX):
            continue
        try:
            if not _remove_in_batches(root_fd, name, batch, stopping):
                log.info("pruning %s: more left than one prune removes; continuing at the next rescan",
                         root / name)
                continue
        except OSError as exc:
            log.warning("cannot prune %s: %s", root / name, exc)
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


def _remove_in_batches(root_fd: int, name: str, batch: int, stopping: Callable[[], bool]) -> bool:
    """``remove_tree`` in calls of ``batch`` entries, at most ``MAX_ENTRIES_PER_PRUNE`` in all."""
    removed = 0
    while True:
        if remove_tree(root_fd, name, min(batch, MAX_ENTRIES_PER_PRUNE - removed)):
            return True
        removed += batch
        if removed >= MAX_ENTRIES_PER_PRUNE or stopping():
            return False


class Pruner(OffLoopWorker[tuple[float, float], str]):
    """Prunes the archive on a worker thread; the loop takes the run ids pruned
    (their alert journals are to be forgotten).

    ``request`` is cheap and coalesces: while a prune is under way, one more
    waits (with the latest ``now``), so a rescan never queues work behind
    work."""

    def __init__(self, root: Path, wake: Callable[[], None]) -> None:
        super().__init__("sentinel-prune", wake)
        self.root = root
        self._wanted: Optional[tuple[float, float]] = None  # (retention, now)

    def request(self, retention: float, now: float) -> None:
        with self._lock:
            if self._stopping:
                return
            self._wanted = (retention, now)
            self._notify()

    def _has_work(self) -> bool:
        return self._wanted is not None

    def _next_work(self) -> tuple[float, float]:
        wanted, self._wanted = self._wanted, None
        assert wanted is not None  # _has_work
        return wanted

    def _do(self, wanted: tuple[float, float]) -> list[str]:
        retention, now = wanted
        pruned: list[str] = []
        try:
            root_fd = _open(self.root)
        except OSError:
            return pruned
        try:
            _prune(self.root, root_fd, retention, now, pruned.append, PRUNE_BATCH, self._is_stopping)
        except Exception:  # one odd entry must not stop the worker
            log.exception("pruning %s failed", self.root)
        finally:
            os.close(root_fd)
        return pruned
