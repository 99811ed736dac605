"""A user's flood of job records beside many idle processes: /proc work for the daemon.

    python tests/daemon_victims/job_flood.py SPOOL JOBS IDLE

Starts IDLE idle child processes (forks that wait), then writes JOBS run
records, each naming this live process as one rank of a job of its own
(distinct rendezvous ids, no launcher agent). Finding each job's other
ranks means reading the environment of every process of this user: JOBS x
IDLE reads unless the daemon shares them. Prints "READY <JOBS>" once all
are written, then waits to be killed, its children with it (they end
when their pipe closes, and by themselves after an hour).
Stdlib and sentinel only (another user runs it).
"""

from __future__ import annotations

import os
import select
import sys
from pathlib import Path

from sentinel.host import jobs
from sentinel.host.procid import ProcessIdentity
from tests.victims._common import FOREVER_LIMIT, wait_forever
from tests.victims.hand_records import write_own_record


def idle_children(count: int) -> int:
    """``count`` forks that wait for the returned pipe's write end to close."""
    read_end, write_end = os.pipe()
    for _ in range(count):
        if os.fork() == 0:
            os.close(write_end)
            select.select([read_end], [], [], FOREVER_LIMIT)
            os._exit(0)
    os.close(read_end)
    return write_end


def main() -> None:
    spool_dir, count, idle = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    keep = idle_children(idle)
    me = ProcessIdentity.current()
    for n in range(count):
        env = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2",
               "TORCHELASTIC_RUN_ID": f"flood-{n}", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}
        write_own_record(spool_dir, f"flood-{n}", me, job=jobs.from_environ(env, None))
    print(f"READY {count}", flush=True)
    wait_forever()
    os.close(keep)


if __name__ == "__main__":
    main()
