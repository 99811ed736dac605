"""A thread that does the loop's slow work and hands the results back.

The daemon's loop never waits for slow work (a walk of ``/proc``, deleting
a tree of a hundred thousand files): it hands it to an ``OffLoopWorker``.
The thread starts at the first request and sleeps while nothing is
wanted; it takes one piece of work under the lock, does it outside,
keeps what came of it for ``take`` and wakes the loop (``wake``: the
loop's wake-up fd) when there is something to take. ``close`` stops it
between two pieces of work.

What is wanted and how it is handed out is the subclass's: requests per
user taken in turn (``fair_worker.FairWorker``), or one coalesced request
(``archive.Pruner``).
"""

from __future__ import annotations

import threading
from typing import Callable, Generic, Optional, TypeVar

Work = TypeVar("Work")
Res = TypeVar("Res")


class OffLoopWorker(Generic[Work, Res]):
    """One daemon thread serving ``_next_work`` to ``_do``; results wait in ``take``."""

    def __init__(self, name: str, wake: Callable[[], None]) -> None:
        self.name = name
        self._wake = wake
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._done: list[Res] = []
        self._stopping = False
        self._thread: Optional[threading.Thread] = None

    # ------------------------------------------------------------ the subclass's part

    def _has_work(self) -> bool:
        """Whether work is waiting (called with the lock held)."""
        raise NotImplementedError

    def _next_work(self) -> Work:
        """The next piece of work, taken off what waits (called with the lock held)."""
        raise NotImplementedError

    def _do(self, work: Work) -> list[Res]:
        """Do ``work`` (on the thread, the lock not held); what the loop is to take."""
        raise NotImplementedError

    def _drop_work(self) -> None:
        """Forget the work not begun, at ``close`` (called with the lock held)."""

    # ------------------------------------------------------------ shared

    def _notify(self) -> None:
        """Start the thread if need be and tell it work is waiting (called with the lock held)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name=self.name, daemon=True)
            self._thread.start()
        self._work.notify()

    def take(self) -> list[Res]:
        """What was done since the last call."""
        with self._lock:
            done, self._done = self._done, []
        return done

    def close(self) -> None:
        with self._lock:
            self._stopping = True
            self._drop_work()
            self._work.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=5)

    def _is_stopping(self) -> bool:
        return self._stopping

    def _serve(self) -> None:
        while True:
            with self._lock:
                while not self._has_work() and not self._stopping:
                    self._work.wait()
                if self._stopping:
                    return
                work = self._next_work()
            results = self._do(work)
            if results:
                with self._lock:
                    self._done.extend(results)
                self._wake()
