"""Runs of other PID namespaces (containers): found off the loop, then watched as any.

A run whose record names a PID namespace other than the daemon's
(``RunRecord.pidns``; a training process in a container, a daemon on the
host) carries pids the daemon cannot use: pid 5 in the container is some
other process, or none, on the host. Such a run is handed to the
``Resolver``, a worker thread that walks ``/proc`` for the process with that
namespace, innermost ``NSpid`` and start time (``sentinel.host.pidns.resolve``),
checks that it runs as the run directory's owner, and maps the recorded
thread ids the same way (``/proc/<host pid>/task/*/status`` ``NSpid``), so
the thread pidfds work for containerised runs too. The loop takes the
results (``take``) after a wake-up and watches the host pid like any run.

Never on the loop: a walk of ``/proc`` costs a few ms per thousand
processes, and one user's ten thousand runs must not delay another user's
exit. A run in the daemon's own namespace (no ``pidns``, or the same one)
takes the old path without the worker.

What is not found is judged by what the daemon can see. From the initial
(host) PID namespace every process is visible, so a run that is not found
is gone. From a narrower namespace (the daemon in a container without
``hostPID``), not found means *unwatchable*: nothing is said about its
process, only its heartbeat and its final record are watched.
"""

from __future__ import annotations

import logging
import os
from typing import Callable, NamedTuple, Optional

from sentinel.daemon.fair_worker import FairWorker
from sentinel.formats.spool import RunRecord
from sentinel.host import pidns
from sentinel.host.procid import process_uid

log = logging.getLogger("sentinel.daemon.ns_watch")

# Runs of one user waiting for a walk; more are refused until the worker
# catches up (a rescan brings them back), so a flood cannot grow the queue forever.
MAX_PENDING = 10_000
BATCH = 1000  # runs resolved by one walk of /proc

UNWATCHABLE_FIX = ("give the daemon the host's PID namespace (Kubernetes: hostPID: true; "
                   "Docker: docker run --pid=host) or run it as a sidecar sharing the pod's "
                   "PID namespace")


class Found(NamedTuple):
    run_id: str
    host_pid: Optional[int]  # None: not found (see ``gone``)
    threads: list[list[int]]  # [host tid, start ticks] of the recorded threads found
    gone: bool  # not found, and this daemon sees every namespace: the process is gone
    at_startup: bool  # asked for by the start-up reconcile (a death found is "died while down")
    agent_pid: Optional[int] = None  # the job's launcher agent (same namespace), as numbered here
    refused: bool = False  # found, but running as another user than the run's owner: a forged record


class Request(NamedTuple):
    record: RunRecord
    owner_uid: int
    at_startup: bool


class Resolver:
    """A worker thread finding runs' processes of other PID namespaces.

    Fair between users (``fair_worker.FairWorker``): requests wait per owner
    uid and each batch takes them in turn, so one user's ten thousand records
    delay another user's run by one batch at most; one walk of ``/proc``
    serves a whole batch.
    """

    def __init__(self, wake: Callable[[], None]) -> None:
        self.own = pidns.namespace_of()
        self.sees_all = pidns.sees_every_namespace()
        self._worker: FairWorker[Request, Found] = FairWorker(
            "sentinel-pidns", wake, self.find_all,
            lambda batch: [Found(r.record.run_id, None, [], False, r.at_startup) for r in batch],
            batch=BATCH, max_pending=MAX_PENDING)

    def foreign(self, record: RunRecord) -> bool:
        """True if the record's pids are numbered in a namespace other than the daemon's."""
        return bool(record.pidns) and bool(self.own) and record.pidns != self.own

    def request(self, record: RunRecord, owner_uid: int, at_startup: bool = False) -> bool:
        """Find ``record``'s process (owned by ``owner_uid``); False if that user's queue is full."""
        return self._worker.request(owner_uid, record.run_id, Request(record, owner_uid, at_startup))

    def take(self) -> list[Found]:
        return self._worker.take()

    def close(self) -> None:
        self._worker.close()

    def find_all(self, batch: list[Request]) -> list[Found]:
        """Where each request's process is in the daemon's namespace: one walk of /proc."""
        processes = pidns.index({r.record.pidns for r in batch})
        return [self.find(r.record, r.owner_uid, r.at_startup, processes) for r in batch]

    def find(self, record: RunRecord, owner_uid: int, at_startup: bool = False,
             processes: Optional[dict[pidns.Key, int]] = None) -> Found:
        """Where ``record``'s process is in the daemon's namespace (this thread or any)."""
        if processes is None:
            processes = pidns.index({record.pidns})
        key = (record.pidns, record.pid, record.start_ticks)
        host = processes.get(key)
        resolved = pidns.verify(host, key) if host is not None else None
        if resolved is None:
            return Found(record.run_id, None, [], self.sees_all, at_startup)
        try:
            # A record may name any process of any namespace: it is the run's only
            # if it runs as the run directory's owner.
            uid = process_uid(resolved.pid)
            if uid != owner_uid:
                log.warning("run %s names pid %d of PID namespace %s, which runs as uid %s, "
                            "not the run's owner uid %d; not watched", record.run_id, record.pid,
                            record.pidns, uid, owner_uid)
                return Found(record.run_id, None, [], False, at_startup, refused=True)
            threads = []
            for tid, ticks in record.watch_threads:
                host_tid = pidns.map_thread(resolved.pid, tid, ticks)
                if host_tid is not None:
                    threads.append([host_tid, ticks])
            return Found(record.run_id, resolved.pid, threads, False, at_startup,
                         self._agent(record, processes))
        finally:
            if resolved.pidfd is not None:
                os.close(resolved.pidfd)  # the watch opens its own and checks the start time again

    @staticmethod
    def _agent(record: RunRecord, processes: dict[pidns.Key, int]) -> Optional[int]:
        """The pid here of the run's launcher agent (torchrun in the same container), if found."""
        job = record.job
        if job is None or job.agent_pid is None or job.agent_start_ticks is None:
            return None
        return processes.get((record.pidns, job.agent_pid, job.agent_start_ticks))
