"""Kernel-facing pidfd helpers: thread pidfds and the exit status of a pidfd.

* ``pidfd_open(tid, PIDFD_THREAD)`` (Linux >= 6.9; the flag is ``O_EXCL``)
  names one *thread*; it turns readable as soon as that thread has exited.
  When a process dies every thread exits at once, but only the last one to
  drop the memory map pays for unmapping it, so a sub-thread's pidfd turns
  readable within a few ms of a SIGKILL however much memory the process
  held, where the process pidfd waits for the whole teardown.
* ``ioctl(PIDFD_GET_INFO)`` with ``PIDFD_INFO_EXIT`` (Linux >= 6.15) gives
  the exit status of a task that is gone, in ``waitpid`` form: for a thread
  at once (threads are reaped by the kernel), for a process once its parent
  has reaped it. A sub-thread that ended by itself, or was ended by an
  ``execve`` of its process, reports 0; a thread taken down with its process
  reports the process's status (the signal, or the code << 8).

The daemon uses thread pidfds only where both exist: the exit status is
what tells a process's death from a thread's own end.
"""

from __future__ import annotations

import fcntl
import os
import select
import struct
import threading
from typing import Optional

from sentinel.host.procid import thread_start_ticks, zombie_exit_status

PIDFD_THREAD = os.O_EXCL
_INFO_SIZE = 64  # PIDFD_INFO_SIZE_VER0: up to and including exit_code
_PIDFD_GET_INFO = (3 << 30) | (_INFO_SIZE << 16) | (0xFF << 8) | 11  # _IOWR(PIDFS_IOCTL_MAGIC, 11, ...)
_INFO_PID = 0x01
_INFO_EXIT = 0x08
_EXIT_CODE_OFFSET = 60
ENV_DISABLE = "SENTINEL_THREAD_PIDFDS"  # "0": watch process pidfds only


def readable(fd: int) -> bool:
    """True if the pidfd is already readable (its task has exited)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


def exit_status(fd: int) -> Optional[int]:
    """The exit status the kernel keeps for the pidfd's task, or None (alive,
    not yet reaped, or a kernel without ``PIDFD_INFO_EXIT``)."""
    buf = bytearray(_INFO_SIZE)
    struct.pack_into("=Q", buf, 0, _INFO_PID | _INFO_EXIT)
    try:
        fcntl.ioctl(fd, _PIDFD_GET_INFO, buf, True)
    except OSError:
        return None
    mask = struct.unpack_from("=Q", buf, 0)[0]
    if not mask & _INFO_EXIT:
        return None
    return int(struct.unpack_from("=i", buf, _EXIT_CODE_OFFSET)[0])


def process_exit_status(fd: int, pid: int, start_ticks: int) -> Optional[int]:
    """How the process behind a readable pidfd ended: from the kernel once it
    is reaped, from ``/proc`` while it is a zombie; None if neither tells."""
    status = exit_status(fd)
    if status is None:
        status = zombie_exit_status(pid, start_ticks)
    if status is None:  # reaped between the two looks: the kernel has it now
        status = exit_status(fd)
    return status


def thread_pidfds_supported() -> bool:
    """``PIDFD_THREAD`` and ``PIDFD_GET_INFO`` both work here (and are not switched off)."""
    if os.environ.get(ENV_DISABLE, "").strip().lower() in ("0", "no", "false", "off"):
        return False
    if not hasattr(os, "pidfd_open"):
        return False
    try:
        fd = os.pidfd_open(threading.get_native_id(), PIDFD_THREAD)
    except OSError:
        return False
    try:
        buf = bytearray(_INFO_SIZE)
        struct.pack_into("=Q", buf, 0, _INFO_PID)
        fcntl.ioctl(fd, _PIDFD_GET_INFO, buf, True)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def open_thread(pid: int, tid: int, start_ticks: int) -> Optional[int]:
    """A pidfd for thread ``tid`` of process ``pid``, identity-checked; None if
    that thread is gone, was never the one recorded, or cannot be opened.

    As for processes, the check comes after the open: the pidfd pins the
    task, so a matching start time under ``/proc/<pid>/task/`` proves it is
    the recorded thread of that very process, not a later reuse of the tid.
    """
    try:
        fd = os.pidfd_open(tid, PIDFD_THREAD)
    except OSError:
        return None
    if thread_start_ticks(pid, tid) != start_ticks or readable(fd):
        os.close(fd)
        return None
    return fd
