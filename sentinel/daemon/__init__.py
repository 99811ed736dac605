"""The watchdog daemon: notices a run's end or death and alerts on it.

``run(config)`` is the whole daemon: it reconciles the spool with what it
already alerted, then watches processes (pidfd + epoll), spool files
(inotify) and the kernel log until stopped by SIGTERM/SIGINT or ``stop``.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from typing import Any, Optional

from sentinel.daemon import systemd
from sentinel.daemon.config import Config
from sentinel.formats import daemon_file, spool_lock
from sentinel.formats.state_dir import StateDir, StateDirError

log = logging.getLogger("sentinel.daemon")

EXIT_CONFIG = os.EX_CONFIG  # 78, as the CLI exits for a config it cannot use: restarting cannot help
STOP_TIMEOUT = 10.0  # seconds delivery may take to finish in-flight requests at shutdown

__all__ = ["run"]


def _open_delivery(config: Config, state: StateDir, retry_policy: Any = None) -> tuple[Any, Any, Any]:
    """The outbox, the channel set and the delivery workers for ``config``."""
    from sentinel.delivery.outbox import Outbox, RetryPolicy
    from sentinel.delivery.workers import ChannelSet, Delivery

    policy = retry_policy if retry_policy is not None else RetryPolicy(retry_for=config.retry_for)
    outbox = Outbox(state.outbox, policy)
    channels = ChannelSet.from_config(config, state.inline)
    delivery = Delivery(outbox, channels, keep_warm=1)  # an alert wakes a waiting worker
    return outbox, channels, delivery


def _start_fleet(config: Config, outbox: Any) -> Any:
    """Metrics and healthchecks.io as the config asks (None: they cannot start; logged)."""
    from sentinel.fleet.observers import start_fleet

    try:
        return start_fleet(config, outbox)
    except (OSError, RuntimeError) as exc:
        listen = config.metrics.listen if config.metrics is not None else None
        where = f" on {listen[0]}:{listen[1]}" if listen and isinstance(exc, OSError) else ""
        log.error("cannot start the fleet side (metrics, healthchecks)%s: %s", where, exc)
        return None


def _install_signal_handlers(stop: threading.Event, reload: threading.Event,
                             wake: list[Any]) -> dict[int, Any]:
    """SIGTERM/SIGINT only set ``stop``, SIGHUP only ``reload`` and wakes the
    loop (``wake`` holds its waker once there is one); main thread only."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    previous: dict[int, Any] = {}

    def on_stop(signum: int, frame: Any) -> None:
        stop.set()

    def on_hup(signum: int, frame: Any) -> None:
        reload.set()
        for waker in wake:
            waker()

    for signum in (signal.SIGTERM, signal.SIGINT):
        previous[signum] = signal.signal(signum, on_stop)
    previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, on_hup)
    return previous


def reload_config(running: Config) -> Optional[Config]:
    """The config file read again, or None (refused: errors logged, ``running`` stays)."""
    from sentinel.daemon.config import ConfigError, resolve_config

    systemd.notify(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")
    try:
        try:
            new = resolve_config(str(running.source) if running.source is not None else None)
        except ConfigError as exc:
            log.error("reload refused, the running config stays: %s", exc)
            return None
        if (new.spool_path(), new.state_path()) != (running.spool_path(), running.state_path()):
            log.error("reload refused, the running config stays: spool and state_dir change only "
                      "with a restart (systemctl restart sentinel)")
            return None
        return new
    finally:
        systemd.notify("READY=1")


# A thread woken to deliver waits at most this long for the loop thread to
# let go of the GIL (CPython's default, 5 ms, was most of an alert's tail).
GIL_SWITCH_INTERVAL = 0.0005


def run(config: Config, stop: Optional[threading.Event] = None, *, retry_policy: Any = None,
        log_format: str = "text") -> int:
    """Run the daemon until SIGTERM/SIGINT or ``stop`` is set; the exit status.

    ``retry_policy`` (a ``sentinel.delivery.outbox.RetryPolicy``) overrides the retry
    schedule derived from the config; tests and benchmarks shorten it.
    """
    from sentinel.daemon.budgets import pidfd_room, raise_open_files
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
    try:  # kept open (and locked) until this process ends
        spool_lock_fd = spool_lock.lock_spool(config.spool_path())
    except spool_lock.SpoolLockError as exc:
        log.error("%s", exc)
        os.close(lock_fd)
        return 1
    reload = threading.Event()
    wake: list[Any] = []
    previous = _install_signal_handlers(stop, reload, wake)
    sys.setswitchinterval(GIL_SWITCH_INTERVAL)
    old_name = daemon_file.name_this_process()
    delivery = daemon = fleet = None
    try:
        outbox, channels, delivery = _open_delivery(config, state, retry_policy)
        fleet = _start_fleet(config, outbox)
        if fleet is None:
            return 1
        delivery.observer = fleet
        open_files = raise_open_files(config.budgets.open_files)
        log.info("open file limit %d: up to %d pidfds for runs, the rest kept for delivery and the spool",
                 open_files, pidfd_room(open_files))
        daemon = Daemon(config, outbox, channels, delivery.wake, observer=fleet,
                        pidfd_room=pidfd_room(open_files), spool_lock_fd=spool_lock_fd)
        delivery.start()  # alerts left pending by a previous daemon go out at once
        daemon.start(time.time())
        systemd.notify("READY=1")
        log.info("watching %s (%d run(s) tracked)", config.spool_path(), len(daemon.tracker.runs))
        wake.append(daemon.wakeup.wake)

        def on_reload() -> None:
            from sentinel.common.logsetup import setup_logging
            from sentinel.delivery.workers import ChannelSet

            assert daemon is not None
            new = reload_config(daemon.config)
            if new is None:
                return
            channels.replace_configured(ChannelSet.from_config(new, state.inline))
            daemon.config = daemon.tracker.config = new  # the tracker decides by it from now on
            setup_logging(new.log_level, log_format)
            log.info("config reloaded from %s; channels: %s (default: %s)",
                     new.source or "the embedded default", ", ".join(new.channels) or "none",
                     ", ".join(new.default_channels) or "none")

        serve(daemon, stop, reload=reload, on_reload=on_reload)
        if daemon.lost_spool is not None:
            log.error("%s: stopping", daemon.lost_spool)
            return 1
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
        os.close(spool_lock_fd)
        os.close(lock_fd)
        if old_name is not None:
            daemon_file.name_this_process(old_name)
        log.info("stopped")
