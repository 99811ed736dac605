"""Was it the OOM killer? Evidence from the kernel log and the run's cgroup.

Three sources, best first:

* ``/dev/kmsg``, opened non-blocking and positioned at its end when the
  daemon starts, registered in the daemon's epoll and drained whenever it is
  readable and before any exit is judged (the kernel logs the kill before the
  victim is gone, so the line is already there when its pidfd fires);
* ``dmesg``, when ``/dev/kmsg`` cannot be opened;
* the run's cgroup ``oom_kill`` counter (v2 ``memory.events``, v1
  ``memory.oom_control``), read while the process is alive — after its death
  ``/proc/<pid>/cgroup`` is gone — and compared after it exits.

A kernel line only counts for a process if it names its pid *and* was logged
after the process started (times since boot), so a reused pid is not blamed.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import subprocess
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from sentinel.host.procid import ProcessIdentity, read_small
from sentinel.model.endings import Reason

log = logging.getLogger("sentinel.daemon.oom")

_KILLED_RE = re.compile(r"Killed process (\d+) \(([^)]*)\)")
_OOM_KILL_RE = re.compile(r"oom-kill:.*?\btask=([^,]*),pid=(\d+)")
_DMESG_RE = re.compile(r"^\[\s*(\d+\.\d+)\]\s?(.*)$")
_MAX_HITS = 1024
_LINE_CHARS = 240


@dataclass(frozen=True)
class OomHit:
    pid: int
    since_boot: float  # seconds since boot when the kernel logged it
    line: str


def parse_oom_line(text: str) -> Optional[tuple[int, str]]:
    """(pid, line) if ``text`` is a kernel OOM-kill line, else None."""
    match = _KILLED_RE.search(text)
    if match:
        return int(match.group(1)), text.strip()
    match = _OOM_KILL_RE.search(text)
    if match:
        return int(match.group(2)), text.strip()
    return None


def split_kmsg_record(record: bytes) -> Optional[tuple[float, str]]:
    """One /dev/kmsg record, ``prio,seq,usec,flags;message`` (+ continuation
    lines): (seconds since boot, first message line), or None if malformed."""
    head, sep, body = record.partition(b";")
    if not sep:
        return None
    parts = head.split(b",")
    try:
        usec = int(parts[2])
    except (IndexError, ValueError):
        return None
    return usec / 1e6, body.split(b"\n", 1)[0].decode("utf-8", "replace")


def parse_kmsg_record(record: bytes) -> Optional[OomHit]:
    split = split_kmsg_record(record)
    if split is None:
        return None
    found = parse_oom_line(split[1])
    if found is None:
        return None
    return OomHit(found[0], split[0], found[1][:_LINE_CHARS])


def parse_dmesg(output: str) -> list[OomHit]:
    hits = []
    for raw in output.splitlines():
        match = _DMESG_RE.match(raw)
        if not match:
            continue
        found = parse_oom_line(match.group(2))
        if found is not None:
            hits.append(OomHit(found[0], float(match.group(1)), found[1][:_LINE_CHARS]))
    return hits


def _clock_ticks() -> int:
    try:
        return os.sysconf("SC_CLK_TCK")
    except (ValueError, OSError):
        return 100


def started_since_boot(ident: ProcessIdentity) -> float:
    return ident.start_ticks / _clock_ticks()


# ------------------------------------------------------------ cgroups


@dataclass(frozen=True)
class CgroupCounter:
    """Where a process's cgroup counts OOM kills, and the count when read."""

    path: Path  # memory.events (v2) or memory.oom_control (v1)
    count: int

    def read_again(self) -> Optional[int]:
        return _read_oom_kill(self.path)


def _read_oom_kill(path: Path) -> Optional[int]:
    try:
        for line in read_small(str(path)).splitlines():  # asked on the way to every kill alert
            key, _, value = line.partition(b" ")
            if key == b"oom_kill":
                return int(value)
    except (OSError, ValueError):
        return None
    return None


# The daemon's own mount table, read at most this often: each run's admission
# asked, and on a host with a hundred container mounts reading it cost the loop
# about a millisecond. A cgroup hierarchy mounted meanwhile is seen this much later.
MOUNTS_MAX_AGE = 30.0
_mounts_read: tuple[float, tuple[Optional[Path], Optional[Path]]] = (float("-inf"), (None, None))


def _cgroup_mounts() -> tuple[Optional[Path], Optional[Path]]:
    """Mount points of the cgroup2 hierarchy and of the v1 memory controller."""
    global _mounts_read
    now = time.monotonic()
    if now - _mounts_read[0] < MOUNTS_MAX_AGE:
        return _mounts_read[1]
    found = _read_cgroup_mounts()
    _mounts_read = (now, found)
    return found


def _read_cgroup_mounts() -> tuple[Optional[Path], Optional[Path]]:
    v2 = v1_memory = None
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                fields, rfields = left.split(), right.split()
                if len(fields) < 5 or len(rfields) < 3:
                    continue
                fstype, super_opts = rfields[0], rfields[2].split(",")
                if fstype == "cgroup2" and v2 is None:
                    v2 = Path(fields[4])
                elif fstype == "cgroup" and "memory" in super_opts and v1_memory is None:
                    v1_memory = Path(fields[4])
    except OSError:
        pass
    return v2, v1_memory


