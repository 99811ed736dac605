"""Say each failure once: a bad record must not flood the log every rescan.

The loop retries a run whose handling raised at every rescan (every 30 s by
default); a record that keeps triggering the same bug would otherwise print
the same traceback forever and bury everything else. ``FailureLog`` logs the
traceback the first time a run fails with a given error (same exception
type, same place, same message) and only a debug line after that; a new
error of the same run, or the same error of another run, is logged again.
"""

from __future__ import annotations

import logging
import traceback
from collections import OrderedDict
from typing import Hashable

from sentinel.common.safetext import printable

MAX_REMEMBERED = 10_000


class BoundedSet:
    """Keys seen so far; the oldest are forgotten past ``limit``, so memory stays bounded."""

    def __init__(self, limit: int = MAX_REMEMBERED) -> None:
        self._seen: OrderedDict[Hashable, None] = OrderedDict()
        self._limit = limit

    def add(self, key: Hashable) -> bool:
        """True if ``key`` is new (and now remembered)."""
        if key in self._seen:
            return False
        self._seen[key] = None
        while len(self._seen) > self._limit:
            self._seen.popitem(last=False)
        return True


def error_key(exc: BaseException) -> tuple:
    """What makes two errors the same: type, where it was raised, message."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = (frames[-1].filename, frames[-1].lineno) if frames else (None, None)
    return (type(exc).__qualname__, *where, str(exc)[:500])


class FailureLog:
    """Logs a run's failure with its traceback once per distinct error."""

    def __init__(self, logger: logging.Logger) -> None:
        self._log = logger
        self._seen = BoundedSet()

    def report(self, run_id: str, exc: BaseException, what: str) -> bool:
        """Log ``what`` (a sentence about ``run_id``) with ``exc``; True if it was logged in full."""
        if self._seen.add((run_id, *error_key(exc))):
            self._log.error("%s (logged once per error; it is retried at every rescan)", printable(what),
                            exc_info=exc)
            return True
        self._log.debug("%s again: %s: %s", printable(what), type(exc).__name__, printable(str(exc)))
        return False
