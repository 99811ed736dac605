"""NCCL watchdog timeouts, recognised in a rank's error text.

When a peer rank dies or hangs, the survivors' collectives never complete
and ProcessGroupNCCL's watchdog aborts them after the process group's
timeout (10 minutes by default)::

    [Rank 0] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=1580,
    OpType=ALLREDUCE, NumelIn=466119168, NumelOut=466119168, Timeout(ms)=600000)
    ran for 600060 milliseconds before timing out.

The crash is then a symptom: the alert says so (a ``Reason``, worded per language).
"""

from __future__ import annotations

import re
from typing import Any, Optional

from sentinel.model.endings import Reason

_WATCHDOG_RE = re.compile(
    r"Watchdog caught collective operation timeout: WorkNCCL\((?P<work>.*?)\) ran for "
    r"(?P<ran>\d+) milliseconds"
)
_FIELD_RE = re.compile(r"(SeqNum|OpType|Timeout\(ms\))=([^,\s]+)")
_STUCK_RE = re.compile(r"ProcessGroupNCCL's watchdog got stuck for (\d+) seconds")
_RANK_RE = re.compile(r"\[(?:PG [^\]]*?)?Rank (\d+)\]")


def explain(error: Optional[str]) -> Optional[Reason]:
    """What an NCCL watchdog timeout in ``error`` means, or None."""
    if not error or "atchdog" not in error:
        return None
    match = _WATCHDOG_RE.search(error)
    if match is not None:
        fields = dict(_FIELD_RE.findall(match.group("work")))
        rank = _RANK_RE.search(error[max(0, match.start() - 80):match.start()])
        limit = fields.get("Timeout(ms)")
        args: dict[str, Any] = {
            "at_rank": Reason("nccl_rank", {"rank": rank.group(1)}).as_arg() if rank else "",
            "op": fields.get("OpType") or Reason("nccl_collective").as_arg(),
            "seq": f" #{fields['SeqNum']}" if "SeqNum" in fields else "",
            "ran": int(match.group("ran")) / 1000,
            "limit": Reason("nccl_limit", {"timeout": int(limit) / 1000}).as_arg()
            if limit and limit.isdigit() else ""}
        return Reason("nccl_timeout", args)
    stuck = _STUCK_RE.search(error)
    if stuck is not None:
        return Reason("nccl_stuck", {"seconds": stuck.group(1)})
    return None
