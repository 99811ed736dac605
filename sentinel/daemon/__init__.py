"""The watchdog daemon: notices a run's end or death and alerts on it.

``run(config)`` is the whole daemon: it reconciles the spool with what it
already alerted, then watches processes (pidfd + epoll), spool files
(inotify) and the kernel log until stopped by SIGTERM/SIGINT or ``stop``.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from typing import Any, Optional

from sentinel import daemon_file, systemd
from sentinel.config import Config
from sentinel.state_dir import StateDir, StateDirError

log = logging.getLogger("sentinel.daemon")

EXIT_CONFIG = os.EX_CONFIG  # 78, as the CLI exits for a config it cannot use: restarting cannot help
STOP_TIMEOUT = 10.0  # seconds delivery may take to finish in-flight requests at shutdown

__all__ = ["run"]


def _open_delivery(config: Config, state: StateDir, retry_policy: Any = None) -> tuple[Any, Any, Any]:
    """The outbox, the channel set and the delivery workers for ``config``."""
    from sentinel.delivery import ChannelSet, Delivery
    from sentinel.outbox import Outbox, RetryPolicy

    policy = retry_policy if retry_policy is not None else RetryPolicy(retry_for=config.retry_for)
    outbox = Outbox(state.outbox, policy)
    channels = ChannelSet.from_config(config, state.inline)
    delivery = Delivery(outbox, channels)
    return outbox, channels, delivery


def _start_fleet(config: Config, outbox: Any) -> Any:
    """Metrics and healthchecks.io as the config asks (None: they cannot start; logged)."""
    from sentinel.fleet import start_fleet

    try:
        return start_fleet(config, outbox)
    except (OSError, RuntimeError) as exc:
        listen = config.metrics.listen if config.metrics is not None else None
        where = f" on {listen[0]}:{listen[1]}" if listen and isinstance(exc, OSError) else ""
        log.error("cannot start the fleet side (metrics, healthchecks)%s: %s", where, exc)
        return None


def _install_signal_handlers(stop: threading.Event) -> dict[int, Any]:
    """SIGTERM/SIGINT only set ``stop`` (the loop does the rest); main thread only."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    previous: dict[int, Any] = {}

    def handler(signum: int, frame: Any) -> None:
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        previous[signum] = signal.signal(signum, handler)
    return previous


def run(config: Config, stop: Optional[threading.Event] = None, *, retry_policy: Any = None) -> int:
    """Run the daemon until SIGTERM/SIGINT or ``stop`` is set; the exit status.

    ``retry_policy`` (a ``sentinel.outbox.RetryPolicy``) overrides the retry
    schedule derived from the config; tests and benchmarks shorten it.
    """
    from sentinel.daemon.loop import Daemon, prepare_spool, serve

    stop = threading.Event() if stop is None else stop
    try:
        prepare_spool(config.spool_path())
    except OSError as exc:
        log.error("cannot use spool %s: %s", config.spool_path(), exc)
        return 1
    state = StateDir(config.state_path())
    try:
        state.migrate_from(config.legacy_state_path())
        state.open()
        lock_fd = state.lock()
    except StateDirError as exc:
        log.error("%s", exc)
        return EXIT_CONFIG
    if lock_fd is None:
        log.error("another daemon already watches %s (lock %s held)", config.spool_path(), state.lock_path)
        return 1
    previous = _install_signal_handlers(stop)
    old_name = daemon_file.name_this_process()
    delivery = daemon = fleet = None
    try:
        outbox, channels, delivery = _open_delivery(config, state, retry_policy)
        fleet = _start_fleet(config, outbox)
        if fleet is None:
            return 1
        delivery.observer = fleet
        daemon = Daemon(config, outbox, channels, delivery.wake, observer=fleet)
        delivery.start()  # alerts left pending by a previous daemon go out at once
        daemon.start(time.time())
        systemd.notify("READY=1")
        log.info("watching %s (%d run(s) tracked)", config.spool_path(), len(daemon.tracker.runs))
        serve(daemon, stop)
        return 0
    finally:
        systemd.notify("STOPPING=1")
        for signum, old in previous.items():
            signal.signal(signum, old)
        if daemon is not None:
            daemon.close()
        if delivery is not None:
            delivery.stop(STOP_TIMEOUT)
        if fleet is not None:
            fleet.close()
        os.close(lock_fd)
        if old_name is not None:
            daemon_file.name_this_process(old_name)
        log.info("stopped")
