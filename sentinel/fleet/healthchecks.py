"""healthchecks.io (hosted or self-hosted) as this node's dead-man's switch.

At start the daemon creates or updates its node's check through the
Management API (``POST <url>/api/v3/checks/``, unique by name = the
daemon's ``host:``, with the configured period and grace: the ping URL's
auto-create would give 1 day / 1 hour) and then pings it from a background
thread, but only while the main loop is passing: a daemon that is dead,
frozen, wedged, or on a host that lost power or network stops pinging, and
healthchecks alerts through its own integrations after period + grace.

With ``per_run: true`` each run name also gets a check (``<host> <run>``):
``/start?rid=`` when the daemon starts tracking the run, then success,
``/<exit code>``, ``/fail`` or ``/log`` (stalled, recovered) with the same
``rid`` and the alert's text as the body. A run check's period and grace are
the maximum, so a long run is never "late": only its ending signals.

Rate limits: at most 4 pings a minute per check (healthchecks may drop more
than 5) and 60 Management API calls a minute (it answers 429 past 100).
Nothing here runs on the daemon's loop; the API key is registered for
redaction and sent only in request bodies, never in a URL.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Optional
from urllib.parse import urlsplit

from sentinel.channels import http
from sentinel.channels.base import DeliveryError
from sentinel.channels.console import render_text
from sentinel.common.fleet_labels import clean_label
from sentinel.common.redact import redact, register
from sentinel.delivery.workers import RateLimiter
from sentinel.fleet.keys import HC_MAX_SECONDS, HealthchecksConfig
from sentinel.model.alerts import Alert
from sentinel.model.endings import Ping
from sentinel.model.observer import FleetObserver

log = logging.getLogger("sentinel.healthchecks")

API_PATH = "/api/v3/checks/"
PINGS_PER_MINUTE = 4
API_CALLS_PER_MINUTE = 60
MIN_PING_INTERVAL = 15.0
NAME_MAX = 100
BODY_MAX = 10_000  # healthchecks keeps the first 10 kB of a ping body
MAX_QUEUED = 10_000
RETRY_BASE, RETRY_CAP = 10.0, 300.0
ERRORS = {
    401: "the API key is missing or wrong; use a read-write key from the project's settings",
    403: "the API key cannot do this (a read-only key?) or the project reached its check limit",
    400: "healthchecks refused the check's settings",
}


@dataclass
class _Signal:
    """One per-run ping: ``suffix`` is "/start", "", "/fail", "/log" or "/<exit code>"."""

    check: str
    suffix: str
    rid: str
    body: str
    attempts: int = 0


def run_rid(run_id: str) -> str:
    """A stable UUID for a run (healthchecks' ``rid`` must be a UUID)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "run-sentinel:" + run_id))


def ending_suffix(alert: Alert) -> Optional[str]:
    """The ping for an alert about a run, as its ending's row says (``Ending.ping``):
    success, /<exit code> (a failure whose exit code is known), /fail or /log;
    None for what is not about a run's life (a message, a test)."""
    ping = alert.kind.ending.ping
    if ping is Ping.SUCCESS:
        return ""
    if ping is Ping.LOG:
        return "/log"
    if ping is Ping.FAIL:
        code = alert.exit_code
        return f"/{code}" if code is not None and 0 < code < 256 else "/fail"
    return None


class Healthchecks(FleetObserver):
    def __init__(self, config: HealthchecksConfig, host: str, *, loop_slack: float = 60.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.host = clean_label(host, NAME_MAX)
        self.clock = clock
        self.ping_interval = max(MIN_PING_INTERVAL, config.period / 4)
        # Passes come at least every rescan interval; longer without one: the loop is stuck.
        self.loop_slack = max(loop_slack, self.ping_interval)
        self.last_loop: Optional[float] = None
        self.ping_urls: dict[str, str] = {}  # check name -> ping URL
        self.signals: collections.deque[_Signal] = collections.deque()
        self.api_limiter = RateLimiter(max_count=API_CALLS_PER_MINUTE, window=60.0)
        self.ping_limiters: dict[str, RateLimiter] = {}
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.next_node_try = 0.0
        self.next_ping = 0.0
        self.next_signal = 0.0
        self.node_failures = 0
        self._said_stuck = False
        register([config.api_key])

    # ------------------------------------------------------------ hooks (the daemon's thread)

    def loop_pass(self, now: float) -> None:
        self.last_loop = now

    def run_tracked(self, run: Any, shared_spool: bool) -> None:
        if self.config.per_run and run.state.is_live:
            name = run.record.name or run.record.labels.get("experiment") or run.run_id
            self._queue(_Signal(self.run_check_name(name), "/start", run_rid(run.run_id), ""))

    def run_changed(self, run: Any, alert: Optional[Alert]) -> None:
        if not self.config.per_run or alert is None:
            return
        suffix = ending_suffix(alert)
        if suffix is not None:
            name = self.run_check_name(alert.run_name or alert.run_id)
            self._queue(_Signal(name, suffix, run_rid(alert.run_id), render_text(alert)[:BODY_MAX]))

    def _queue(self, signal: _Signal) -> None:
        with self.lock:
            if len(self.signals) >= MAX_QUEUED:
                dropped = self.signals.popleft()
                log.warning("healthchecks: too many run signals queued; dropped one for %s", dropped.check)
            self.signals.append(signal)
        self.wake.set()

    def run_check_name(self, run_name: str) -> str:
        return clean_label(f"{self.host} {run_name}", NAME_MAX)

    # ------------------------------------------------------------ the thread

    def start(self) -> Healthchecks:
        self._thread = threading.Thread(target=self._run, name="sentinel-healthchecks", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self.wake.set()
        if self._thread is not None:
            self._thread.join(20.0)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                wait = self.step()
            except Exception:  # never let a surprise end the dead-man's switch
                log.exception("healthchecks step failed")
                wait = RETRY_BASE
            self.wake.wait(max(0.05, wait))
            self.wake.clear()

    def step(self) -> float:
        """Do what is due; seconds until something may be due again."""
        now = self.clock()
        waits = [self._node_step(now)]
        waits.append(self._signal_step(now))
        return min(waits)

    def _node_step(self, now: float) -> float:
        node = self.host
        if node not in self.ping_urls:
            if now < self.next_node_try:
                return self.next_node_try - now
            try:
                self.ensure_check(node, self.config.period, self.config.grace, "run-sentinel node")
                log.info("healthchecks: node check %r ready (period %gs, grace %gs)", node,
                         self.config.period, self.config.grace)
                self.node_failures = 0
            except DeliveryError as exc:
                self.node_failures += 1
                delay = min(RETRY_CAP, RETRY_BASE * 2 ** min(self.node_failures - 1, 8))
                if exc.permanent:
                    delay = RETRY_CAP
                log.error("healthchecks: cannot create or update the node check %r: %s (again in %.0fs)",
                          node, redact(exc, [self.config.api_key]), delay)
                self.next_node_try = now + delay
                return delay
        if now < self.next_ping:
            return self.next_ping - now
        if self.last_loop is None or now - self.last_loop > self.loop_slack:
            if not self._said_stuck and self.last_loop is not None:
                log.error("healthchecks: the main loop has not run for %.0fs; not pinging",
                          now - self.last_loop)
                self._said_stuck = True
            return 1.0  # looked at again soon: the first pass after a stall pings at once
        self._said_stuck = False
        limiter = self._ping_limiter(node)
        allowed = limiter.next_allowed(now)
        if allowed > now:
            return allowed - now
        limiter.record(now)
        self.next_ping = now + self.ping_interval
        try:
            self.ping(self.ping_urls[node], {"host": self.host, "loop": self.last_loop})
        except DeliveryError as exc:
            log.warning("healthchecks: node ping failed: %s", redact(exc, [self.config.api_key]))
            if exc.permanent:  # the check was deleted: create it again
                self.ping_urls.pop(node, None)
        return self.ping_interval

    def _signal_step(self, now: float) -> float:
        if now < self.next_signal:
            return self.next_signal - now
        with self.lock:
            signal = self.signals[0] if self.signals else None
        if signal is None:
            return 3600.0
        try:
            if signal.check not in self.ping_urls:
                allowed = self.api_limiter.next_allowed(now)
                if allowed > now:
                    return allowed - now
                self.ensure_check(signal.check, HC_MAX_SECONDS, HC_MAX_SECONDS, "run-sentinel run")
            limiter = self._ping_limiter(signal.check)
            allowed = limiter.next_allowed(now)
            if allowed > now:
                return allowed - now
            limiter.record(now)
            url = f"{self.ping_urls[signal.check]}{signal.suffix}?rid={signal.rid}"
            self.ping(url, {"text": signal.body} if signal.body else {})
        except DeliveryError as exc:
            signal.attempts += 1
            give_up = exc.permanent or signal.attempts >= 10
            log.warning("healthchecks: run signal %s for %r failed%s: %s", signal.suffix or "success",
                        signal.check, "; dropped" if give_up else "", redact(exc, [self.config.api_key]))
            if not give_up:
                self.next_signal = now + min(RETRY_CAP, RETRY_BASE * 2 ** (signal.attempts - 1))
                return self.next_signal - now
        with self.lock:
            if self.signals and self.signals[0] is signal:
                self.signals.popleft()
        return 0.0

    def _ping_limiter(self, check: str) -> RateLimiter:
        limiter = self.ping_limiters.get(check)
        if limiter is None:
            limiter = self.ping_limiters[check] = RateLimiter(max_count=PINGS_PER_MINUTE, window=60.0)
        return limiter

    # ------------------------------------------------------------ the two APIs

    def ensure_check(self, name: str, period: float, grace: float, tags: str) -> str:
        """Create or update the check called ``name``; its ping URL. Raises DeliveryError."""
        now = self.clock()
        self.api_limiter.record(now)
        payload = {"api_key": self.config.api_key, "name": name, "timeout": int(period), "grace": int(grace),
                   "unique": ["name"], "tags": tags, "desc": "run-sentinel: " + (
                       "this node's daemon pings while it watches runs" if tags.endswith("node")
                       else "one training run: started, then how it ended")}
        answer = http.post_json(self.config.url + API_PATH, payload, secrets=[self.config.api_key],
                                what="healthchecks API")
        if answer.status in ERRORS:
            raise DeliveryError(f"healthchecks API: HTTP {answer.status}: {ERRORS[answer.status]}",
                                permanent=True)
        http.raise_for_status(answer, what="healthchecks API", secrets=[self.config.api_key])
        data = answer.json()
        ping_url = data.get("ping_url") if isinstance(data, dict) else None
        parts = urlsplit(ping_url) if isinstance(ping_url, str) else None
        if (not isinstance(ping_url, str) or parts is None or parts.scheme not in ("http", "https")
                or not parts.hostname):
            raise DeliveryError("healthchecks API: the answer has no ping_url (a read-only API key?)",
                                permanent=True)
        self.ping_urls[name] = ping_url.rstrip("/")
        return self.ping_urls[name]

    def ping(self, url: str, body: dict[str, Any]) -> None:
        answer = http.post_json(url, body, secrets=[self.config.api_key], what="healthchecks ping")
        if answer.status == 404:
            raise DeliveryError("healthchecks ping: HTTP 404: no such check", permanent=True)
        http.raise_for_status(answer, what="healthchecks ping", secrets=[self.config.api_key])
