"""A watched run whose own SIGTERM handler keeps it going (a slow checkpoint, say).

    python tests/daemon_victims/stubborn_run.py NAME

Prints ``READY <run_id>``, then beats until killed (bounded: an hour). Its handler
is installed first, so the recorder leaves SIGTERM to it: only SIGKILL ends it.
"""

from __future__ import annotations

import signal
import sys
import time

import sentinel


def main() -> None:
    signal.signal(signal.SIGTERM, lambda signum, frame: print("SIGTERM ignored", flush=True))
    run = sentinel.watch(name=sys.argv[1], heartbeat_interval=0.2)
    print("READY", run.run_id, flush=True)
    for step in range(36_000):
        run.beat(step=step)
        time.sleep(0.1)


if __name__ == "__main__":
    main()
