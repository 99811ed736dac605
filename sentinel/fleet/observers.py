"""The fleet side of the daemon: metrics, healthchecks.io and the status page.

``start_fleet(config, outbox, ...)`` builds the observers
(``sentinel.model.observer.FleetObserver``) a config asks for (none: the no-op
observer) and starts their threads.
"""

from __future__ import annotations

import logging
from typing import Any

from sentinel.model.observer import FleetObserver, Observers

log = logging.getLogger("sentinel.fleet")


def start_fleet(config: Any, outbox: Any) -> FleetObserver:
    """The observers ``config`` asks for, started. Raises OSError when the
    metrics address cannot be bound, RuntimeError when prometheus_client is missing."""
    observers: list[FleetObserver] = []
    try:
        if config.metrics is not None:
            from sentinel.fleet.metrics import Metrics

            observers.append(Metrics(config, outbox).start())
        if config.healthchecks is not None:
            from sentinel.fleet.healthchecks import Healthchecks

            observers.append(Healthchecks(config.healthchecks, config.host,
                                          loop_slack=2 * config.rescan_interval).start())
    except BaseException:
        Observers(observers).close()
        raise
    if not observers:
        return FleetObserver()
    return observers[0] if len(observers) == 1 else Observers(observers)
