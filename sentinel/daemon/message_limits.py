"""How many ``run.send()`` messages the daemon takes: per run, per user, pending.

Messages share channels with state alerts and with other users' runs. One
run sending thousands must not bury anyone's death notice (the outbox sends
state alerts first) nor fill the outbox: beyond ``per_run_per_minute`` (one
run) or ``per_user_per_minute`` (all runs of one uid) in any 60 s, or while
``max_pending_per_user`` of the user's messages are still undelivered, a
message is dropped. The first drop of a run is logged with the reason; the
count is logged when the run is done with. Pure bookkeeping on the loop's
``now``.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Optional

from sentinel.daemon.config import MessageLimits

log = logging.getLogger("sentinel.daemon.messages")

WINDOW = 60.0


@dataclass
class _RunCount:
    uid: int
    taken: deque[float] = field(default_factory=deque)
    dropped: int = 0


class MessageGate:
    """Admits or drops each message of a run; ``pending_for`` counts a user's undelivered messages."""

    def __init__(self, limits: MessageLimits, pending_for: Callable[[str], int]) -> None:
        self.limits = limits
        self.pending_for = pending_for
        self._runs: dict[str, _RunCount] = {}
        self._users: dict[int, deque[float]] = {}  # one per local uid that sent: bounded

    def admit(self, run_id: str, uid: int, user: str, now: float) -> bool:
        """True: queue this message of ``run_id`` (owned by ``uid``, shown as ``user``)."""
        run = self._runs.setdefault(run_id, _RunCount(uid))
        user_taken = self._users.setdefault(uid, deque())
        _forget_before(run.taken, now - WINDOW)
        _forget_before(user_taken, now - WINDOW)
        reason = self._refusal(run, user_taken, user)
        if reason is not None:
            run.dropped += 1
            if run.dropped == 1:
                log.warning("run %s: messages dropped from now on while %s "
                            "(config message_limits); the count is logged when the run ends", run_id, reason)
            return False
        run.taken.append(now)
        user_taken.append(now)
        return True

    def _refusal(self, run: _RunCount, user_taken: deque[float], user: str) -> Optional[str]:
        limits = self.limits
        if len(run.taken) >= limits.per_run_per_minute:
            return f"it sends more than {limits.per_run_per_minute} a minute (per_run_per_minute)"
        if len(user_taken) >= limits.per_user_per_minute:
            return f"its user's runs send over {limits.per_user_per_minute} a minute (per_user_per_minute)"
        if self.pending_for(user) >= limits.max_pending_per_user:
            return (f"{limits.max_pending_per_user} of its user's messages are still undelivered "
                    "(max_pending_per_user)")
        return None

    def forget(self, run_id: str) -> None:
        """The run is done with: log how many of its messages were dropped, if any."""
        run = self._runs.pop(run_id, None)
        if run is None:
            return
        if run.dropped:
            log.warning("run %s: %d message(s) dropped in all (config message_limits)", run_id, run.dropped)


def _forget_before(times: deque[float], cutoff: float) -> None:
    while times and times[0] <= cutoff:
        times.popleft()
