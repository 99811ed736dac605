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

from sentinel.common.safetext import printable
from sentinel.delivery import outbox
from sentinel.formats.state_dir import StateDir


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
    silenced: Optional[str] = None  # why no channel was to get it (state "none")


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
                        run_name=alert.run_name, kind=alert.kind.value, channel=None, state="none",
                        silenced=alert.silenced)
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
    # Records written before the daemon said why cannot tell the two apart.
    return f"no channel ({delivery.silenced or 'muted or not in alert_on'})"


_RUN_MIN, _DELIVERY_MIN = 12, 24  # narrower than this, a row wraps rather than says nothing


def format_table(deliveries: list[Delivery], now: Optional[float] = None,
                 width: Optional[int] = None) -> str:
    """The table, in ``width`` columns (None: as wide as it needs): the run
    names and the delivery column are cut first (with "…"), then the alert ids."""
    now = time.time() if now is None else now
    header = ("WHEN", "RUN", "ENDING", "CHANNEL", "DELIVERY", "ALERT ID")
    rows = [(_when(d.created), printable(d.run_name or d.run_id or "-"), d.kind, printable(d.channel or "-"),
             printable(describe(d, now)), d.alert_id) for d in deliveries]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    if width is not None:
        over = sum(widths) + 2 * (len(widths) - 1) - width
        for column, least in ((4, _DELIVERY_MIN), (1, _RUN_MIN), (5, len(header[5]))):
            if over <= 0:
                break
            cut = min(over, max(0, widths[column] - least))
            widths[column] -= cut
            over -= cut
    lines = []
    for row in [header, *rows]:
        cells = [_fit(cell, w) for cell, w in zip(row, widths)]
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(cells, widths)))
    return "\n".join(line.rstrip() for line in lines)


def _fit(cell: str, width: int) -> str:
    return cell if len(cell) <= width else cell[: max(0, width - 1)] + "…"
