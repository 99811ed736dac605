"""GPU faults: NVIDIA Xid lines in the kernel log, attached to the run they name.

The NVIDIA driver logs every GPU error as one kernel line::

    NVRM: Xid (PCI:0000:0a:00): 31, pid=13332, name=cuda_plot_k32_v, Ch 00000010, ...
    NVRM: Xid (PCI:0000:b1:00): 79, GPU has fallen off the bus.
    NVRM: Xid (0000:01:00): 31, Ch 0000000b, ...                  (older drivers)

The records come from the OOM detector's ``/dev/kmsg`` reader (one fd, one
pass). A line that names a pid is attached to that process — a run's own
process or a rank of a watched job — when it was logged after the process
started (times since boot), so a reused pid is not blamed. What a code
means and whether it is a fault of the GPU/node (the run cannot go on,
alert now) or of the application (said with the run's ending) follows
NVIDIA's Xid catalogue (https://docs.nvidia.com/deploy/xid-errors/) and
the device plugin's application-error set (13, 31, 43, 45, 68).
"""

from __future__ import annotations

import re
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from sentinel.daemon.decide import Event, EventKind
from sentinel.daemon.job_watch import job_facts
from sentinel.daemon.oom import split_kmsg_record, started_since_boot
from sentinel.jobs import display_id
from sentinel.procid import ProcessIdentity

if TYPE_CHECKING:
    from sentinel.daemon.loop import Daemon
    from sentinel.daemon.runs import TrackedRun

_XID_RE = re.compile(
    r"NVRM: Xid \((?:PCI:)?(?P<bus>[0-9a-fA-F:.]{4,32})\): (?P<code>\d{1,5})"
    r"(?:, pid=(?P<pid>'?[^,']*'?))?(?:, name=(?P<name>[^,]*))?(?:, (?P<text>.*))?$"
)
_LINE_CHARS = 240
_MAX_PIDS = 1024
_MAX_HOST = 64

# code: (what it means, a fault of the GPU or node rather than of the application)
MEANINGS: dict[int, tuple[str, bool]] = {
    13: ("graphics engine exception: usually the application (an illegal or out-of-range access)", False),
    31: ("GPU memory page fault: an illegal address access by the application", False),
    43: ("GPU stopped processing: a software-induced fault in the application", False),
    45: ("preemptive cleanup: the GPU's work was stopped, usually after an earlier error", False),
    48: ("double-bit ECC error: uncorrectable memory error, the GPU needs a reset", True),
    63: ("ECC page retirement or row remapping recorded: reset the GPU when convenient", False),
    64: ("ECC page retirement or row remapping failed: reset the GPU now", True),
    68: ("video processor exception", False),
    74: ("NVLink error: the link to a peer GPU or NVSwitch failed", True),
    79: ("GPU has fallen off the bus: the driver cannot reach it over PCIe", True),
    92: ("high single-bit ECC error rate", False),
    94: ("contained ECC error: the application using that memory must restart", True),
    95: ("uncontained ECC error: every application on the GPU is affected, reset needed", True),
    119: ("GSP RPC timeout: the GPU's firmware stopped answering", True),
    120: ("GSP error: the GPU's firmware failed", True),
    154: ("GPU recovery action changed: a reset or reboot is required", True),
}


@dataclass(frozen=True)
class XidHit:
    code: int
    bus: str  # the GPU's PCI address as the driver wrote it
    pid: Optional[int]  # None when the line names no process ('<unknown>' or absent)
    name: str
    line: str  # the kernel's text, capped
    since_boot: float

    @property
    def meaning(self) -> str:
        known = MEANINGS.get(self.code)
        return known[0] if known else "see NVIDIA's Xid catalogue"

    @property
    def node_fault(self) -> bool:
        known = MEANINGS.get(self.code)
        return bool(known and known[1])

    def names(self, ident: ProcessIdentity) -> bool:
        """The line is about ``ident``: its pid, logged after it started (a pid is reused)."""
        return self.pid == ident.pid and self.since_boot + 1.0 >= started_since_boot(ident)

    def describe(self) -> str:
        """'GPU PCI:0000:0a:00 Xid 79 (GPU has fallen off the bus: ...)'."""
        return f"GPU PCI:{self.bus} Xid {self.code} ({self.meaning})"


