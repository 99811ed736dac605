"""Delivery workers: from the outbox to the channels, a bounded pool of threads.

Detection never waits for the network: the daemon enqueues (durably) and
calls ``wake()``; a worker takes each channel in turn and sends its next
pending alert (the outbox's order: state alerts first, then messages, each
oldest first, so a run's messages arrive in order), paces requests to what the service
allows, retries transient failures on the outbox's schedule and lets the
outbox dead-letter permanent ones.

Pacing is per destination (``pace_key``: two channel entries naming one
webhook share a budget), counted from when each request was answered. A
channel that ``supports_digest`` (DingTalk: 20 messages a minute per robot;
Slack: one a second) gets its backlog merged into one digest message when
sending it one by one would exceed the limit or take more than
``DIGEST_AFTER`` seconds.

Time comes from ``clock`` (and jitter from ``rand``), so tests drive the
schedule without waiting for real backoff delays.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import json
import logging
import random
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from sentinel.channels import build_channel, http
from sentinel.channels.base import Channel, DeliveryError
from sentinel.channels.routing import INLINE_PREFIX, is_inline, string_values
from sentinel.common.latency_trace import TRACE
from sentinel.common.redact import redact
from sentinel.delivery.outbox import Outbox, PendingDelivery, save_backoff
from sentinel.formats.safe_json import SpoolFormatError, make_private_dir, read_json, write_json
from sentinel.model.observer import DEAD, DELIVERED, RETRY, FleetObserver

log = logging.getLogger("sentinel.delivery")

IDLE_WAIT = 60.0  # a channel waiting is re-checked this often anyway
MAX_WORKERS = 8  # delivery threads at most, for all channels together
WORKER_LINGER = 5.0  # an idle worker ends after this long
_THREAD_NUMBERS = itertools.count(1)
MAX_DIGEST = 50  # alerts merged into one digest at most
# A digest channel's due backlog is merged when pacing would spread it over
# longer than this: 300 runs killed at once should not take 5 minutes to tell.
DIGEST_AFTER = 10.0
# A channel whose last outcome could not be written (disk full) retries the
# write after ``outbox.save_backoff``; it sends nothing meanwhile.
# ``wake`` lets a worker it woke write its request first: waiting this long at most.
HAND_OVER_MAX = 0.002
# The loop spends at most this share of its time waiting for hand-overs (a storm
# costs it little), with up to HAND_OVER_BURST of it saved up by a quiet spell.
HAND_OVER_SHARE = 0.04
HAND_OVER_BURST = 0.02


# ---------------------------------------------------------------- pacing


class RateLimiter:
    """Pacing for one destination: at least ``min_interval`` between
    requests, and at most ``max_count`` in any ``window`` seconds.
    Pure bookkeeping: the caller passes the time."""

    def __init__(self, min_interval: float = 0.0, max_count: Optional[int] = None,
                 window: float = 60.0) -> None:
        self.min_interval = min_interval
        self.max_count = max_count
        self.window = window
        self.lock = threading.Lock()
        self._sent: deque[float] = deque()

    def _forget_old(self, now: float) -> None:
        keep = max(self.window, self.min_interval)
        while self._sent and self._sent[0] <= now - keep:
            self._sent.popleft()

    def next_allowed(self, now: float) -> float:
        self._forget_old(now)
        when = now
        if self._sent:
            when = max(when, self._sent[-1] + self.min_interval)
        if self.max_count is not None and len(self._sent) >= self.max_count:
            when = max(when, self._sent[-self.max_count] + self.window)
        return when

    def remaining(self, now: float) -> Optional[int]:
        """Requests still allowed in the current window (None: no limit)."""
        if self.max_count is None:
            return None
        self._forget_old(now)
        return max(0, self.max_count - sum(1 for t in self._sent if t > now - self.window))

    def record(self, now: float) -> None:
        self._sent.append(now)

    def finished(self, started: float, now: float) -> None:
        """A request recorded at ``started`` was answered at ``now``: count it
        from then. The service saw it arrive somewhere in between, so pacing
        from the start would let the next request arrive too early."""
        for index in range(len(self._sent) - 1, -1, -1):
            if self._sent[index] == started:
                self._sent[index] = max(started, now)
                return


def _send_batch(channel: Channel, batch: list[PendingDelivery]) -> str:
    """One request for ``batch`` (a digest if several); its answer, or the channel's error."""
    try:
        if len(batch) > 1:
            return channel.send_digest([item.alert for item in batch])
        return channel.send(batch[0].alert)
    finally:
        # However it ended (answered, failed, a channel without HTTP): the loop waits no longer.
        http.REQUEST_WRITTEN.set()


