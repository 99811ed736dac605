"""``sentinel history``: the alerts the daemon decided, and what became of each.

Read-only, from the outbox journal beside a running daemon: when, which run,
what happened, and per channel whether it was delivered, is being retried
(and when next) or was dead-lettered (and why). An alert no channel got
(muted, or not in ``alert_on``) is listed as such.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Optional

from sentinel import outbox
from sentinel.safetext import printable
from sentinel.state_dir import StateDir


@dataclass(frozen=True)
class Delivery:
    alert_id: str
    created: float
    run_id: str
    run_name: str
    kind: str
    channel: Optional[str]  # None: no channel was to get it
    state: str  # delivered | retrying | dead | none
    attempts: int = 0
    next_attempt: Optional[float] = None
    done_at: Optional[float] = None
    error: Optional[str] = None


_SHOWN = {outbox.PENDING: "retrying", outbox.DELIVERED: "delivered", outbox.DEAD: "dead"}


def collect(state_path: Path, run: Optional[str] = None) -> list[Delivery]:
    """Every delivery (one per alert and channel), oldest first; ``run`` is a
    run id or name."""
    root = StateDir(state_path).outbox
    out: list[Delivery] = []
    for record in outbox.read_records(root):
        alert = record.alert
        if run is not None and run not in (alert.run_id, alert.run_name):
            continue
        base = Delivery(alert_id=alert.alert_id, created=alert.created, run_id=alert.run_id,
                        run_name=alert.run_name, kind=alert.kind.value, channel=None, state="none")
        if not record.channels:
            out.append(base)
        for name, state in record.channels.items():
            out.append(replace(base, channel=name, state=_SHOWN[state.state], attempts=state.attempts,
                               next_attempt=state.next_attempt if state.pending else None,
                               done_at=state.done_at, error=state.last_error))
    return out


def as_json(deliveries: list[Delivery]) -> list[dict[str, Any]]:
    return [asdict(d) for d in deliveries]


def _when(t: Optional[float]) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t is not None else "-"


def describe(delivery: Delivery, now: float) -> str:
    if delivery.state == "delivered":
        return f"delivered {_when(delivery.done_at)}"
    if delivery.state == "retrying":
        wait = max(0.0, (delivery.next_attempt or now) - now)
        tried = f" after {delivery.attempts} attempt(s)" if delivery.attempts else ""
        return f"retrying{tried}, next try in {wait:.0f}s" + (f": {delivery.error}" if delivery.error else "")
    if delivery.state == "dead":
        return f"dead-lettered: {delivery.error or 'undeliverable'}"
    return "no channel (muted or not in alert_on)"


def format_table(deliveries: list[Delivery], now: Optional[float] = None) -> str:
    now = time.time() if now is None else now
    header = ("WHEN", "RUN", "ENDING", "CHANNEL", "DELIVERY", "ALERT ID")
    rows = [(_when(d.created), printable(d.run_name or d.run_id or "-"), d.kind, printable(d.channel or "-"),
             printable(describe(d, now)), d.alert_id) for d in deliveries]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    lines = []
    for row in [header, *rows]:
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1])
    return "\n".join(line.rstrip() for line in lines)
