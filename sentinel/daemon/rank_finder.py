"""A job's sibling ranks on this host, found off the loop.

Finding the other ranks of a job means reading ``/proc``: the children of
the launcher agent (``/proc/<agent>/task/*/children``) or, without an agent,
every process of the job's user, and the environment of each candidate
(``/proc/<pid>/environ``, which must name the same job, ``jobs.group_key``).
With a user's hundred jobs beside a thousand idle processes that is seconds
of work, so it runs on a ``FairWorker`` thread: jobs wait per uid and are
served in turn, one listing of ``/proc`` and one read of each candidate's
environment serve a whole batch. The loop takes what was found
(``RankFinder.take`` after a wake-up) and opens the pidfds itself, where
the identity rule (start time checked on the open pidfd) is applied.
"""

from __future__ import annotations

import logging
import os
from typing import Callable, Iterable, NamedTuple, Optional

from sentinel.daemon.fair_worker import FairWorker
from sentinel.formats.spool import JobRecord
from sentinel.host import jobs
from sentinel.host.procid import ProcessIdentity, parent_pid, process_uid, start_ticks

log = logging.getLogger("sentinel.daemon.rank_finder")

_ENVIRON_MAX = 256 * 1024
BATCH = 64  # jobs served by one listing of /proc
MAX_PENDING = 10_000  # jobs of one user waiting; more are asked again at a rescan
MAX_FOUND = 1024  # ranks of one job on one host


class Ask(NamedTuple):
    """Look for the ranks of job ``key`` of ``uid``."""

    key: str
    uid: int
    agent_pid: Optional[int]
    agent_start_ticks: Optional[int]


class Rank(NamedTuple):
    ident: ProcessIdentity
    rank: Optional[int]
    local_rank: Optional[int]
    error_file: str


class Found(NamedTuple):
    key: str
    ranks: list[Rank]  # every process found naming the job (the loop skips those it watches)


def read_environ(pid: int) -> Optional[dict[str, str]]:
    """A process's environment (root, or its own user), or None."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            raw = f.read(_ENVIRON_MAX)
    except OSError:
        return None
    return jobs.parse_environ(raw)


def children(pid: int) -> list[int]:
    """Child pids of ``pid``: ``/proc/<pid>/task/*/children`` (or a /proc scan)."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    readable = False
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as f:
                found.extend(int(word) for word in f.read().split())
            readable = True
        except (OSError, ValueError):
            continue
    if not readable:  # a kernel without CONFIG_PROC_CHILDREN
        found = [p for p in all_pids() if parent_pid(p) == pid]
    return found


def all_pids() -> Iterable[int]:
    try:
        return [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return []


class RankFinder:
    """Finds jobs' sibling ranks on a worker thread, users served in turn."""

    def __init__(self, wake: Callable[[], None]) -> None:
        self._worker: FairWorker[Ask, Found] = FairWorker(
            "sentinel-ranks", wake, self.find_all, lambda batch: [Found(a.key, []) for a in batch],
            batch=BATCH, max_pending=MAX_PENDING)

    def ask(self, ask: Ask) -> bool:
        """Look for the job's ranks; False if its user's queue is full (asked again at a rescan)."""
        return self._worker.request(ask.uid, ask.key, ask)

    def take(self) -> list[Found]:
        return self._worker.take()

    def close(self) -> None:
        self._worker.close()

    @staticmethod
    def find_all(batch: list[Ask]) -> list[Found]:
        """Every job's ranks: one listing of /proc and one environment read per candidate."""
        by_uid: Optional[dict[int, list[int]]] = None
        uids: dict[int, Optional[int]] = {}
        environs: dict[int, Optional[JobRecord]] = {}
        out = []
        for ask in batch:
            if ask.agent_pid is not None:
                if start_ticks(ask.agent_pid) != ask.agent_start_ticks:
                    out.append(Found(ask.key, []))  # the agent is gone (or its pid is someone else's)
                    continue
                candidates = children(ask.agent_pid)
            else:
                if by_uid is None:
                    by_uid = {}
                    for pid in all_pids():
                        uids[pid] = uid = process_uid(pid)
                        if uid is not None:
                            by_uid.setdefault(uid, []).append(pid)
                candidates = by_uid.get(ask.uid, [])
            ranks: list[Rank] = []
            for pid in candidates:
                if len(ranks) >= MAX_FOUND:
                    break
                if pid not in uids:
                    uids[pid] = process_uid(pid)
                if uids[pid] != ask.uid:
                    continue  # another user's process: its environment is not read
                if pid not in environs:
                    environs[pid] = _job_of(pid)
                record = environs[pid]
                if record is None or jobs.group_key(record, ask.uid) != ask.key:
                    continue  # not a rank of this job (the agent's other children, a helper process)
                ident = ProcessIdentity.of(pid)
                if ident is not None:
                    ranks.append(Rank(ident, record.rank, record.local_rank, record.error_file))
            out.append(Found(ask.key, ranks))
        return out


def _job_of(pid: int) -> Optional[JobRecord]:
    """The job the process's environment names, None if none or unreadable."""
    env = read_environ(pid)
    return jobs.from_environ(env, parent_pid(pid)) if env is not None else None