def _status_only(permanent: Optional[bool]) -> str:
    """What is said about an inline channel's answer: its HTTP status, nothing it wrote."""
    status = http.last_status()
    shown = f"HTTP {status}" if status is not None else "no HTTP answer"
    if permanent is None:
        return f"{shown} (answer not shown for inline channels)"
    kind = "permanent" if permanent else "transient"
    return f"{kind} failure, {shown} (answer not shown for inline channels)"


# ---------------------------------------------------------------- channels


class ChannelSet:
    """Channel names -> channels: the configured ones, and inline ones a run
    brought in its record (registered by the daemon under a stable name).

    Inline channels are also kept in ``inline_dir`` (0600 in the daemon's
    0700 state directory), so alerts still pending for them after a restart
    can be delivered even when the run's record is gone.
    """

    def __init__(self, channels: Optional[Mapping[str, Channel]] = None, *,
                 inline_dir: Optional[Path] = None, language: str = "en") -> None:
        self._channels: dict[str, Channel] = dict(channels or {})
        self._inline_dir = Path(inline_dir) if inline_dir is not None else None
        self._language = language
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config: Any, inline_dir: Optional[Path] = None) -> ChannelSet:
        """The configured channels; inline ones are kept in ``inline_dir`` (see the class)."""
        channels: dict[str, Channel] = {}
        for name, chan in config.channels.items():
            try:
                channels[name] = build_channel(name, {"type": chan.type, **chan.options}, chan.language)
            except ValueError as exc:  # validated config: only a bug gets here
                log.error("channel %s is unusable: %s", name, redact(exc))
        return cls(channels, inline_dir=inline_dir, language=config.language)

    def names(self) -> list[str]:
        with self._lock:
            return list(self._channels)

    def replace_configured(self, other: ChannelSet) -> None:
        """Take ``other``'s configured channels (a reloaded config); the
        inline ones a run brought stay. A delivery looks its channel up by
        name each time, so the next attempt uses the new settings."""
        with self._lock:
            inline = {name: chan for name, chan in self._channels.items() if is_inline(name)}
            self._channels = {**other._channels, **inline}
            self._language = other._language

    def get(self, name: str) -> Optional[Channel]:
        with self._lock:
            channel = self._channels.get(name)
            if channel is None and is_inline(name):
                channel = self._load_inline(name)
            return channel

    def register_inline(self, options: Mapping[str, Any]) -> str:
        """A stable name for an inline channel (``inline-<hash>``, no secret in
        it). Raises ValueError (secrets masked) for invalid options."""
        if not isinstance(options, Mapping):
            raise ValueError("an inline channel must be a mapping of options")
        canonical = json.dumps(dict(options), sort_keys=True, ensure_ascii=False, default=str)
        name = INLINE_PREFIX + hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]
        with self._lock:
            if name in self._channels:
                return name
            try:
                channel = self._build_inline(name, options)
            except ValueError as exc:
                raise ValueError(redact(exc, string_values(options))) from None
            self._channels[name] = channel
            if self._inline_dir is not None:
                try:
                    make_private_dir(self._inline_dir)
                    write_json(self._inline_dir / f"{name}.json", {"v": 1, "options": dict(options)},
                               durable=True)
                except OSError as exc:
                    log.warning("cannot keep inline channel %s for restarts: %s", name, exc.strerror)
            return name

    def _build_inline(self, name: str, options: Mapping[str, Any]) -> Channel:
        # No language of its own: it speaks the run's, the config's if the run names none.
        return build_channel(name, options, None, default_language=self._language)

    def _load_inline(self, name: str) -> Optional[Channel]:
        if self._inline_dir is None or "/" in name:
            return None
        try:
            data, _ = read_json(self._inline_dir / f"{name}.json")
            channel = self._build_inline(name, data["options"])
        except FileNotFoundError:
            return None
        except (SpoolFormatError, KeyError, TypeError, ValueError) as exc:
            log.error("inline channel %s cannot be restored: %s", name, redact(exc))
            return None
        self._channels[name] = channel
        return channel


