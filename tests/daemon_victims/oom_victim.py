"""A watched run that eats memory until the OOM killer takes it.

    python tests/daemon_victims/oom_victim.py NAME [GO_FILE]

Meant to run inside a memory-limited cgroup. Prints ``READY <run_id>`` once
its run record is on disk, then allocates (with GO_FILE: once that file
exists, so a test can first see the daemon watch it).
"""

from __future__ import annotations

import os
import sys
import time

import sentinel


def main() -> None:
    run = sentinel.watch(name=sys.argv[1], heartbeat_interval=0.1)
    print("READY", run.run_id, flush=True)
    if len(sys.argv) > 2:
        for _ in range(6000):  # bounded: 10 minutes at most
            if os.path.exists(sys.argv[2]):
                break
            time.sleep(0.1)
    hog = []
    for step in range(1_000_000):  # bounded: a machine without a limit still stops eventually
        hog.append(bytearray(16 * 1024 * 1024))
        hog[-1][::4096] = b"x" * len(hog[-1][::4096])  # touch every page: really resident
        run.beat(step=step)
    run.finish()


if __name__ == "__main__":
    main()
