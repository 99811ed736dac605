"""Stamps along one alert's way through the daemon, for the latency benchmark.

Off unless the daemon's environment names a file in ``SENTINEL_LATENCY_TRACE``
(``benchmarks/kill_to_alert.py`` sets it); off, every call is one attribute
test. On, each stage of a state alert is a ``CLOCK_MONOTONIC`` stamp in
nanoseconds (one clock for every process of the machine, so the benchmark
lines them up with its own ``kill()`` and the loopback server's arrival
stamp):

    woke      the loop's epoll returned with the event (a pidfd readable, ...)
    decided   the transition is made (the run's files read, the ending known)
    built     the alert is built, before it goes to the outbox
    handed    it is in the outbox's memory and the delivery workers are being woken
    picked    a delivery worker took the alert and starts the request
    enqueued  its outbox record is in place (renamed; after the first request is
              written, its fsync off the loop)
    answered  the channel's answer came back

Nothing is written on the way: an alert's line (one JSON object,
``{"alert_id": ..., "stages": {...}}``) is appended once its first request
was answered, by the delivery worker, after the request. At most
``MAX_OPEN`` alerts are followed at once (older ones are dropped).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import OrderedDict
from typing import Optional

ENV = "SENTINEL_LATENCY_TRACE"
MAX_OPEN = 1000
STAGES = ("woke", "decided", "built", "handed", "picked", "enqueued", "answered")


class LatencyTrace:
    """The stamps of alerts under way; ``enabled`` False: every call does nothing."""

    def __init__(self, path: Optional[str]) -> None:
        self._fd: Optional[int] = None
        if path:
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self.enabled = self._fd is not None
        self._woke = 0
        self._open: OrderedDict[str, dict[str, int]] = OrderedDict()
        self._lock = threading.Lock()

    def woke(self) -> None:
        """The loop's wait ended: the stamp an alert decided in this pass starts from."""
        if self.enabled:
            self._woke = time.monotonic_ns()

    def begin(self, alert_id: str) -> None:
        """``alert_id`` is decided (in the pass that last ``woke``)."""
        if not self.enabled:
            return
        now = time.monotonic_ns()
        with self._lock:
            self._open[alert_id] = {"woke": self._woke or now, "decided": now}
            while len(self._open) > MAX_OPEN:
                self._open.popitem(last=False)

    def stamp(self, alert_id: str, stage: str) -> None:
        if not self.enabled:
            return
        now = time.monotonic_ns()
        with self._lock:
            stages = self._open.get(alert_id)
            if stages is not None:
                stages.setdefault(stage, now)

    def finish(self, alert_id: str) -> None:
        """The alert's first answer came back: stamp it and write its line."""
        if not self.enabled:
            return
        self.stamp(alert_id, "answered")
        with self._lock:
            stages = self._open.pop(alert_id, None)
        if stages is not None and self._fd is not None:
            line = json.dumps({"alert_id": alert_id, "stages": stages}) + "\n"
            os.write(self._fd, line.encode())


TRACE = LatencyTrace(os.environ.get(ENV))


def read(path: str) -> dict[str, dict[str, int]]:
    """The lines a trace file holds: alert id -> stage -> stamp (ns)."""
    out: dict[str, dict[str, int]] = {}
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                entry = json.loads(line)
                out[entry["alert_id"]] = entry["stages"]
    except FileNotFoundError:
        pass
    return out
