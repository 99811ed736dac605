"""Write the run record of a rank started by a launcher agent, as its own user would.

    python rank_record.py SPOOL PID AGENT_PID '{"RANK": "0", ...}'

Prints "READY <run_id>". Stdlib and sentinel only (another user runs it).
"""

from __future__ import annotations

import json
import os
import pwd
import socket
import sys
import time
from pathlib import Path

from sentinel.formats import safe_json, spool
from sentinel.host import jobs
from sentinel.host.procid import ProcessIdentity


def main() -> None:
    spool_dir, pid, agent_pid = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    env = json.loads(sys.argv[4])
    ident = ProcessIdentity.of(pid)
    assert ident is not None, f"no process {pid}"
    run_id = spool.new_run_id(pid)
    paths = spool.RunPaths(spool_dir, run_id)
    safe_json.make_private_dir(paths.dir)
    record = spool.RunRecord(
        run_id=run_id, pid=pid, start_ticks=ident.start_ticks, boot_id=ident.boot_id,
        hostname=socket.gethostname(), uid=os.getuid(), user=pwd.getpwuid(os.getuid()).pw_name,
        cmdline=["train.py"], cwd="/", started=time.time(), heartbeat_interval=3600.0, name="jobby",
        job=jobs.from_environ(env, agent_pid))
    safe_json.write_json(paths.run, record.to_dict())
    print(f"READY {run_id}", flush=True)


if __name__ == "__main__":
    main()
