"""Per-user budgets: what one local user can make the daemon hold or do.

Every local user writes into a shared spool that a root daemon reads, so
every resource the daemon spends on a run is spent on behalf of the run's
owner (the verified uid, never the record's claim). Fairness is a rule:
nothing one user does may deny another user's alert or delay it. Each uid
therefore has its own budget (config ``budgets``, see ``sentinel.daemon.config.Budgets``):

- runs tracked at once (``runs_per_user``) and the pidfds their watches hold
  (``pidfds_per_user``); past either, the user's next run is *deferred*: not
  tracked, remembered (bounded), and admitted by a later rescan once some of
  the user's runs ended. The daemon's own share of open files (``fd_room``)
  caps every user together, so pidfds never take the descriptors delivery,
  the spool and the state need. A job's sibling ranks, watched by their own
  pidfds, count against the same budget (``take_pidfd``), one each;
- state alerts sent per minute (``state_alerts_per_user_per_minute``); past
  it, an alert is still decided and journaled (``sentinel history`` shows
  it) but sent to no channel, so one user's thousand fake deaths do not
  queue in front of anyone or use up a channel's rate limit;
- refused records remembered (``RefusedRuns``): per uid, the oldest are
  forgotten past ``refused_runs_remembered``.

The per-user budgets apply in a shared spool; in a private one, only its
owner writes runs and only the daemon's share of open files is enforced.
Each refusal is logged once per user and minute, with the count since.
Pure bookkeeping on the loop's ``now``; nothing here does I/O but logging.
"""

from __future__ import annotations

import logging
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Optional

from sentinel.daemon.config import Budgets

log = logging.getLogger("sentinel.daemon.budgets")

WINDOW = 60.0  # the state alert window, and how often one user's refusals are logged


@dataclass
class _User:
    runs: dict[str, int] = field(default_factory=dict)  # tracked run id -> pidfds its watch holds
    pidfds: int = 0
    alerts: deque[float] = field(default_factory=deque)  # when each state alert was sent
    refused: dict[str, int] = field(default_factory=dict)  # what -> refusals not yet logged
    logged_at: dict[str, float] = field(default_factory=dict)  # what -> when last logged


