"""Delivery from inside the training process, for when no daemon is alive.

This is what SwanLab's own notification plugins do, and it has their limit:
a process that is killed cannot report its own death. It exists so that
swapping an import for a drop-in callback never loses the alerts the user
had before. One background thread sends, so the training thread never waits
on the network; process exit waits for it, but only for a bounded time.

The channel modules (and ``requests``) are imported here, lazily, on first
use: a run with a live daemon never loads them.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from typing import Any, Callable, Optional, Tuple

from sentinel.formats import spool
from sentinel.model.alerts import Alert, AlertKind, from_run

# key, message: tells the user once per key (the recorder's report_once)
Report = Callable[[str, str], None]

ATTEMPTS = 3
RETRY_DELAY = 1.0  # seconds, doubled after each failed attempt
MAX_RETRY_DELAY = 5.0


def deliver_message(record: spool.RunRecord, message: spool.Message, channels: list[dict[str, Any]],
                    report: Report) -> None:
    """Send ``message`` of the run ``record`` to its inline ``channels``."""
    alert = from_run(
        f"{record.run_id}.m{message.seq:08d}", AlertKind.MESSAGE, record,
        progress=None, now=message.time, text=message.text,
    )
    _sender().submit(alert, channels, report)


def deliver_final(record: spool.RunRecord, final: spool.FinalRecord, channels: list[dict[str, Any]],
                  report: Report, on_delivered: Optional[Callable[[], None]] = None) -> None:
    """Send the run's ending; ``on_delivered`` runs once every channel took it."""
    kind = AlertKind(final.state)
    alert = from_run(f"{record.run_id}.001.{kind.value}", kind, record, final=final, now=final.ended)
    _sender().submit(alert, channels, report, on_delivered=on_delivered)


def drain(timeout: float, report: Report) -> bool:
    """Wait until every submitted alert was tried; False if time ran out."""
    sender = _SENDER
    return True if sender is None else sender.drain(timeout, report)


# alert, inline channel options, how to tell the user, called once all channels took it
_Job = Tuple[Alert, "list[dict[str, Any]]", Report, Optional[Callable[[], None]]]


class FallbackSender:
    """One thread, one FIFO queue: alerts go out in the order they happened."""

    def __init__(self) -> None:
        self._queue: queue.Queue[_Job] = queue.Queue()
        self._idle = threading.Condition()
        self._pending = 0
        self._thread: Optional[threading.Thread] = None
        self._pid = os.getpid()

    def submit(self, alert: Alert, channels: list[dict[str, Any]], report: Report,
               on_delivered: Optional[Callable[[], None]] = None) -> None:
        """Queue ``alert``; ``on_delivered`` runs once every channel took it."""
        if not channels or os.getpid() != self._pid:
            return
        with self._idle:
            self._pending += 1
        self._queue.put((alert, [dict(c) for c in channels], report, on_delivered))
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="sentinel-fallback", daemon=True)
            try:
                self._thread.start()
            except RuntimeError:  # the interpreter is shutting down: send right here
                self._thread = None
                self._send_all_now()

    def drain(self, timeout: float, report: Report) -> bool:
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    report("fallback-timeout", "gave up waiting for alerts still being sent from here")
                    return False
                self._idle.wait(left)
        return True

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            self._send_one(*item)

    def _send_all_now(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            self._send_one(*item)

    def _send_one(self, alert: Alert, channels: list[dict[str, Any]], report: Report,
                  on_delivered: Optional[Callable[[], None]]) -> None:
        try:
            delivered = [_send_with_retries(alert, options, report) for options in channels]
            if on_delivered is not None and all(delivered):
                on_delivered()
        finally:
            with self._idle:
                self._pending -= 1
                self._idle.notify_all()


def _send_with_retries(alert: Alert, options: dict[str, Any], report: Report) -> bool:
    """Try one channel a few times; True if it took the alert."""
    from sentinel.channels import build_channel
    from sentinel.channels.base import DeliveryError
    from sentinel.channels.routing import INLINE_PREFIX

    type_name = str(options.get("type", "?"))
    try:
        # Inline: its own language, else the run's (the alert's), else English.
        channel = build_channel(f"{INLINE_PREFIX}{type_name}", options, None)
    except Exception as exc:
        report(f"build-{type_name}", f"cannot use the {type_name} channel from this process: {exc}")
        return False
    delay = RETRY_DELAY
    for attempt in range(1, ATTEMPTS + 1):
        try:
            channel.send(alert)
            return True
        except DeliveryError as exc:
            if exc.permanent or attempt == ATTEMPTS:
                report(f"send-{type_name}", f"{type_name} alert not delivered: {exc}")
                return False
            wait = min(MAX_RETRY_DELAY, max(delay, exc.retry_after or 0.0))
        except Exception as exc:  # a channel bug must not end the sender thread
            report(f"send-{type_name}", f"{type_name} alert not delivered: {exc.__class__.__name__}")
            return False
        time.sleep(wait)  # this is the sender's own thread, never training's
        delay *= 2
    return False


_SENDER: Optional[FallbackSender] = None
_SENDER_LOCK = threading.Lock()


def _sender() -> FallbackSender:
    global _SENDER
    with _SENDER_LOCK:
        if _SENDER is None or _SENDER._pid != os.getpid():
            _SENDER = FallbackSender()
        return _SENDER


def _forget_sender_in_child() -> None:
    global _SENDER, _SENDER_LOCK
    _SENDER = None
    _SENDER_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_sender_in_child)
