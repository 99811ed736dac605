"""Spool changes as (run id, what changed), from inotify read in the daemon's loop.

One inotify instance, its fd in the daemon's epoll, read without blocking
by the loop itself (no thread, and no delay: each change is handed over as
soon as the kernel reports it). Watched, each non-recursively:

* the spool itself, for run directories appearing and going;
* each run directory, for its records (renamed into place) and ``msg/``;
* each run's ``msg/``, for queued messages.

Nothing else: directories a user makes anywhere else in the spool, however
many, cost no watch, and no user has more than ``MAX_RUNS_WATCHED_PER_USER``
run directories watched. A watch is added on the directory the daemon
opened (``/proc/self/fd/N`` of an ``O_NOFOLLOW`` fd), so a symlink never
makes it watch something outside the spool. When the kernel refuses a watch
(``fs.inotify.max_user_watches`` used up: ENOSPC) that is logged once; such
a run's records are still read at every periodic rescan and its exit is seen
through its pidfd, which needs no inotify. The queue can overflow too: the
rescan is the safety net, so nothing here needs to be perfect.
"""

from __future__ import annotations

import contextlib
import ctypes
import enum
import errno
import logging
import os
import select
import struct
import sys
from collections import Counter
from pathlib import Path
from typing import NamedTuple, Optional

from sentinel.formats.safe_json import open_dir
from sentinel.formats.spool import BEAT_FILE, FINAL_FILE, MESSAGE_DIR, RUN_FILE, is_run_id
from sentinel.formats.spool_lock import LOCK_FILE

log = logging.getLogger("sentinel.daemon.spool_watcher")

MAX_RUNS_WATCHED_PER_USER = 1024

# <sys/inotify.h>
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_ISDIR = 0x40000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC

ROOT_MASK = IN_CREATE | IN_MOVED_TO | IN_DELETE | IN_MOVED_FROM | IN_ONLYDIR
# Records are renamed into place (IN_MOVED_TO); a file written in place is
# complete at IN_CLOSE_WRITE; msg/ appears with IN_CREATE.
RUN_MASK = IN_CREATE | IN_MOVED_TO | IN_CLOSE_WRITE | IN_ONLYDIR
MESSAGE_MASK = IN_MOVED_TO | IN_CLOSE_WRITE | IN_ONLYDIR

_EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len; then the name
_READ_SIZE = 64 * 1024
_MAX_READS = 64  # per drain: the rest waits for the next pass (the fd stays readable)


class Wakeup:
    """An fd that turns readable when ``wake()`` is called from any thread."""

    def __init__(self) -> None:
        if sys.version_info >= (3, 10):  # os.eventfd
            self.fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            self._write_fd = self.fd
        else:
            self.fd, self._write_fd = os.pipe()
            os.set_blocking(self.fd, False)
            os.set_blocking(self._write_fd, False)

    def wake(self) -> None:
        # An error means a wake-up is already pending (pipe full) or we are closing.
        with contextlib.suppress(OSError):
            os.write(self._write_fd, (1).to_bytes(8, "little"))

    def clear(self) -> None:
        for _ in range(1000):
            try:
                if not os.read(self.fd, 4096):
                    return
            except (BlockingIOError, OSError):
                return

    def close(self) -> None:
        os.close(self.fd)
        if self._write_fd != self.fd:
            os.close(self._write_fd)


class Change(str, enum.Enum):
    RUN = "run"  # a run directory or its run.json appeared
    FINAL = "final"
    BEAT = "beat"
    MESSAGE = "message"


class SpoolEvent(NamedTuple):
    run_id: str
    change: Change