# ---------------------------------------------------------------- workers


class _Schedule:
    """Which channel a worker steps next: round robin over the ready ones,
    a timer for each channel waiting (backoff, pacing), and none for a
    channel with nothing pending. A channel is in at most one place, so
    only one worker at a time steps it (its alerts go out in order)."""

    def __init__(self) -> None:
        self.ready: deque[str] = deque()
        self.timers: list[tuple[float, int, str]] = []  # (monotonic due, token, channel)
        self.where: dict[str, object] = {}  # channel -> "ready" | "busy" | its timer's token
        self.again: set[str] = set()  # woken while busy: ready again right after its step
        self._tokens = itertools.count()

    def make_ready(self, name: str) -> None:
        place = self.where.get(name)
        if place == "busy":
            self.again.add(name)
        elif place != "ready":
            self.where[name] = "ready"  # a timer it had is now stale, skipped when it surfaces
            self.ready.append(name)

    def after(self, name: str, delay: float) -> None:
        token = next(self._tokens)
        self.where[name] = token
        heapq.heappush(self.timers, (time.monotonic() + delay, token, name))

    def take(self) -> Optional[str]:
        """The next channel to step (marked busy), due timers first made ready."""
        now = time.monotonic()
        while self.timers and self.timers[0][0] <= now:
            _, token, name = heapq.heappop(self.timers)
            if self.where.get(name) == token:
                self.where[name] = "ready"
                self.ready.append(name)
        if not self.ready:
            return None
        name = self.ready.popleft()
        self.where[name] = "busy"
        return name

    def next_due(self) -> Optional[float]:
        while self.timers and self.where.get(self.timers[0][2]) != self.timers[0][1]:
            heapq.heappop(self.timers)  # stale
        return self.timers[0][0] if self.timers else None

    def done(self, name: str) -> None:
        del self.where[name]


