"""A worker thread for the daemon's slow lookups, fair between users.

Walks of ``/proc`` (runs of other PID namespaces, a job's sibling ranks)
cost a few ms per thousand processes; done on the loop, one user's hundred
jobs beside a thousand idle processes stall every other user's alert. So
such work is queued here, per owner uid, and a worker thread takes the
queues in turn, ``batch`` requests at a time, so that one user's ten
thousand requests delay another user's by one batch at most and one walk
of ``/proc`` can serve a whole batch. Results wait in ``take`` and the
loop is woken (``wake``: the loop's wake-up fd) to collect them
(``worker_thread.OffLoopWorker``).

A user's queue is bounded (``max_pending``): more is refused until the
worker catches up, and the caller asks again later (at a rescan).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Callable, Hashable, TypeVar

from sentinel.daemon.worker_thread import OffLoopWorker

log = logging.getLogger("sentinel.daemon.fair_worker")

Req = TypeVar("Req")
Res = TypeVar("Res")


class FairWorker(OffLoopWorker[list[Req], Res]):
    """Requests per uid, served in turn by one thread running ``work(batch)``.

    ``work`` gets a batch and returns its results; ``failed`` is what a
    batch yields if ``work`` raised (one odd /proc entry must not stop the
    worker)."""

    def __init__(self, name: str, wake: Callable[[], None], work: Callable[[list[Req]], list[Res]],
                 failed: Callable[[list[Req]], list[Res]], *, batch: int, max_pending: int) -> None:
        super().__init__(name, wake)
        self.batch = batch
        self.max_pending = max_pending
        self._work_fn = work
        self._failed = failed
        self._pending: dict[int, OrderedDict[Hashable, Req]] = {}  # uid -> key -> request

    def request(self, uid: int, key: Hashable, req: Req) -> bool:
        """Queue ``req`` (replacing a queued one of the same key); False if ``uid``'s queue is full."""
        with self._lock:
            if self._stopping:
                return False
            queue = self._pending.setdefault(uid, OrderedDict())
            if key not in queue and len(queue) >= self.max_pending:
                return False
            queue[key] = req
            self._notify()
        return True

    def pending(self, uid: int) -> int:
        with self._lock:
            queue = self._pending.get(uid)
            return len(queue) if queue is not None else 0

    def _has_work(self) -> bool:
        return bool(self._pending)

    def _drop_work(self) -> None:
        self._pending.clear()

    def _next_work(self) -> list[Req]:
        """Up to ``batch`` requests, one per user in turn."""
        batch: list[Req] = []
        while self._pending and len(batch) < self.batch:
            for uid in list(self._pending):
                queue = self._pending[uid]
                batch.append(queue.popitem(last=False)[1])
                if not queue:
                    del self._pending[uid]
                if len(batch) >= self.batch:
                    break
        return batch

    def _do(self, batch: list[Req]) -> list[Res]:
        try:
            return self._work_fn(batch)
        except Exception:
            log.exception("%s: a batch of %d request(s) failed", self.name, len(batch))
            return self._failed(batch)
