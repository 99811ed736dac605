"""Is the run's process still there? Event-driven where the kernel allows.

With ``pidfd_open`` (Linux >= 5.3) every watched process gets one pidfd in
the daemon's epoll; it turns readable the moment the process exits, even
while it is an unreaped zombie. Identity is checked *after* the pidfd is
open: the pidfd pins the pid, so if ``/proc/<pid>/stat`` then shows the
recorded start time, the pidfd is the run's process and not a later process
that reused the pid. Without pidfd, ``psutil`` is polled and a zombie counts
as dead (``psutil.pid_exists`` alone says True for zombies).
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import select
from typing import Optional

from sentinel.procid import ProcessIdentity, boot_id, start_ticks

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


class Liveness:
    """The set of watched processes, keyed by the caller's key (a run id)."""

    def __init__(self, epoll: select.epoll, use_pidfd: Optional[bool] = None) -> None:
        self._epoll = epoll
        self.use_pidfd = pidfd_supported() if use_pidfd is None else use_pidfd
        self._fd_to_key: dict[int, str] = {}
        self._key_to_fd: dict[str, int] = {}
        self._polled: dict[str, ProcessIdentity] = {}  # fallback mode only

    # ------------------------------------------------------------ watching

    def watch(self, key: str, ident: ProcessIdentity) -> Status:
        """Start watching ``ident``; ALIVE means an exit will be reported later."""
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
        if start_ticks(ident.pid) != ident.start_ticks or _pidfd_exited(fd):
            os.close(fd)
            return Status.DEAD
        self._epoll.register(fd, select.EPOLLIN)
        self._fd_to_key[fd] = key
        self._key_to_fd[key] = fd
        return Status.ALIVE

    def unwatch(self, key: str) -> None:
        fd = self._key_to_fd.pop(key, None)
        if fd is not None:
            self._fd_to_key.pop(fd, None)
            with contextlib.suppress(OSError, ValueError):
                self._epoll.unregister(fd)
            os.close(fd)
        self._polled.pop(key, None)

    def watching(self, key: str) -> bool:
        return key in self._key_to_fd or key in self._polled

    def owns(self, fd: int) -> bool:
        return fd in self._fd_to_key

    def pidfd(self, key: str) -> Optional[int]:
        """The pidfd watching ``key`` (jobs: read an exited rank's status through it)."""
        return self._key_to_fd.get(key)

    def key_of(self, fd: int) -> Optional[str]:
        return self._fd_to_key.get(fd)

    def exited(self, fd: int) -> Optional[str]:
        """The key whose pidfd ``fd`` turned readable; it is unwatched."""
        key = self._fd_to_key.get(fd)
        if key is not None:
            self.unwatch(key)
        return key

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


def _pidfd_exited(fd: int) -> bool:
    """True if the pidfd is already readable (the process exited: a zombie)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))

