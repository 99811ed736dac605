"""NCCL watchdog timeouts, recognised in a rank's error text.

When a peer rank dies or hangs, the survivors' collectives never complete
and ProcessGroupNCCL's watchdog aborts them after the process group's
timeout (10 minutes by default)::

    [Rank 0] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=1580,
    OpType=ALLREDUCE, NumelIn=466119168, NumelOut=466119168, Timeout(ms)=600000)
    ran for 600060 milliseconds before timing out.

The crash is then a symptom: the alert says so, in words.
"""

from __future__ import annotations

import re
from typing import Optional

_WATCHDOG_RE = re.compile(
    r"Watchdog caught collective operation timeout: WorkNCCL\((?P<work>.*?)\) ran for "
    r"(?P<ran>\d+) milliseconds"
)
_FIELD_RE = re.compile(r"(SeqNum|OpType|Timeout\(ms\))=([^,\s]+)")
_STUCK_RE = re.compile(r"ProcessGroupNCCL's watchdog got stuck for (\d+) seconds")
_RANK_RE = re.compile(r"\[(?:PG [^\]]*?)?Rank (\d+)\]")


def explain(error: Optional[str]) -> Optional[str]:
    """One sentence about an NCCL watchdog timeout in ``error``, or None."""
    if not error or "atchdog" not in error:
        return None
    match = _WATCHDOG_RE.search(error)
    if match is not None:
        fields = dict(_FIELD_RE.findall(match.group("work")))
        rank = _RANK_RE.search(error[max(0, match.start() - 80):match.start()])
        who = f"rank {rank.group(1)}: " if rank else ""
        op = fields.get("OpType", "a collective")
        seq = f" #{fields['SeqNum']}" if "SeqNum" in fields else ""
        limit = fields.get("Timeout(ms)")
        after = f"{int(match.group('ran')) / 1000:.0f}s" + (f" (timeout {int(limit) / 1000:.0f}s)"
                                                             if limit and limit.isdigit() else "")
        return (f"NCCL watchdog timeout: {who}{op}{seq} did not complete in {after}; "
                "a peer rank died or hung")
    stuck = _STUCK_RE.search(error)
    if stuck is not None:
        return (f"NCCL watchdog stuck for {stuck.group(1)}s (heartbeat monitor): "
                "the communicator hung, likely in the driver or a dead peer")
    return None
