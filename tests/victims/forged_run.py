"""A run whose record its author wrote by hand, claiming whatever it likes.

    python tests/victims/forged_run.py SPOOL '{"user": "root", "channels": [...]}'

Writes a run record for this very process (so the daemon accepts it: the
files are the author's own), with the JSON object's fields put over the
honest ones, prints "READY <run_id>" and waits to be killed. Stdlib and
sentinel only.
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
from sentinel.host.procid import ProcessIdentity

FOREVER_LIMIT = 3600.0  # nobody kills it: it still ends by itself


def main() -> None:
    spool_dir, overrides = Path(sys.argv[1]), json.loads(sys.argv[2])
    me = ProcessIdentity.current()
    run_id = spool.new_run_id()
    paths = spool.RunPaths(spool_dir, run_id)
    safe_json.make_private_dir(paths.dir)
    record = spool.RunRecord(
        run_id=run_id, pid=me.pid, start_ticks=me.start_ticks, boot_id=me.boot_id,
        hostname=socket.gethostname(), uid=os.getuid(), user=pwd.getpwuid(os.getuid()).pw_name,
        cmdline=sys.argv, cwd=os.getcwd(), started=time.time(), heartbeat_interval=3600.0,
        name="forged",
    )
    data = {**record.to_dict(), **overrides}
    safe_json.write_json(paths.run, data)
    print(f"READY {run_id}", flush=True)
    deadline = time.monotonic() + FOREVER_LIMIT
    while time.monotonic() < deadline:
        time.sleep(0.05)


if __name__ == "__main__":
    main()
