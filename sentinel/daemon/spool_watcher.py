"""Spool changes as a queue of (run id, what changed), plus a wake-up fd.

``watchdog`` (inotify) runs its own thread; its handler only classifies a
path and puts a ``SpoolEvent`` on a queue, then pokes the ``Wakeup`` fd that
sits in the daemon's epoll, so the main loop does all the work. inotify can
overflow or miss a directory created in a burst: the loop's periodic full
rescan is the safety net, so nothing here needs to be perfect.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import queue
import sys
import threading
import warnings
from pathlib import Path
from typing import Any, NamedTuple, Optional

from sentinel.spool import BEAT_FILE, FINAL_FILE, MESSAGE_DIR, RUN_FILE, is_run_id

log = logging.getLogger("sentinel.daemon.spool_watcher")


class Wakeup:
    """An fd that turns readable when ``wake()`` is called from any thread."""

    def __init__(self) -> None:
        if sys.version_info >= (3, 10):  # os.eventfd
            self.fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            self._write_fd = self.fd
        else:
            self.fd, self._write_fd = os.pipe()
            os.set_blocking(self.fd, False)
            os.set_blocking(self._write_fd, False)

    def wake(self) -> None:
        # An error means a wake-up is already pending (pipe full) or we are closing.
        with contextlib.suppress(OSError):
            os.write(self._write_fd, (1).to_bytes(8, "little"))

    def clear(self) -> None:
        for _ in range(1000):
            try:
                if not os.read(self.fd, 4096):
                    return
            except (BlockingIOError, OSError):
                return

    def close(self) -> None:
        os.close(self.fd)
        if self._write_fd != self.fd:
            os.close(self._write_fd)


def _drop_shutdown_noise(record: logging.LogRecord) -> bool:
    return "called when the thread is inactive" not in record.getMessage()


class Change(str, enum.Enum):
    RUN = "run"  # a run directory or its run.json appeared
    FINAL = "final"
    BEAT = "beat"
    MESSAGE = "message"


class SpoolEvent(NamedTuple):
    run_id: str
    change: Change


def classify(spool: Path, path: str) -> Optional[SpoolEvent]:
    """Which run and which of its files ``path`` is, or None if irrelevant."""
    try:
        rel = Path(path).relative_to(spool)
    except ValueError:
        return None
    parts = rel.parts
    if not parts or not is_run_id(parts[0]):
        return None
    run_id = parts[0]
    if len(parts) == 1:
        return SpoolEvent(run_id, Change.RUN)
    name = parts[1]
    if len(parts) == 2:
        if name == RUN_FILE:
            return SpoolEvent(run_id, Change.RUN)
        if name == FINAL_FILE:
            return SpoolEvent(run_id, Change.FINAL)
        if name == BEAT_FILE:
            return SpoolEvent(run_id, Change.BEAT)
        if name == MESSAGE_DIR:
            return SpoolEvent(run_id, Change.MESSAGE)
        return None
    if len(parts) == 3 and name == MESSAGE_DIR and not parts[2].startswith("."):
        return SpoolEvent(run_id, Change.MESSAGE)
    return None


class SpoolWatcher:
    """Feeds ``events`` from inotify; beat changes only for runs that ask."""

    def __init__(self, spool: Path, wakeup: Wakeup) -> None:
        self.spool = Path(spool)
        self.events: queue.SimpleQueue[SpoolEvent] = queue.SimpleQueue()
        self._wakeup = wakeup
        self._beat_interest: set[str] = set()
        self._lock = threading.Lock()
        self._observer: Optional[Any] = None  # a watchdog Observer while watching

    def want_beats(self, run_id: str, wanted: bool) -> None:
        """Beats are re-read at deadlines; only a stalled run waits for each one."""
        with self._lock:
            if wanted:
                self._beat_interest.add(run_id)
            else:
                self._beat_interest.discard(run_id)

    def _on_path(self, path: str) -> None:
        event = classify(self.spool, path)
        if event is None:
            return
        if event.change is Change.BEAT:
            with self._lock:
                if event.run_id not in self._beat_interest:
                    return
        self.events.put(event)
        self._wakeup.wake()

    def start(self) -> bool:
        """Start inotify; False (and rescans only) if watchdog cannot."""
        try:
            from watchdog.events import (
                DirCreatedEvent,
                DirMovedEvent,
                FileClosedEvent,
                FileCreatedEvent,
                FileMovedEvent,
                FileSystemEventHandler,
            )
            from watchdog.observers import Observer
        except ImportError as exc:
            log.warning("watchdog unavailable (%s): relying on periodic rescans", exc)
            return False

        watcher = self

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event) -> None:  # type: ignore[no-untyped-def]
                try:
                    path = getattr(event, "dest_path", "") or event.src_path
                    if isinstance(path, bytes):
                        path = os.fsdecode(path)
                    watcher._on_path(path)
                except Exception:  # a handler error must not kill the observer thread
                    log.exception("spool event handling failed")

        # A run directory archived into a state directory inside the spool is
        # moved within the watched tree; watchdog then re-registers its watch
        # and warns about it. Expected here, so not worth a log line per run.
        warnings.filterwarnings("ignore", message="Callback with id", category=RuntimeWarning,
                                module="watchdog")
        observer = Observer()
        try:
            observer.schedule(
                Handler(),
                str(self.spool),
                recursive=True,
                event_filter=[FileCreatedEvent, FileMovedEvent, FileClosedEvent, DirCreatedEvent,
                              DirMovedEvent],
            )
            observer.daemon = True
            observer.start()
        except OSError as exc:
            log.warning("cannot watch %s with inotify (%s): relying on periodic rescans",
                        self.spool, exc)
            return False
        self._observer = observer
        return True

    def stop(self, timeout: float = 5.0) -> None:
        if self._observer is not None:
            # Stopping after a watched run directory was archived (moved away)
            # makes watchdog log a harmless "queue_events() called when the
            # thread is inactive" error; at shutdown that is noise, not news.
            logging.getLogger("watchdog.observers.inotify").addFilter(_drop_shutdown_noise)
            self._observer.stop()
            self._observer.join(timeout)
            self._observer = None

    def drain(self) -> list[SpoolEvent]:
        """Every queued event, duplicates folded, in first-seen order."""
        seen: dict[SpoolEvent, None] = {}
        for _ in range(100_000):
            try:
                seen.setdefault(self.events.get_nowait())
            except queue.Empty:
                break
        return list(seen)