class UserBudgets:
    """Counts each uid's runs, pidfds and state alerts against ``limits``."""

    def __init__(self, limits: Budgets, fd_room: Optional[int] = None, *, per_user: bool = True) -> None:
        self.limits = limits
        self.per_user = per_user  # False (a private spool): only ``fd_room`` is enforced
        # pidfds all users together may hold (None: not limited beyond the per-user budget)
        self.fd_room = fd_room
        self._users: dict[int, _User] = {}
        self._owner: dict[str, int] = {}  # tracked run id -> uid
        self.deferred: OrderedDict[str, int] = OrderedDict()  # run id -> uid, waiting for room
        self.pidfds = 0

    def _user(self, uid: int) -> _User:
        user = self._users.get(uid)
        if user is None:
            user = self._users[uid] = _User()
        return user

    # ------------------------------------------------------------ runs and pidfds

    def room_for(self, run_id: str, uid: int, pidfds: int, now: float) -> bool:
        """True if ``uid`` may have one more run tracked, watched with up to
        ``pidfds`` pidfds; False: deferred (remembered, refusal logged)."""
        user = self._user(uid)
        limits = self.limits
        reason = None
        if self.per_user and len(user.runs) >= limits.runs_per_user:
            reason = f"the user has {len(user.runs)} runs tracked (budgets.runs_per_user)"
        elif self.per_user and user.pidfds + pidfds > limits.pidfds_per_user:
            reason = f"the user's runs hold {user.pidfds} pidfds (budgets.pidfds_per_user)"
        elif self.fd_room is not None and self.pidfds + pidfds > self.fd_room:
            reason = (f"all runs together hold {self.pidfds} pidfds, all the open files the daemon "
                      "can spare (budgets.open_files)")
        if reason is None:
            self.deferred.pop(run_id, None)
            return True
        self.deferred[run_id] = uid
        self.deferred.move_to_end(run_id)
        while len(self.deferred) > limits.refused_runs_remembered:
            self.deferred.popitem(last=False)  # forgotten: the next rescan meets it afresh
        self._refused(uid, user, "runs deferred until some of its runs end", reason, now)
        return False

    def tracked(self, run_id: str, uid: int, pidfds: int) -> None:
        """``run_id`` of ``uid`` is tracked, its watch holding ``pidfds`` pidfds."""
        self.release(run_id)
        user = self._user(uid)
        user.runs[run_id] = pidfds
        user.pidfds += pidfds
        self.pidfds += pidfds
        self._owner[run_id] = uid

    def watch_closed(self, run_id: str) -> None:
        """The run's process ended: its pidfds are closed, the run is still tracked."""
        uid = self._owner.get(run_id)
        if uid is None:
            return
        user = self._user(uid)
        held = user.runs.get(run_id, 0)
        user.runs[run_id] = 0
        user.pidfds -= held
        self.pidfds -= held

    def release(self, run_id: str) -> None:
        """``run_id`` is no longer tracked."""
        uid = self._owner.pop(run_id, None)
        if uid is None:
            return
        user = self._user(uid)
        held = user.runs.pop(run_id, 0)
        user.pidfds -= held
        self.pidfds -= held

    def take_pidfd(self, uid: int, now: float) -> bool:
        """One more pidfd for ``uid`` outside its runs' own watches (a job's sibling
        rank); False (refusal logged) if over the user's budget or the daemon's room."""
        user = self._user(uid)
        reason = None
        if self.per_user and user.pidfds + 1 > self.limits.pidfds_per_user:
            reason = f"the user's runs hold {user.pidfds} pidfds (budgets.pidfds_per_user)"
        elif self.fd_room is not None and self.pidfds + 1 > self.fd_room:
            reason = (f"all runs together hold {self.pidfds} pidfds, all the open files the daemon "
                      "can spare (budgets.open_files)")
        if reason is not None:
            self._refused(uid, user, "job ranks not watched", reason, now)
            return False
        user.pidfds += 1
        self.pidfds += 1
        return True

    def give_pidfd(self, uid: int) -> None:
        """A pidfd ``take_pidfd`` counted is closed."""
        user = self._user(uid)
        user.pidfds -= 1
        self.pidfds -= 1

    def is_deferred(self, run_id: str) -> bool:
        return run_id in self.deferred

    def runs_of(self, uid: int) -> int:
        user = self._users.get(uid)
        return len(user.runs) if user is not None else 0

    # ------------------------------------------------------------ state alerts

    def send_state_alert(self, uid: int, now: float) -> bool:
        """True: this state alert of ``uid`` goes to its channels; False: over
        budget, journaled only (refusal logged)."""
        if not self.per_user:
            return True
        user = self._user(uid)
        while user.alerts and user.alerts[0] <= now - WINDOW:
            user.alerts.popleft()
        limit = self.limits.state_alerts_per_user_per_minute
        if len(user.alerts) >= limit:
            self._refused(uid, user, "state alerts journaled but not sent",
                          f"the user's runs raised over {limit} in a minute "
                          "(budgets.state_alerts_per_user_per_minute)", now)
            return False
        user.alerts.append(now)
        return True

    # ------------------------------------------------------------ logging

    def _refused(self, uid: int, user: _User, what: str, reason: str, now: float) -> None:
        """Count a refusal; log it at most once per user, kind and minute."""
        user.refused[what] = user.refused.get(what, 0) + 1
        last = user.logged_at.get(what)
        if last is not None and now - last < WINDOW:
            return
        count = user.refused.pop(what)
        user.logged_at[what] = now
        log.warning("uid %d: %d %s: %s; logged at most once a minute", uid, count, what, reason)


class RefusedRuns:
    """Run ids refused for good, per uid; each uid's oldest are forgotten past ``limit``.

    One user's flood of refused records then costs a bounded amount of
    memory and evicts only that user's own entries."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._by_uid: dict[int, OrderedDict[str, None]] = {}
        self._uid_of: dict[str, int] = {}

    def add(self, run_id: str, uid: int) -> None:
        ids = self._by_uid.setdefault(uid, OrderedDict())
        ids[run_id] = None
        self._uid_of[run_id] = uid
        while len(ids) > self.limit:
            gone, _ = ids.popitem(last=False)
            self._uid_of.pop(gone, None)

    def __contains__(self, run_id: object) -> bool:
        return run_id in self._uid_of

    def __len__(self) -> int:
        return len(self._uid_of)


# ---------------------------------------------------------------- open files

# Descriptors kept for everything but pidfds: delivery's sockets and workers,
# the spool and run directories, inotify, the state and outbox files, the
# metrics server's connections, logging.
FD_HEADROOM = 256


def raise_open_files(wanted: int) -> int:
    """Raise RLIMIT_NOFILE's soft limit to ``wanted`` (0: the hard limit); the soft limit now.

    A service gets 1,024 open files by default while the kernel allows far
    more: pidfds are one per watched process and thread, so the daemon asks
    for what it may have at start instead of failing at the 1,025th."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if wanted == 0 else wanted
    if hard != resource.RLIM_INFINITY:
        target = min(target, hard)
    if target == resource.RLIM_INFINITY:
        target = 1 << 20  # the kernel's default nr_open: "unlimited" is not a figure to budget by
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open file limit from %d to %d: %s", soft, target, exc)
    return soft


def pidfd_room(open_files: int) -> int:
    """pidfds all runs together may hold under a soft limit of ``open_files``."""
    return max(open_files - FD_HEADROOM, open_files // 4)
