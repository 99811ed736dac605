"""The one bounded wait of the test suite: tests never sleep to synchronise.

    run_id = wait_for(lambda: spool.list_run_ids(root), 30, what="a run record")

``predicate`` is called until it returns something truthy, which is
returned; after ``timeout`` seconds the wait fails with an AssertionError
naming ``what``. With ``condition`` (a ``threading.Condition`` that the
producer notifies), the predicate is evaluated under its lock and the wait
sleeps on it instead of polling.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Optional, TypeVar

T = TypeVar("T")

DEFAULT_TIMEOUT = 30.0
POLL_INTERVAL = 0.02


def wait_for(predicate: Callable[[], T], timeout: float = DEFAULT_TIMEOUT, what: str = "the condition", *,
             interval: float = POLL_INTERVAL, condition: Optional[threading.Condition] = None) -> T:
    """``predicate()``'s first truthy value; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    if condition is not None:
        with condition:
            while True:
                value = predicate()
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                condition.wait(left)
    else:
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() >= deadline:
                break
            time.sleep(interval)  # the poll itself, not a synchronisation
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