class Delivery:
    """A bounded pool of worker threads draining the outbox, fair between channels.

    At most ``workers`` threads, however many channels there are: each takes
    the next ready channel (round robin), does one ``step`` for it and
    schedules it again (at once, after the wait the step asked for, or not
    at all once nothing is pending). A channel is stepped by one worker at a
    time; a slow destination holds one worker, never the others. A worker
    with nothing to do for ``linger`` seconds ends (one stays while a
    retry or a paced alert is due); ``wake`` starts them again.
    """

    def __init__(
        self,
        outbox: Outbox,
        channels: ChannelSet,
        clock: Callable[[], float] = time.time,
        *,
        rand: Callable[[], float] = random.random,
        idle_wait: float = IDLE_WAIT,
        workers: int = MAX_WORKERS,
        linger: float = WORKER_LINGER,
        keep_warm: int = 0,
        observer: Optional[FleetObserver] = None,
    ) -> None:
        self.outbox = outbox
        self.observer = observer if observer is not None else FleetObserver()  # fleet hook: results
        self.channels = channels
        self.clock = clock
        self.rand = rand
        self.idle_wait = idle_wait
        self.max_workers = max(1, workers)
        self.linger = linger
        self.keep_warm = min(keep_warm, self.max_workers)
        self._threads: list[threading.Thread] = []
        self._schedule = _Schedule()
        self._limiters: dict[str, RateLimiter] = {}
        self._save_retry: dict[str, float] = {}  # channel -> the last wait for a held outcome's write
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._idle = 0  # workers waiting for work
        self._hand_over_budget = HAND_OVER_BURST  # seconds ``wake`` may still wait for requests
        self._budget_at = time.monotonic()
        self._stopping = threading.Event()
        self._started = False

    def start(self) -> None:
        """Start workers for every channel with pending alerts (those left by
        an earlier process go out at once), and the ``keep_warm`` ones."""
        http.warm_up()
        with self._lock:
            self._started = True
            self._spawn(self.keep_warm)
        self.wake()

    def wake(self) -> None:
        """New work may be in the outbox (or the clock moved): look now.

        If a worker was idle to take it, the caller (the daemon's loop) then
        waits while that worker writes its request: up to ``HAND_OVER_MAX``,
        and no more than ``HAND_OVER_SHARE`` of its time in all. The threads
        share CPython's one interpreter lock, and the loop's own work right
        after an alert (writing its record, its bookkeeping, the rest of the
        pass) held the worker back by about a millisecond, every time;
        waiting costs the loop no more than that.
        """
        pending = self.outbox.channels_pending()
        with self._lock:
            if not self._started or self._stopping.is_set():
                return
            for name in pending:
                self._schedule.make_ready(name)
            now = time.monotonic()
            budget = min(HAND_OVER_BURST, self._hand_over_budget + (now - self._budget_at) * HAND_OVER_SHARE)
            self._hand_over_budget, self._budget_at = budget, now
            hand_over = bool(pending) and self._idle > 0 and budget >= HAND_OVER_MAX
            if hand_over:
                http.REQUEST_WRITTEN.clear()
            self._spawn_as_needed()
            self._cond.notify_all()
        if hand_over:
            http.REQUEST_WRITTEN.wait(HAND_OVER_MAX)
            with self._lock:
                self._hand_over_budget -= time.monotonic() - now

    def worker_count(self) -> int:
        with self._lock:
            return len(self._threads)

    def stop(self, timeout: float) -> bool:
        """Stop the workers; True if all finished within ``timeout`` seconds
        (a request in flight ends within its own timeout)."""
        self._stopping.set()
        with self._lock:
            threads = list(self._threads)
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in threads)

    def _spawn_as_needed(self) -> None:
        """Enough workers for the ready channels, within the bound (lock held)."""
        wanted = min(self.max_workers, len(self._threads) - self._idle + len(self._schedule.ready))
        self._spawn(max(1, wanted))

    def _spawn(self, count: int) -> None:
        """Start workers until there are ``count`` (lock held)."""
        while len(self._threads) < count:
            thread = threading.Thread(target=self._work, name=f"sentinel-deliver-{next(_THREAD_NUMBERS)}",
                                      daemon=True)
            self._threads.append(thread)
            self._idle += 1  # counted idle until it takes work
            thread.start()

    def _work(self) -> None:
        me = threading.current_thread()
        idle_since: Optional[float] = None
        with self._cond:
            try:
                while not self._stopping.is_set():
                    name = self._schedule.take()
                    if name is None:
                        now = time.monotonic()
                        idle_since = now if idle_since is None else idle_since
                        due = self._schedule.next_due()
                        keeper = ((due is not None and len(self._threads) == 1)
                                  or len(self._threads) <= self.keep_warm)
                        if now - idle_since >= self.linger and not keeper:
                            return  # idle: end (wake starts a worker again)
                        until = now + self.idle_wait
                        if due is not None:
                            until = min(until, due)
                        if not keeper:
                            until = min(until, idle_since + self.linger)
                        self._cond.wait(max(0.001, until - now))
                        continue
                    idle_since = None
                    self._idle -= 1
                    self._cond.release()
                    try:
                        wait = self._step_safely(name)
                        has_work = bool(self.outbox.pending(name, limit=1)) or self.outbox.blocked(name)
                    finally:
                        self._cond.acquire()
                        self._idle += 1
                    self._reschedule(name, wait, has_work)
            finally:
                self._idle -= 1
                self._threads.remove(me)

    def _reschedule(self, name: str, wait: Optional[float], has_work: bool) -> None:
        """After a step of ``name`` (lock held): again at once (behind the other
        ready channels: fair), after its wait, or not until woken."""
        schedule = self._schedule
        schedule.done(name)
        woken = name in schedule.again
        schedule.again.discard(name)
        if woken or (has_work and (wait is None or wait <= 0)):
            schedule.make_ready(name)
            self._spawn_as_needed()
            self._cond.notify()
        elif has_work and wait is not None:
            schedule.after(name, min(wait, self.idle_wait))
            self._cond.notify()  # a waiting worker may have to wake sooner now

    def _step_safely(self, name: str) -> Optional[float]:
        try:
            return self.step(name)
        except Exception:  # never let one bad alert end a worker
            log.error("delivery for %s hit an unexpected error", name, exc_info=True)
            return self.idle_wait

    # ------------------------------------------------------------ one step

    def step(self, name: str) -> Optional[float]:
        """Do the next thing for channel ``name``: send, or say how long to
        wait (seconds). None means "go again at once"."""
        if self.outbox.blocked(name) and not self.outbox.flush(name):
            wait = save_backoff(self._save_retry.get(name))
            self._save_retry[name] = wait
            return wait
        self._save_retry.pop(name, None)
        now = self.clock()
        items = self.outbox.pending(name, limit=MAX_DIGEST)
        if not items:
            return self.idle_wait
        head = items[0]
        if head.next_attempt > now:
            return head.next_attempt - now  # FIFO: later alerts wait behind the head
        channel = self.channels.get(name)
        if channel is None:
            self.outbox.mark_failed(head.alert.alert_id, name, f"channel {name!r} is not configured",
                                    now, permanent=True)
            return None
        limiter = self._limiter(name, channel)
        with limiter.lock:
            allowed = limiter.next_allowed(now)
            if allowed > now:
                return allowed - now
            batch = self._batch(channel, limiter, items, now)
            limiter.record(now)
        try:
            self._send(name, channel, batch)
        finally:
            with limiter.lock:
                limiter.finished(now, self.clock())
        return None

    def _batch(self, channel: Channel, limiter: RateLimiter, items: list[PendingDelivery],
               now: float) -> list[PendingDelivery]:
        """The head alone, or (digest channels) the due backlog when sending it
        one by one would exceed the service's rate limit or take longer than
        ``DIGEST_AFTER``."""
        if not channel.supports_digest:
            return items[:1]
        due = []
        for item in items:
            if item.next_attempt > now:
                break
            due.append(item)
        remaining = limiter.remaining(now)
        over_limit = remaining is not None and len(due) > remaining
        too_slow = (len(due) - 1) * channel.min_interval > DIGEST_AFTER
        if len(due) < 2 or not (over_limit or too_slow):
            return items[:1]
        due = due[:MAX_DIGEST]
        count = channel.digest_size([item.alert for item in due])
        return due[: max(1, count)]

    def _send(self, name: str, channel: Channel, batch: list[PendingDelivery]) -> None:
        secrets = channel.secrets()
        # An inline channel's destination is a run's choice: what it answers
        # is never logged or kept (it would read back an internal service's
        # page), only its HTTP status.
        inline = is_inline(name)
        http.forget_status()
        for item in batch:
            TRACE.stamp(item.alert.alert_id, "picked")
        try:
            answer = _send_batch(channel, batch)
        except DeliveryError as exc:
            reason = _status_only(exc.permanent) if inline else redact(exc, secrets)
            self._failed(name, batch, reason, exc.permanent, exc.retry_after)
            return
        except Exception as exc:
            # A bug, not the network: keep the alert and retry on schedule
            # (a fixed daemon delivers it); the traceback is logged redacted.
            detail = "" if inline else f": {exc}"
            log.error("channel %s failed unexpectedly: %s", name,
                      redact(f"{exc.__class__.__name__}{detail}", secrets), exc_info=not inline)
            self._failed(name, batch, f"unexpected {exc.__class__.__name__}", False, None)
            return
        for item in batch:
            TRACE.finish(item.alert.alert_id)
        answer = _status_only(None) if inline else redact(answer, secrets)
        now = self.clock()
        for item in batch:
            self.outbox.mark_delivered(item.alert.alert_id, name, answer, now)
        self.observer.delivery_result(name, DELIVERED, len(batch))
        what = batch[0].alert.alert_id if len(batch) == 1 else f"{len(batch)} alerts (digest)"
        log.info("delivered %s to %s: %s", what, name, answer)

    def _failed(self, name: str, batch: list[PendingDelivery], reason: str, permanent: bool,
                retry_after: Optional[float]) -> None:
        now = self.clock()
        for item in batch:
            when = self.outbox.mark_failed(item.alert.alert_id, name, reason, now, permanent=permanent,
                                           retry_after=retry_after, rand=self.rand())
            self.observer.delivery_result(name, RETRY if when is not None else DEAD)
            if when is not None:
                log.warning("delivery of %s to %s failed (attempt %d), retrying in %.0f s: %s",
                            item.alert.alert_id, name, item.attempts + 1, when - now, reason)

    def _limiter(self, name: str, channel: Channel) -> RateLimiter:
        key = channel.pace_key()
        with self._lock:
            limiter = self._limiters.get(key)
            if limiter is None:
                count, window = channel.rate_limit or (None, 60.0)
                limiter = RateLimiter(channel.min_interval, count, window)
                self._limiters[key] = limiter
            return limiter