def classify_parts(parts: tuple[str, ...]) -> Optional[SpoolEvent]:
    """Which run and which of its files ``parts`` (relative to the spool) are, or None."""
    if not parts or not is_run_id(parts[0]):
        return None
    run_id = parts[0]
    if len(parts) == 1:
        return SpoolEvent(run_id, Change.RUN)
    name = parts[1]
    if len(parts) == 2:
        change = _RUN_FILES.get(name)
        return SpoolEvent(run_id, change) if change is not None else None
    if len(parts) == 3 and name == MESSAGE_DIR and not parts[2].startswith("."):
        return SpoolEvent(run_id, Change.MESSAGE)
    return None


_RUN_FILES = {RUN_FILE: Change.RUN, FINAL_FILE: Change.FINAL, BEAT_FILE: Change.BEAT,
              MESSAGE_DIR: Change.MESSAGE}


def classify(spool: Path, path: str) -> Optional[SpoolEvent]:
    """Which run and which of its files ``path`` is, or None if irrelevant."""
    try:
        rel = Path(path).relative_to(spool)
    except ValueError:
        return None
    return classify_parts(rel.parts)


class _Inotify:
    """The three libc calls, through ctypes (the stdlib has no inotify)."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self._init1 = libc.inotify_init1
        self._init1.argtypes = [ctypes.c_int]
        self._add = libc.inotify_add_watch
        self._add.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        self._rm = libc.inotify_rm_watch
        self._rm.argtypes = [ctypes.c_int, ctypes.c_int]

    @staticmethod
    def _check(result: int) -> int:
        if result < 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))
        return result

    def init(self) -> int:
        return self._check(self._init1(IN_NONBLOCK | IN_CLOEXEC))

    def add_watch(self, fd: int, path: str, mask: int) -> int:
        return self._check(self._add(fd, os.fsencode(path), mask))

    def rm_watch(self, fd: int, wd: int) -> None:
        with contextlib.suppress(OSError):  # already gone (IN_IGNORED on its way)
            self._check(self._rm(fd, wd))


class _Watch(NamedTuple):
    run_id: Optional[str]  # None: the spool itself
    in_messages: bool  # the run's msg/ rather than its directory


class SpoolWatcher:
    """Watches the spool, its run directories and their ``msg/`` (see the module docstring)."""

    def __init__(self, spool: Path, epoll: select.epoll) -> None:
        self.spool = Path(spool)
        self._epoll = epoll
        self._inotify: Optional[_Inotify] = None
        self.fd: Optional[int] = None  # the inotify fd while watching
        self._watches: dict[int, _Watch] = {}  # wd -> what it watches
        self._run_wds: dict[str, list[int]] = {}  # run id -> its wds (directory first)
        self._run_uid: dict[str, int] = {}
        self._runs_of_uid: Counter[int] = Counter()
        self._beat_interest: set[str] = set()
        self._reported_limit = False
        self._reported_overflow = False
        self._reported_users: set[int] = set()
        self._lock_touched = True  # until the first look: nothing was seen yet
        # Events lost since the last rescan (``take_missed``). From the start on none are: a run is
        # watched before its admission reads it.
        self._missed = False

    # ------------------------------------------------------------ lifecycle

    def start(self) -> bool:
        """Watch the spool itself; False (and rescans only) if inotify cannot."""
        try:
            self._inotify = _Inotify()
            fd = self._inotify.init()
        except (OSError, AttributeError) as exc:
            log.warning("inotify unavailable (%s): relying on periodic rescans", exc)
            return False
        try:
            wd = self._inotify.add_watch(fd, str(self.spool), ROOT_MASK)
        except OSError as exc:
            os.close(fd)
            log.warning("cannot watch %s with inotify (%s): relying on periodic rescans", self.spool,
                        exc.strerror)
            return False
        self.fd = fd
        self._watches[wd] = _Watch(None, False)
        self._epoll.register(fd, select.EPOLLIN)
        return True

    def stop(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError, ValueError):
                self._epoll.unregister(self.fd)
            os.close(self.fd)
            self.fd = None
        self._watches.clear()
        self._run_wds.clear()
        self._run_uid.clear()
        self._runs_of_uid.clear()

    # ------------------------------------------------------------ runs

    def want_beats(self, run_id: str, wanted: bool) -> None:
        """Beats are re-read at deadlines; only a stalled run waits for each one."""
        if wanted:
            self._beat_interest.add(run_id)
        else:
            self._beat_interest.discard(run_id)

    def watch_run(self, run_id: str) -> None:
        """Watch ``<spool>/<run_id>`` and its ``msg/`` if not watched yet (a
        directory, never through a symlink; at most ``MAX_RUNS_WATCHED_PER_USER``
        per owner)."""
        if self.fd is None:
            return
        wds = self._run_wds.get(run_id)
        if wds is not None and len(wds) == 2:
            return
        try:
            spool_fd = os.open(self.spool, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return
        try:
            run_fd = open_dir(run_id, spool_fd)
        except OSError:
            return  # gone, or not a directory: nothing to watch
        finally:
            os.close(spool_fd)
        try:
            if wds is None:
                uid = os.fstat(run_fd).st_uid
                if not self._room_for(uid):
                    return
                wd = self._add(run_fd, RUN_MASK, run_id)
                if wd is None:
                    return
                wds = self._run_wds[run_id] = [wd]
                self._watches[wd] = _Watch(run_id, False)
                self._run_uid[run_id] = uid
                self._runs_of_uid[uid] += 1
            self._watch_messages(run_id, run_fd, wds)
        finally:
            os.close(run_fd)

    def _watch_messages(self, run_id: str, run_fd: int, wds: list[int]) -> None:
        try:
            msg_fd = open_dir(MESSAGE_DIR, run_fd)
        except OSError:
            return  # not made yet: its IN_CREATE in the run directory brings us back
        try:
            wd = self._add(msg_fd, MESSAGE_MASK, run_id)
        finally:
            os.close(msg_fd)
        if wd is not None:
            wds.append(wd)
            self._watches[wd] = _Watch(run_id, True)

    def _room_for(self, uid: int) -> bool:
        if self.room_for(uid):
            return True
        if uid not in self._reported_users:
            self._reported_users.add(uid)
            log.warning("uid %d has more than %d run directories in the spool; the others are "
                        "read at each periodic rescan only (logged once per user)", uid,
                        MAX_RUNS_WATCHED_PER_USER)
        return False

    def _add(self, dir_fd: int, mask: int, run_id: str) -> Optional[int]:
        """A watch on the directory open as ``dir_fd`` (its /proc/self/fd link
        names that very directory), or None if the kernel refuses."""
        assert self._inotify is not None and self.fd is not None
        try:
            return self._inotify.add_watch(self.fd, f"/proc/self/fd/{dir_fd}", mask)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.ENOMEM):
                if not self._reported_limit:
                    self._reported_limit = True
                    log.warning("cannot add an inotify watch for run %s (%s): the limit "
                                "fs.inotify.max_user_watches is used up; runs without a watch are read "
                                "at each periodic rescan, and exits are still seen at once (pidfd). "
                                "Raise the limit (sysctl fs.inotify.max_user_watches). Logged once.",
                                run_id, exc.strerror)
            else:
                log.debug("cannot watch run %s: %s", run_id, exc.strerror)
            return None

    def forget(self, run_id: str) -> None:
        """Stop watching a run (archived, gone, or dropped after trouble)."""
        self._beat_interest.discard(run_id)
        wds = self._run_wds.pop(run_id, None)
        if wds is None:
            return
        uid = self._run_uid.pop(run_id, None)
        if uid is not None:
            self._runs_of_uid[uid] -= 1
            if self._runs_of_uid[uid] <= 0:
                del self._runs_of_uid[uid]
        for wd in wds:
            self._watches.pop(wd, None)
            if self._inotify is not None and self.fd is not None:
                self._inotify.rm_watch(self.fd, wd)

    def watched(self, run_id: str) -> bool:
        """Whether ``run_id``'s directory is watched (its ``msg/``, made later, is
        watched on the directory's event for it)."""
        return run_id in self._run_wds

    def room_for(self, uid: int) -> bool:
        """Whether another run of ``uid`` may be watched (no log line)."""
        return self.fd is not None and self._runs_of_uid[uid] < MAX_RUNS_WATCHED_PER_USER

    def take_missed(self) -> bool:
        """Whether events may have been lost since the last call (the queue
        overflowed, or no inotify): a rescan then reads every run again."""
        missed = self._missed or self.fd is None
        self._missed = False
        return missed

    def take_lock_touched(self) -> bool:
        """Whether the spool's lock file may have been renamed, removed or made
        since the last call (events lost, or no inotify, count as yes): the
        loop then looks whether its lock is still the spool's. One test of a
        flag on a pass without such an event, where a look is two syscalls."""
        touched = self._lock_touched or self.fd is None
        self._lock_touched = False
        return touched

    # ------------------------------------------------------------ events

    def drain(self) -> list[SpoolEvent]:
        """Every change reported since the last call, duplicates folded, in first-seen order."""
        seen: dict[SpoolEvent, None] = {}
        if self.fd is None:
            return []
        for _ in range(_MAX_READS):
            try:
                data = os.read(self.fd, _READ_SIZE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                log.warning("reading inotify events failed (%s); relying on periodic rescans", exc)
                break
            for wd, mask, name in _parse(data):
                event = self._on_event(wd, mask, name)
                if event is not None:
                    seen.setdefault(event)
            if len(data) < _READ_SIZE // 2:
                break
        return list(seen)

    def _on_event(self, wd: int, mask: int, name: str) -> Optional[SpoolEvent]:
        if mask & IN_Q_OVERFLOW:
            self._lock_touched = True  # its event may be among those dropped
            self._missed = True
            if not self._reported_overflow:
                self._reported_overflow = True
                log.warning("the inotify queue overflowed; changes it dropped are found by the periodic "
                            "rescan (logged once)")
            return None
        watch = self._watches.get(wd)
        if watch is None:
            return None
        if mask & IN_IGNORED:  # the directory is gone or its watch was removed
            self._watches.pop(wd, None)
            self._lock_touched = self._lock_touched or watch.run_id is None  # the spool itself
            if watch.run_id is not None:
                wds = self._run_wds.get(watch.run_id)
                if wds is not None and wd in wds:
                    if watch.in_messages:
                        wds.remove(wd)
                    else:
                        self.forget(watch.run_id)
            return None
        if watch.run_id is None and name == LOCK_FILE:
            self._lock_touched = True  # another daemon may have taken the spool
            return None
        if name.startswith("."):
            return None  # temporary files of atomic writes
        if watch.run_id is None:  # the spool itself
            if not is_run_id(name):
                return None
            if mask & (IN_DELETE | IN_MOVED_FROM):
                self.forget(name)
                return None
            if mask & IN_ISDIR:
                self.watch_run(name)  # now, before its records arrive unseen
            return SpoolEvent(name, Change.RUN)
        parts = (watch.run_id, MESSAGE_DIR, name) if watch.in_messages else (watch.run_id, name)
        event = classify_parts(parts)
        if event is None:
            return None
        if event.change is Change.MESSAGE and not watch.in_messages:
            self.watch_run(watch.run_id)  # msg/ appeared: watch it too
        if event.change is Change.BEAT and event.run_id not in self._beat_interest:
            return None
        return event


def _parse(data: bytes) -> list[tuple[int, int, str]]:
    """(wd, mask, name) of each ``struct inotify_event`` in ``data``."""
    out = []
    offset = 0
    while offset + _EVENT.size <= len(data):
        wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
        offset += _EVENT.size
        raw = data[offset:offset + length].split(b"\0", 1)[0]
        offset += length
        out.append((wd, mask, os.fsdecode(raw)))
    return out