def parse_xid_line(text: str, since_boot: float = 0.0) -> Optional[XidHit]:
    """The Xid in one kernel log line (with or without a ``[ time]`` prefix), or None."""
    start = text.find("NVRM: Xid")
    if start < 0:
        return None
    match = _XID_RE.search(text[start:].strip())
    if match is None:
        return None
    raw_pid = (match.group("pid") or "").strip("'")
    pid = int(raw_pid) if raw_pid.isdigit() and 0 < int(raw_pid) < 2**31 else None
    return XidHit(code=int(match.group("code")), bus=match.group("bus"), pid=pid,
                  name=(match.group("name") or "").strip()[:64],
                  line=text[start:].strip()[:_LINE_CHARS], since_boot=since_boot)


class GpuFaults:
    """Xids from the kernel log: new ones to act on, and a memory per process."""

    def __init__(self) -> None:
        self.pending: list[XidHit] = []
        self._by_pid: OrderedDict[int, list[XidHit]] = OrderedDict()
        self.host: deque[XidHit] = deque(maxlen=_MAX_HOST)  # lines that name no process

    def feed(self, record: bytes) -> None:
        """One ``/dev/kmsg`` record (the OOM detector's reader passes each on)."""
        split = split_kmsg_record(record)
        if split is None or b"Xid" not in record:
            return
        hit = parse_xid_line(split[1], split[0])
        if hit is not None:
            self.remember(hit)

    def remember(self, hit: XidHit) -> None:
        self.pending.append(hit)
        if hit.pid is None:
            self.host.append(hit)
            return
        hits = self._by_pid.setdefault(hit.pid, [])
        if len(hits) < 8:  # a GPU that repeats itself says nothing new
            hits.append(hit)
        self._by_pid.move_to_end(hit.pid)
        while len(self._by_pid) > _MAX_PIDS:
            self._by_pid.popitem(last=False)

    def take_pending(self) -> list[XidHit]:
        taken, self.pending = self.pending, []
        return taken

    def of_process(self, ident: ProcessIdentity) -> list[XidHit]:
        """The Xids naming ``ident`` since it started (not an earlier owner of its pid)."""
        return [h for h in self._by_pid.get(ident.pid, []) if h.names(ident)]

    def note_for(self, ident: ProcessIdentity) -> Optional[str]:
        """What the GPU said about this process, for the alert about its end."""
        hits = self.of_process(ident)
        if not hits:
            return None
        seen = list(dict.fromkeys(h.describe() for h in hits))
        return "; ".join(seen[:3])


def attach(daemon: Daemon, hit: XidHit, now: float) -> None:
    """A new Xid: a GPU or node fault alerts the run (or job) it names now;
    an application error waits for that run's ending, which quotes it."""
    if hit.pid is None or not hit.node_fault:
        return
    overrides: dict[str, Any] = {"pid": hit.pid}
    detail = f"{hit.describe()}; kernel: {hit.line}"
    run: Optional[TrackedRun] = daemon.jobs.speaker_for_pid(hit.pid)
    member = daemon.jobs.member_of_pid(hit.pid) if run is not None else None
    if run is not None and member is not None:
        job, rank = member
        if not hit.names(rank.ident):
            return
        detail = f"Job {display_id(job.record)}: {rank.label(job.host)}: {detail}"
        overrides["job"] = job_facts(job, rank.rank)
    else:
        run = next((r for r in daemon.runs.values() if r.record.pid == hit.pid and r.state.is_live), None)
        if run is None or not hit.names(run.identity):
            return
    daemon.apply(run, Event(EventKind.GPU_FAULT), now, detail=detail, overrides=overrides)
