"""A watched run whose worker processes outlive it, as DataLoader workers can.

    python tests/daemon_victims/leaky_workers.py NAME COUNT

Starts COUNT multiprocessing workers (fork) that ignore SIGTERM and SIGHUP and
hold 16 MiB each, prints ``WORKERS <pid> ...`` and ``READY <run_id>``, then
steps until killed. The test kills the main process with SIGKILL, then the
workers.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import time

import sentinel

HOLD = 16 * 1024 * 1024


def worker(ready: multiprocessing.Queue[int]) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    held = bytearray(HOLD)
    held[::4096] = b"x" * len(held[::4096])  # touch every page: really resident
    ready.put(os.getpid())
    time.sleep(600)  # bounded: lives on after its parent, until the test kills it


def main() -> None:
    name, count = sys.argv[1], int(sys.argv[2])
    run = sentinel.watch(name=name, heartbeat_interval=0.2)
    context = multiprocessing.get_context("fork")
    ready: multiprocessing.Queue[int] = context.Queue()
    workers = [context.Process(target=worker, args=(ready,)) for _ in range(count)]
    for process in workers:
        process.start()
    pids = sorted(ready.get(timeout=60) for _ in workers)
    print("WORKERS", *pids, flush=True)
    print("READY", run.run_id, flush=True)
    for step in range(6000):  # bounded: about ten minutes
        run.beat(step=step)
        time.sleep(0.1)
    run.finish()


if __name__ == "__main__":
    main()
