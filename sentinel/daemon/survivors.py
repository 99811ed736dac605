"""The processes a run leaves behind: its descendants, still alive after it ended.

A killed main process's DataLoader workers, or the trainer under a
``sentinel run`` wrapper killed with SIGKILL (``PR_SET_PDEATHSIG`` reaches
only the wrapper's direct child), live on, holding memory, and are
reparented to init (or a subreaper) the moment the run's process dies: after
its death nothing links them to it any more. So the daemon notes a run's
descendants while it lives, at admission and at every rescan (with more
than ``loop.FAMILY_NOTES_PER_RESCAN`` runs tracked, each run's every few
rescans, in turn: the walk is a few reads of /proc per run), and when it
judges the run's end it names those still alive (the same process: pid and
start time, not a reused pid) with their resident memory.

Bounded and cheap, as everything on the daemon's main loop: descendants are
found through ``/proc/PID/task/TID/children`` (no scan of ``/proc``; every
thread of the run's process, the main thread of its descendants), with at
most ``MAX_READS`` reads per run and rescan, at most ``MAX_NOTED`` processes
of the run owner's uid are noted, and only those are looked at again. A
worker started after the run's last noting is not known yet.
"""

from __future__ import annotations

import os
from typing import Optional

from sentinel.host.procid import ProcessIdentity, boot_id, read_small, start_ticks
from sentinel.model.endings import Reason

MAX_NOTED = 64  # processes noted per run: a fork bomb costs the daemon no more than this
MAX_READS = 512  # /proc files read per run and rescan: a run of many threaded processes costs no more
PIDS_SAID = 8  # pids named in the alert; the count says the rest


class _Budget:
    """What one noting may still read of /proc."""

    def __init__(self, reads: int) -> None:
        self.left = reads

    def take(self) -> bool:
        self.left -= 1
        return self.left >= 0


def _children(pid: int, budget: _Budget, every_thread: bool) -> list[int]:
    """``pid``'s children (within ``budget``): those of each of its threads, or of its main thread only."""
    found: list[int] = []
    tasks = [str(pid)]
    if every_thread:
        if not budget.take():
            return found
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            return found
        # The main thread first: a process's workers are most often forked from it.
        tasks.sort(key=lambda tid: tid != str(pid))
    for tid in tasks:
        if not budget.take():
            break
        try:
            text = read_small(f"/proc/{pid}/task/{tid}/children", 65536)
        except OSError:
            continue
        found.extend(int(word) for word in text.split() if word.isdigit())
    return found


def _owner(pid: int) -> Optional[int]:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


def descendants(pid: int, owner_uid: int, limit: int = MAX_NOTED,
                reads: int = MAX_READS) -> tuple[ProcessIdentity, ...]:
    """The live descendants of ``pid`` that ``owner_uid`` owns, breadth first, at most ``limit``,
    found with at most ``reads`` reads of /proc."""
    budget = _Budget(reads)
    boot = boot_id()
    noted: list[ProcessIdentity] = []
    seen = {pid}
    queue = [pid]
    while queue and len(noted) < limit:
        parent = queue.pop(0)
        # Every thread of the run's process (a launcher may fork from any);
        # the main thread only of its descendants (workers, dozens of threads each, rarely fork).
        for child in _children(parent, budget, every_thread=parent == pid):
            if child in seen or len(noted) >= limit:
                continue
            seen.add(child)
            if not budget.take():
                break
            ticks = start_ticks(child)
            if ticks is None or _owner(child) != owner_uid:
                continue  # gone already, or another user's (a setuid helper): not the run's to report
            noted.append(ProcessIdentity(child, ticks, boot))
            queue.append(child)
    return tuple(noted)


def resident_bytes(pid: int) -> int:
    """Resident memory of ``pid`` (0 if it cannot be read)."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:
            fields = statm.read(256).split()
        return int(fields[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def still_alive(noted: tuple[ProcessIdentity, ...]) -> list[tuple[int, int]]:
    """(pid, resident bytes) of each noted process that still runs."""
    return [(ident.pid, resident_bytes(ident.pid)) for ident in noted if ident.is_running()]


def size_text(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"  # pragma: no cover (the loop returns)


def survivors_reason(noted: tuple[ProcessIdentity, ...]) -> Optional[Reason]:
    """The note for the run's alert naming its descendants still alive, if any."""
    alive = still_alive(noted)
    if not alive:
        return None
    pids = ", ".join(str(pid) for pid, _ in alive[:PIDS_SAID]) + (", …" if len(alive) > PIDS_SAID else "")
    return Reason("survivors", {"count": len(alive), "pids": pids,
                                "rss": size_text(sum(rss for _, rss in alive))})
