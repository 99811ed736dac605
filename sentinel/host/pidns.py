"""PID namespaces: naming a process across them, and finding it from outside.

A process in a container sees itself under its own PID namespace's numbers
(often pid 1); a daemon on the host sees it under another. The recorder
writes the namespace it lives in (``RunRecord.pidns``: ``"<st_dev>:<st_ino>"``
of ``/proc/self/ns/pid``) beside its in-namespace pid and start ticks. Only
the triple (namespace, innermost ``NSpid``, start ticks) on this boot names
the process: the kernel reuses a namespace's inode once it dies, and pids
inside it, but never the whole triple at once (start ticks differ).

``resolve`` finds that process in the reader's own namespace by walking
``/proc`` (``index``: each entry one ``stat`` of ``ns/pid``; only the wanted
namespaces' members are read further; one walk serves any number of runs),
opens a pidfd for it and checks the identity again *after* the pidfd pins
the pid (``verify``), so a pid reused between the walk and
the open is never taken for the run. A reader sees only its own namespace
and those below it: a daemon in a container without the host's PID
namespace cannot find a process of the host or of another container
(``sees_every_namespace`` is then False). Stdlib only.
"""

from __future__ import annotations

import contextlib
import os
import re
from typing import Collection, NamedTuple, Optional

from sentinel.host.procid import start_ticks, thread_start_ticks

# The initial PID namespace's inode is a kernel constant (PROC_PID_INIT_INO).
INIT_PIDNS_INO = 0xEFFFFFFC
_PIDNS_RE = re.compile(r"^[0-9]{1,20}:[0-9]{1,20}$")


def is_pidns(value: str) -> bool:
    """True for a ``"<dev>:<inode>"`` namespace name (as ``RunRecord.pidns`` holds)."""
    return bool(_PIDNS_RE.match(value))


def namespace_of(pid: Optional[int] = None) -> str:
    """``"<dev>:<inode>"`` of the PID namespace of ``pid`` (default: this process); "" if unknown."""
    path = "/proc/self/ns/pid" if pid is None else f"/proc/{pid}/ns/pid"
    try:
        st = os.stat(path)
    except OSError:
        return ""
    return f"{st.st_dev}:{st.st_ino}"


def sees_every_namespace() -> bool:
    """True if this process lives in the initial PID namespace (the host's):
    from there every process of every namespace is visible."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino == INIT_PIDNS_INO
    except OSError:
        return False


def ns_pids(pid: int, tid: Optional[int] = None) -> Optional[list[int]]:
    """``NSpid`` of ``pid`` (or of its thread ``tid``): its pid in each namespace
    from the reader's down to its own; None if gone or unreadable."""
    path = f"/proc/{pid}/status" if tid is None else f"/proc/{pid}/task/{tid}/status"
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("NSpid:"):
                    return [int(x) for x in line.split()[1:]]
    except (OSError, ValueError):
        return None
    return None


class Resolved(NamedTuple):
    pid: int  # the process as the reader's namespace numbers it
    pidfd: Optional[int]  # a pidfd pinning it (None where pidfd_open is unavailable)


Key = tuple[str, int, int]  # (namespace, innermost pid, start ticks): one process on this boot


def _key_of(pid: int, namespace: str) -> Optional[Key]:
    ticks = start_ticks(pid)
    nspids = ns_pids(pid)
    if ticks is None or not nspids:
        return None
    return (namespace, nspids[-1], ticks)


def index(namespaces: Collection[str]) -> dict[Key, int]:
    """One walk of ``/proc``: every visible process of ``namespaces``, by its
    key, to its pid here. Each entry costs one ``stat`` of ``ns/pid``; only
    members of the wanted namespaces are read further."""
    found: dict[Key, int] = {}
    if not namespaces:
        return found
    try:
        entries = os.listdir("/proc")
    except OSError:
        return found
    for name in entries:
        if not name.isdigit():
            continue
        pid = int(name)
        namespace = namespace_of(pid)
        if namespace not in namespaces:
            continue
        key = _key_of(pid, namespace)
        if key is not None:
            found[key] = pid
    return found


def verify(pid: int, key: Key) -> Optional[Resolved]:
    """``pid`` pinned by a pidfd, if it is (still) the process ``key`` names; the caller owns the pidfd."""
    fd: Optional[int] = None
    if hasattr(os, "pidfd_open"):
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            return None  # gone meanwhile
    # Pinned now: if it still matches, it is the run's process, not a reuse of the pid.
    if namespace_of(pid) == key[0] and _key_of(pid, key[0]) == key:
        return Resolved(pid, fd)
    if fd is not None:
        os.close(fd)
    return None


def resolve(namespace: str, inner_pid: int, ticks: int) -> Optional[Resolved]:
    """The process of ``namespace`` whose own pid is ``inner_pid`` and whose
    start time is ``ticks``, as this process's namespace sees it; None if no
    visible process is that one (gone, or in a namespace not visible here).

    The caller owns the returned pidfd.
    """
    key = (namespace, inner_pid, ticks)
    pid = index({namespace}).get(key)
    return None if pid is None else verify(pid, key)


def map_thread(host_pid: int, inner_tid: int, ticks: int) -> Optional[int]:
    """The reader's id of thread ``inner_tid`` (as its own namespace numbers it)
    of process ``host_pid``, with start time ``ticks``; None if not found."""
    with contextlib.suppress(OSError):
        for name in os.listdir(f"/proc/{host_pid}/task"):
            if not name.isdigit():
                continue
            tid = int(name)
            nspids = ns_pids(host_pid, tid)
            if nspids and nspids[-1] == inner_tid and thread_start_ticks(host_pid, tid) == ticks:
                return tid
    return None
