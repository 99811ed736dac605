"""How did a process we did not start end? Its wait status, without being its parent.

Two sources, both through the pidfd the daemon already holds:

* while the process is an unreaped zombie, ``/proc/<pid>/stat`` still
  exists and its field 52 is the exit status in ``waitpid`` form (shown to
  root and to the process's own user); the pidfd pins the pid, and the
  start time is checked, so the zombie is the process we watched;
* once its parent has reaped it, ``ioctl(pidfd, PIDFD_GET_INFO)`` with
  ``PIDFD_INFO_EXIT`` returns the same status (Linux >= 6.15).

A launcher reaps its workers within its poll interval (torchrun: 0.1 s), so
the zombie is often gone when we look; the ioctl covers that. On older
kernels a reaped process's status is unknown (None).
"""

from __future__ import annotations

import fcntl
import os
import signal
import struct
from dataclasses import dataclass
from typing import Optional

from sentinel.procid import ProcessIdentity, process_uid

# _IOWR(PIDFS_IOCTL_MAGIC 0xFF, 11, struct pidfd_info) with the 64-byte first version.
_PIDFD_INFO_SIZE = 64
PIDFD_GET_INFO = (3 << 30) | (_PIDFD_INFO_SIZE << 16) | (0xFF << 8) | 11
PIDFD_INFO_EXIT = 1 << 3
_EXIT_CODE_OFFSET = 60  # __s32 exit_code after mask, cgroupid and ten __u32 ids


@dataclass(frozen=True)
class ExitStatus:
    """``code`` for a normal exit, else ``signal`` (the number that killed it)."""

    code: Optional[int] = None
    signal: Optional[int] = None

    @classmethod
    def from_wait_status(cls, status: int) -> ExitStatus:
        if os.WIFSIGNALED(status):
            return cls(signal=os.WTERMSIG(status))
        return cls(code=os.WEXITSTATUS(status))

    @property
    def clean(self) -> bool:
        return self.code == 0

    @property
    def signal_name(self) -> Optional[str]:
        if self.signal is None:
            return None
        try:
            return signal.Signals(self.signal).name
        except ValueError:
            return f"signal {self.signal}"


def _from_zombie(ident: ProcessIdentity) -> Optional[ExitStatus]:
    # The kernel shows 0 there to whoever may not ptrace the process: trust
    # the field only as root or as its own user.
    if os.geteuid() != 0 and process_uid(ident.pid) != os.geteuid():
        return None
    try:
        with open(f"/proc/{ident.pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    fields = raw[raw.rfind(b")") + 2 :].split()
    # fields[0] is field 3 (state), so field 22 (start time) is [19] and field 52 (exit code) [49].
    if len(fields) < 50 or fields[0] not in (b"Z", b"X") or int(fields[19]) != ident.start_ticks:
        return None
    return ExitStatus.from_wait_status(int(fields[49]))


def _from_pidfd(fd: int) -> Optional[ExitStatus]:
    buf = bytearray(_PIDFD_INFO_SIZE)
    struct.pack_into("=Q", buf, 0, PIDFD_INFO_EXIT)
    try:
        fcntl.ioctl(fd, PIDFD_GET_INFO, buf, True)
    except OSError:
        return None  # an older kernel, or not reaped yet
    (mask,) = struct.unpack_from("=Q", buf, 0)
    if not mask & PIDFD_INFO_EXIT:
        return None
    (status,) = struct.unpack_from("=i", buf, _EXIT_CODE_OFFSET)
    return ExitStatus.from_wait_status(status)


def exit_status(pidfd: Optional[int], ident: ProcessIdentity) -> Optional[ExitStatus]:
    """The exit status of the exited process ``ident`` (pinned by ``pidfd``), or None."""
    # Reaped between the two looks: the ioctl answers then; so look there last.
    found = _from_zombie(ident)
    if found is None and pidfd is not None:
        found = _from_pidfd(pidfd)
    return found
