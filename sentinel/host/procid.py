"""Process identity: a pid alone is not a process.

A pid is reused by the kernel, and a reboot resets every pid, so a process is
named by ``(pid, start_ticks, boot_id)``: the start time in clock ticks since
boot (field 22 of ``/proc/<pid>/stat``) plus the kernel's random boot id.
Stdlib only: the training side imports this module.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

_BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"
_boot_id_cache: Optional[str] = None


def boot_id() -> str:
    """The current boot's id; empty string where the kernel does not tell."""
    global _boot_id_cache
    if _boot_id_cache is None:
        try:
            with open(_BOOT_ID_PATH, encoding="ascii") as f:
                _boot_id_cache = f.read().strip()
        except OSError:
            _boot_id_cache = ""
    return _boot_id_cache


def read_small(path: str, limit: int = 4096) -> bytes:
    """Up to ``limit`` bytes of a kernel file (``/proc``, ``/sys``), in one
    open and one read: the daemon asks some on the way to a kill alert, where
    a file object's set-up cost more than the kernel's answer. OSError if
    it cannot be read."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, limit)
    finally:
        os.close(fd)


def _stat_fields(pid: int, tid: Optional[int] = None) -> Optional[list[str]]:
    """Fields of /proc/<pid>/stat (or of its thread ``tid``) after the command name, or None if gone."""
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    try:
        raw = read_small(path)  # a stat line is well under 1 KiB, even with a 64-character name
    except OSError:
        return None
    # The command name is in parentheses and may itself hold spaces or ")".
    tail = raw[raw.rfind(b")") + 2 :]
    return tail.decode("ascii", "replace").split()


def start_ticks(pid: int) -> Optional[int]:
    """Start time of ``pid`` in clock ticks since boot, or None if it is gone."""
    fields = _stat_fields(pid)
    if fields is None or len(fields) < 20:
        return None
    return int(fields[19])  # field 22 overall; fields[0] is field 3 (state)


def thread_start_ticks(pid: int, tid: int) -> Optional[int]:
    """Start time of thread ``tid`` of process ``pid``, or None if it is gone
    or is no thread of ``pid``."""
    fields = _stat_fields(pid, tid)
    if fields is None or len(fields) < 20:
        return None
    return int(fields[19])


def zombie_exit_status(pid: int, start_ticks: int) -> Optional[int]:
    """The wait status of ``pid`` if it is that exact process, now a zombie.

    Field 52 of /proc/<pid>/stat (Linux >= 3.5) holds it, readable by the
    owner and by root; None while it runs, once it is reaped, or if hidden.
    """
    fields = _stat_fields(pid)
    if fields is None or len(fields) < 50 or fields[0] != "Z" or int(fields[19]) != start_ticks:
        return None
    try:
        return int(fields[49])
    except ValueError:
        return None
def parent_pid(pid: int) -> Optional[int]:
    """The parent of ``pid`` (field 4 of its stat), or None if it is gone."""
    fields = _stat_fields(pid)
    return int(fields[1]) if fields and len(fields) > 1 else None


def process_state(pid: int) -> Optional[str]:
    """The one-letter state ("R", "S", "Z", ...) of ``pid``, or None if gone."""
    fields = _stat_fields(pid)
    return fields[0] if fields else None


def process_uid(pid: int) -> Optional[int]:
    """Real uid of ``pid``, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Uid:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


@dataclass(frozen=True)
class ProcessIdentity:
    pid: int
    start_ticks: int
    boot_id: str

    @classmethod
    def of(cls, pid: int) -> Optional[ProcessIdentity]:
        ticks = start_ticks(pid)
        if ticks is None:
            return None
        return cls(pid, ticks, boot_id())

    @classmethod
    def current(cls) -> ProcessIdentity:
        ident = cls.of(os.getpid())
        # /proc may be missing in odd sandboxes; a zero start time still names the process.
        return ident if ident is not None else cls(os.getpid(), 0, boot_id())

    def from_this_boot(self) -> bool:
        return self.boot_id == boot_id()

    def is_running(self) -> bool:
        """True if this exact process exists and is not a zombie."""
        if not self.from_this_boot():
            return False
        fields = _stat_fields(self.pid)
        if fields is None or len(fields) < 20:
            return False
        return fields[0] not in ("Z", "X") and int(fields[19]) == self.start_ticks
