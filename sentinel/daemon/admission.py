"""New runs waiting to be admitted, taken from each user in turn.

Admitting a run costs real work (its records read, its process pinned with
a pidfd, its job's ranks looked for, perhaps an alert decided), so a user
who writes thousands of records at once must not make another user's new
run wait behind all of them. New run directories seen by inotify are queued
here per owner (the directory's uid, one ``lstat``), and the loop admits at
most ``per_pass`` per pass, one user after another: another user's run is
admitted within a pass or two of appearing however long the flood's queue.
The periodic rescan, done a slice per pass, queues the runs it finds here
too, so a run inotify missed (its queue overflowed, no watch was left) is
still admitted in its user's turn, not in listing order behind a flood.
A restart's start-up reconcile is such a rescan (``StartupBacklog``).
"""

from __future__ import annotations

import os
from collections import OrderedDict, deque
from pathlib import Path

UNKNOWN_OWNER = -1  # the directory vanished or cannot be stat'ed: admission will tell


class AdmissionQueue:
    """Run ids waiting for admission, per owner uid, each once."""

    def __init__(self, spool: Path) -> None:
        self.spool = spool
        self._by_uid: OrderedDict[int, deque[str]] = OrderedDict()  # the next user to serve first
        self._queued: set[str] = set()

    def __len__(self) -> int:
        return len(self._queued)

    def add(self, run_id: str) -> None:
        if run_id in self._queued:
            return
        try:
            uid = os.lstat(self.spool / run_id).st_uid  # a directory's owner is whoever made it
        except (OSError, ValueError):
            uid = UNKNOWN_OWNER
        self._queued.add(run_id)
        queue = self._by_uid.get(uid)
        if queue is None:
            queue = self._by_uid[uid] = deque()
        queue.append(run_id)

    def take(self, limit: int) -> list[str]:
        """Up to ``limit`` run ids, one per user in turn; a user served goes to the back."""
        out: list[str] = []
        while self._by_uid and len(out) < limit:
            uid, queue = next(iter(self._by_uid.items()))
            run_id = queue.popleft()
            self._queued.discard(run_id)
            out.append(run_id)
            if queue:
                self._by_uid.move_to_end(uid)
            else:
                del self._by_uid[uid]
        return out


class StartupBacklog:
    """The runs found in the spool at start-up and not admitted yet.

    A restart does not read every run directory before the loop runs: the
    start-up listing is the first rescan, a slice per pass, and the runs it
    finds join the admission queue like new ones, each user in turn. A run
    found this way is still judged as a start-up one when its turn comes
    (an ending the daemon was down for is said to be one), whichever pass
    admits it; ``done`` once the listing ended and every run found was taken.
    """

    def __init__(self) -> None:
        self._pending: set[str] = set()
        self.listed = False  # the start-up listing has ended
        self.found = 0  # run directories the listing queued

    def add(self, run_id: str) -> None:
        if run_id not in self._pending:
            self._pending.add(run_id)
            self.found += 1

    def claim(self, run_id: str) -> bool:
        """True (once) if ``run_id`` was found at start-up: admit it as such."""
        if run_id in self._pending:
            self._pending.discard(run_id)
            return True
        return False

    @property
    def done(self) -> bool:
        return self.listed and not self._pending