def cgroup_counter(pid: int) -> Optional[CgroupCounter]:
    """The OOM-kill counter of ``pid``'s memory cgroup, read now (while alive)."""
    try:
        with open(f"/proc/{pid}/cgroup", encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    v2_mount, v1_mount = _cgroup_mounts()
    candidates: list[Path] = []
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, cg_path = rest.partition(":")
        if cg_path in ("", "/"):
            continue  # the root cgroup has no counter of its own
        rel = cg_path.lstrip("/")
        if hierarchy == "0" and controllers == "" and v2_mount is not None:
            candidates.insert(0, v2_mount / rel / "memory.events")
        elif "memory" in controllers.split(",") and v1_mount is not None:
            candidates.append(v1_mount / rel / "memory.oom_control")
    for path in candidates:
        count = _read_oom_kill(path)
        if count is not None:
            return CgroupCounter(path, count)
    return None


# ------------------------------------------------------------ the kernel log


class OomDetector:
    """Remembers recent OOM kills from the kernel log; answers per process."""

    def __init__(self, kmsg_path: str = "/dev/kmsg", use_dmesg: bool = True) -> None:
        self.fd: Optional[int] = None
        self._use_dmesg = use_dmesg
        # Without /dev/kmsg: one dmesg read serves every death judged in one loop pass
        # (all were seen before it began, and the kernel logs an OOM kill before the
        # kill), so a flood of SIGKILLs costs a read per pass, not one per death.
        self._dmesg_hits: Optional[dict[int, OomHit]] = None
        self._hits: OrderedDict[int, OomHit] = OrderedDict()
        # Other readers of the same records (GPU Xid lines): one fd, one pass.
        self.listeners: list[Callable[[bytes], None]] = []
        try:
            fd = os.open(kmsg_path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            log.info("kernel log %s not readable (%s): OOM causes from dmesg/cgroups only",
                     kmsg_path, exc.strerror)
            return
        with contextlib.suppress(OSError):
            os.lseek(fd, 0, os.SEEK_END)  # only kills from now on; older ones are history
        self.fd = fd

    def drain(self) -> None:
        """Read every pending kernel log record (non-blocking)."""
        if self.fd is None:
            return
        for _ in range(100_000):  # bounded: the ring buffer holds far fewer
            try:
                record = os.read(self.fd, 8192)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno == errno.EPIPE:
                    continue  # records were overwritten before we read them
                if exc.errno == errno.EINVAL:
                    continue  # a record larger than our buffer: skipped
                log.warning("reading the kernel log failed (%s); OOM detection via kmsg stops",
                            exc.strerror)
                self.close()
                return
            if not record:
                return
            for listener in self.listeners:
                listener(record)
            hit = parse_kmsg_record(record)
            if hit is not None:
                self._remember(hit)

    def _remember(self, hit: OomHit) -> None:
        self._hits[hit.pid] = hit
        self._hits.move_to_end(hit.pid)
        while len(self._hits) > _MAX_HITS:
            self._hits.popitem(last=False)

    def cause(self, ident: ProcessIdentity, counter: Optional[CgroupCounter]) -> Optional[str]:
        """Why ``ident`` died in English, if the kernel can tell; None if unknown."""
        found = self.evidence(ident, counter)
        return found.text("en") if found is not None else None

    def evidence(self, ident: ProcessIdentity, counter: Optional[CgroupCounter]) -> Optional[Reason]:
        """The OOM killer's part in ``ident``'s death, if the kernel can tell; None if unknown."""
        started = started_since_boot(ident)
        self.drain()
        hit = self._hits.get(ident.pid)
        if hit is None and self.fd is None and self._use_dmesg:
            hit = self._from_dmesg(ident.pid)
        if hit is not None and hit.since_boot + 1.0 >= started:
            return Reason("oom_kernel", {"line": hit.line})
        if counter is not None:
            now = counter.read_again()
            if now is not None and now > counter.count:
                return Reason("oom_cgroup", {"path": str(counter.path)})
        return None

    def new_pass(self) -> None:
        """The loop's next pass: deaths seen from now on may postdate the last dmesg read."""
        self._dmesg_hits = None

    def _from_dmesg(self, pid: int) -> Optional[OomHit]:
        if self._dmesg_hits is None:
            self._dmesg_hits = self._read_dmesg()
        return self._dmesg_hits.get(pid)

    def _read_dmesg(self) -> dict[int, OomHit]:
        """The kernel log's OOM kills by pid (the last per pid); a dmesg that cannot read
        it is not asked again (it would cost a process per pass for nothing)."""
        try:
            out = subprocess.run(["dmesg"], capture_output=True, text=True, timeout=5, check=False)
        except (OSError, subprocess.SubprocessError) as exc:
            why = str(exc)
        else:
            if out.returncode == 0:
                return {hit.pid: hit for hit in parse_dmesg(out.stdout)}
            why = f"exit status {out.returncode}"
        log.info("dmesg cannot read the kernel log either (%s): OOM causes from cgroups only", why)
        self._use_dmesg = False
        return {}

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
