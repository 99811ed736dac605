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
from typing import Mapping, Optional

from sentinel.daemon.oom import split_kmsg_record, started_since_boot
from sentinel.host.procid import ProcessIdentity
from sentinel.model.endings import Reason

_XID_RE = re.compile(
    r"NVRM: Xid \((?:PCI:)?(?P<bus>[0-9a-fA-F:.]{4,32})\): (?P<code>\d{1,5})"
    r"(?:, pid=(?P<pid>'?[^,']*'?))?(?:, name=(?P<name>[^,]*))?(?:, (?P<text>.*))?$"
)
_LINE_CHARS = 240
_MAX_PIDS = 1024
_MAX_HOST = 64
_NOTES_MAX = 3  # Xids quoted in one ending


@dataclass(frozen=True)
class Meaning:
    node_fault: bool  # a fault of the GPU or node rather than of the application
    words: Mapping[str, str]  # language -> what the code means


MEANINGS: dict[int, Meaning] = {
    13: Meaning(False, {"en": "graphics engine exception: usually the application (an illegal or "
                              "out-of-range access)",
                        "zh": "图形引擎异常：通常是应用程序的问题（非法或越界访问）"}),
    31: Meaning(False, {"en": "GPU memory page fault: an illegal address access by the application",
                        "zh": "GPU 显存页错误：应用程序访问了非法地址"}),
    43: Meaning(False, {"en": "GPU stopped processing: a software-induced fault in the application",
                        "zh": "GPU 停止处理：应用程序引起的软件故障"}),
    45: Meaning(False, {"en": "preemptive cleanup: the GPU's work was stopped, usually after an "
                              "earlier error",
                        "zh": "抢占式清理：GPU 的工作被停止，通常发生在先前的错误之后"}),
    48: Meaning(True, {"en": "double-bit ECC error: uncorrectable memory error, the GPU needs a reset",
                       "zh": "双比特 ECC 错误：不可纠正的显存错误，需要重置 GPU"}),
    63: Meaning(False, {"en": "ECC page retirement or row remapping recorded: reset the GPU when convenient",
                        "zh": "已记录 ECC 页退役或行重映射：方便时重置 GPU"}),
    64: Meaning(True, {"en": "ECC page retirement or row remapping failed: reset the GPU now",
                       "zh": "ECC 页退役或行重映射失败：请立即重置 GPU"}),
    68: Meaning(False, {"en": "video processor exception", "zh": "视频处理器异常"}),
    74: Meaning(True, {"en": "NVLink error: the link to a peer GPU or NVSwitch failed",
                       "zh": "NVLink 错误：到对端 GPU 或 NVSwitch 的链路故障"}),
    79: Meaning(True, {"en": "GPU has fallen off the bus: the driver cannot reach it over PCIe",
                       "zh": "GPU 已从总线上掉线：驱动无法通过 PCIe 访问它"}),
    92: Meaning(False, {"en": "high single-bit ECC error rate", "zh": "单比特 ECC 错误率过高"}),
    94: Meaning(True, {"en": "contained ECC error: the application using that memory must restart",
                       "zh": "已隔离的 ECC 错误：使用该显存的应用程序必须重启"}),
    95: Meaning(True, {"en": "uncontained ECC error: every application on the GPU is affected, reset needed",
                       "zh": "未隔离的 ECC 错误：GPU 上的所有应用程序都受影响，需要重置"}),
    119: Meaning(True, {"en": "GSP RPC timeout: the GPU's firmware stopped answering",
                        "zh": "GSP RPC 超时：GPU 固件停止响应"}),
    120: Meaning(True, {"en": "GSP error: the GPU's firmware failed", "zh": "GSP 错误：GPU 固件故障"}),
    154: Meaning(True, {"en": "GPU recovery action changed: a reset or reboot is required",
                        "zh": "GPU 恢复操作已变更：需要重置或重启"}),
}
UNKNOWN = Meaning(False, {"en": "see NVIDIA's Xid catalogue", "zh": "见 NVIDIA 的 Xid 目录"})


@dataclass(frozen=True)
class XidHit:
    code: int
    bus: str  # the GPU's PCI address as the driver wrote it
    pid: Optional[int]  # None when the line names no process ('<unknown>' or absent)
    name: str
    line: str  # the kernel's text, capped
    since_boot: float

    @property
    def meaning(self) -> Meaning:
        return MEANINGS.get(self.code, UNKNOWN)

    @property
    def node_fault(self) -> bool:
        return self.meaning.node_fault

    def names(self, ident: ProcessIdentity) -> bool:
        """The line is about ``ident``: its pid, logged after it started (a pid is reused)."""
        return self.pid == ident.pid and self.since_boot + 1.0 >= started_since_boot(ident)

    def reason(self) -> Reason:
        """'GPU PCI:0000:0a:00 Xid 79 (GPU has fallen off the bus: ...)'."""
        return Reason("gpu_xid", {"bus": self.bus, "code": self.code, "meaning": dict(self.meaning.words)})

    def fault_reason(self) -> Reason:
        """The alert about a GPU or node fault: what it means, then the kernel's line."""
        return Reason("gpu_fault", {"gpu": self.reason().as_arg(), "line": self.line})


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

    def notes_for(self, ident: ProcessIdentity) -> list[Reason]:
        """What the GPU said about this process, for the alert about its end."""
        seen = {(h.bus, h.code): h for h in self.of_process(ident)}
        return [h.reason() for h in list(seen.values())[:_NOTES_MAX]]
