"""Is the run's process still there? Event-driven where the kernel allows.

With ``pidfd_open`` (Linux >= 5.3) every watched process gets one pidfd in
the daemon's epoll; it turns readable the moment the process exits, even
while it is an unreaped zombie. Identity is checked *after* the pidfd is
open: the pidfd pins the pid, so if ``/proc/<pid>/stat`` then shows the
recorded start time, the pidfd is the run's process and not a later process
that reused the pid. Without pidfd, ``psutil`` is polled and a zombie counts
as dead (``psutil.pid_exists`` alone says True for zombies).

Beside the process pidfd, up to a few *thread* pidfds of the run's
long-lived sub-threads (``sentinel.daemon.pidfd``) go into the same epoll,
identity-checked the same way. A thread that exits with a nonzero status
went down with its process: that is the death, reported at once, long
before a large process's teardown lets its own pidfd turn readable. A
thread that ends with status 0 ended alone (or by an ``execve``) and is
just dropped; the process pidfd still reports the exit.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import select
from typing import NamedTuple, Optional, Sequence

from sentinel.daemon import pidfd
from sentinel.host.procid import ProcessIdentity, boot_id, start_ticks

log = logging.getLogger("sentinel.daemon.liveness")

POLL_INTERVAL = 0.1  # fallback polling period, seconds


class Status(str, enum.Enum):
    ALIVE = "alive"
    DEAD = "dead"  # gone, a zombie, or a different process under the same pid
    OTHER_BOOT = "other_boot"  # the identity is from an earlier boot


def pidfd_supported() -> bool:
    if not hasattr(os, "pidfd_open"):
        return False
    try:
        fd = os.pidfd_open(os.getpid())
    except OSError:
        return False
    os.close(fd)
    return True


def _is_zombie_or_gone(pid: int) -> bool:
    import psutil  # daemon-only dependency

    try:
        return psutil.Process(pid).status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.NoSuchProcess:
        return True
    except psutil.AccessDenied:
        # A hardened /proc hides the state; the caller has already matched
        # the start time, which is the best evidence left.
        return False


class Exit(NamedTuple):
    key: str
    status: Optional[int]  # the kernel's wait status, None if it did not tell


class Liveness:
    """The set of watched processes, keyed by the caller's key (a run id)."""

    def __init__(self, epoll: select.epoll, use_pidfd: Optional[bool] = None,
                 use_threads: Optional[bool] = None) -> None:
        self._epoll = epoll
        self.use_pidfd = pidfd_supported() if use_pidfd is None else use_pidfd
        if use_threads is None:
            use_threads = self.use_pidfd and pidfd.thread_pidfds_supported()
        self.use_threads = use_threads
        self._fd_to_key: dict[int, str] = {}
        self._key_to_fd: dict[str, int] = {}
        self._idents: dict[str, ProcessIdentity] = {}
        self._thread_fd_to_key: dict[int, str] = {}
        self._key_to_thread_fds: dict[str, list[int]] = {}
        self._polled: dict[str, ProcessIdentity] = {}  # fallback mode only

    # ------------------------------------------------------------ watching

    def watch(self, key: str, ident: ProcessIdentity, threads: Sequence[Sequence[int]] = ()) -> Status:
        """Start watching ``ident`` (and its ``threads``, [tid, start_ticks]
        each); ALIVE means an exit will be reported later."""
        self.unwatch(key)
        if ident.boot_id and ident.boot_id != boot_id():
            return Status.OTHER_BOOT
        if not self.use_pidfd:
            if not self._alive_by_polling(ident):
                return Status.DEAD
            self._polled[key] = ident
            return Status.ALIVE
        try:
            fd = os.pidfd_open(ident.pid)
        except ProcessLookupError:
            return Status.DEAD
        except OSError as exc:
            log.warning("pidfd_open(%d) failed (%s); polling that process", ident.pid, exc)
            if not self._alive_by_polling(ident):
                return Status.DEAD
            self._polled[key] = ident
            return Status.ALIVE
        # Now that the pid is pinned, make sure it is the process the record names.
        if start_ticks(ident.pid) != ident.start_ticks or pidfd.readable(fd):
            os.close(fd)
            return Status.DEAD
        self._epoll.register(fd, select.EPOLLIN)
        self._fd_to_key[fd] = key
        self._key_to_fd[key] = fd
        self._idents[key] = ident
        if self.use_threads:
            self._watch_threads(key, ident.pid, threads)
        return Status.ALIVE

    def _watch_threads(self, key: str, pid: int, threads: Sequence[Sequence[int]]) -> None:
        fds = []
        for tid, ticks in threads:
            if tid == pid:
                continue  # the main thread is the process pidfd's business
            fd = pidfd.open_thread(pid, tid, ticks)
            if fd is None:
                continue  # gone already or not the recorded thread: the process pidfd remains
            self._epoll.register(fd, select.EPOLLIN)
            self._thread_fd_to_key[fd] = key
            fds.append(fd)
        if fds:
            self._key_to_thread_fds[key] = fds

    def unwatch(self, key: str) -> None:
        fd = self._key_to_fd.pop(key, None)
        if fd is not None:
            self._fd_to_key.pop(fd, None)
            self._close(fd)
        for thread_fd in self._key_to_thread_fds.pop(key, ()):
            self._thread_fd_to_key.pop(thread_fd, None)
            self._close(thread_fd)
        self._idents.pop(key, None)
        self._polled.pop(key, None)

    def _close(self, fd: int) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._epoll.unregister(fd)
        os.close(fd)

    def watching(self, key: str) -> bool:
        return key in self._key_to_fd or key in self._polled

    def owns(self, fd: int) -> bool:
        return fd in self._fd_to_key or fd in self._thread_fd_to_key

    def watched_threads(self, key: str) -> int:
        return len(self._key_to_thread_fds.get(key, ()))

    def exit_of(self, fd: int) -> Optional[Exit]:
        """The death the readable pidfd ``fd`` tells of (its key is then
        unwatched), or None: a watched thread that ended alone."""
        key = self._fd_to_key.get(fd)
        if key is not None:
            ident = self._idents[key]
            status = pidfd.process_exit_status(fd, ident.pid, ident.start_ticks)
            self.unwatch(key)
            return Exit(key, status)
        key = self._thread_fd_to_key.pop(fd, None)
        if key is None:
            return None
        status = pidfd.exit_status(fd)
        remaining = [other for other in self._key_to_thread_fds.get(key, ()) if other != fd]
        self._close(fd)
        if remaining:
            self._key_to_thread_fds[key] = remaining
        else:
            self._key_to_thread_fds.pop(key, None)
        if not status:
            return None  # 0: the thread ended by itself or by an execve; None: the kernel did not say
        self.unwatch(key)
        return Exit(key, status)

    def exited(self, fd: int) -> Optional[str]:
        """The key whose pidfd ``fd`` told of its process's death; it is unwatched."""
        found = self.exit_of(fd)
        return found.key if found is not None else None

    # ------------------------------------------------------------ fallback

    @property
    def polling(self) -> bool:
        return bool(self._polled)

    def poll(self) -> list[str]:
        """Keys of polled processes that are gone (fallback mode); unwatched."""
        gone = [key for key, ident in self._polled.items() if not self._alive_by_polling(ident)]
        for key in gone:
            self.unwatch(key)
        return gone

    @staticmethod
    def _alive_by_polling(ident: ProcessIdentity) -> bool:
        if start_ticks(ident.pid) != ident.start_ticks:
            return False  # gone, or the pid now names another process
        return not _is_zombie_or_gone(ident.pid)

    def close(self) -> None:
        for key in list(self._key_to_fd) + list(self._polled):
            self.unwatch(key)

