"""What the daemon tells the fleet side (metrics, healthchecks.io, the status
page): the hooks of one ``FleetObserver``.

The daemon calls it at a few points (a run tracked, a run's transition and
its alert, a run forgotten, every loop pass) and the delivery workers report
each delivery's result. Every call is O(1), never blocks and never raises
into the loop: the network and the disk are the observers' own threads'
business. ``sentinel.fleet.observers.start_fleet`` builds the observers a config asks for.
"""

from __future__ import annotations

import logging
from typing import Any, Optional, Sequence

from sentinel.model.alerts import Alert

log = logging.getLogger("sentinel.fleet")

# Delivery results, the values of sentinel_deliveries_total's ``result`` label.
DELIVERED, RETRY, DEAD = "delivered", "retry", "dead"


class FleetObserver:
    """The hooks, all no-ops. ``run`` is the daemon's ``TrackedRun``."""

    def run_tracked(self, run: Any, shared_spool: bool) -> None:
        """The daemon started tracking ``run`` (admitted at start-up or later)."""

    def run_changed(self, run: Any, alert: Optional[Alert]) -> None:
        """``run.state`` moved; ``alert`` is the alert that transition raised, if any."""

    def run_forgotten(self, run_id: str) -> None:
        """The daemon no longer tracks ``run_id`` (retired, or dropped after trouble)."""

    def loop_pass(self, now: float) -> None:
        """One pass of the main loop is done (the loop is alive)."""

    def delivery_result(self, channel: str, result: str, count: int = 1) -> None:
        """``count`` alerts to ``channel`` were delivered, will be retried, or are dead."""

    def close(self) -> None:
        """Stop threads and servers."""


class Observers(FleetObserver):
    """Several observers as one; one failing observer never stops the others."""

    def __init__(self, observers: Sequence[FleetObserver]) -> None:
        self.observers = list(observers)

    def _each(self, method: str, *args: Any) -> None:
        for observer in self.observers:
            try:
                getattr(observer, method)(*args)
            except Exception:
                log.exception("%s.%s failed", type(observer).__name__, method)

    def run_tracked(self, run: Any, shared_spool: bool) -> None:
        self._each("run_tracked", run, shared_spool)

    def run_changed(self, run: Any, alert: Optional[Alert]) -> None:
        self._each("run_changed", run, alert)

    def run_forgotten(self, run_id: str) -> None:
        self._each("run_forgotten", run_id)

    def loop_pass(self, now: float) -> None:
        self._each("loop_pass", now)

    def delivery_result(self, channel: str, result: str, count: int = 1) -> None:
        self._each("delivery_result", channel, result, count)

    def close(self) -> None:
        self._each("close")
