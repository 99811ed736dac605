"""Run records a user writes by hand for processes of its own, as hostile victims do.

    run_id = write_own_record(spool_dir, "forged", ProcessIdentity.current(), {"user": "root"})

The record names the given process as this user, with this process's
command line and working directory; ``fields`` go into the record as typed
values, ``overrides`` over its JSON (anything the author likes, checked by
nobody but the daemon). Stdlib and sentinel only: another user runs the
victims that import it.
"""

from __future__ import annotations

import os
import pwd
import socket
import sys
import time
from pathlib import Path
from typing import Any, Optional

from sentinel.formats import safe_json, spool
from sentinel.host.procid import ProcessIdentity


def write_own_record(spool_dir: Path, name: str, ident: ProcessIdentity,
                     overrides: Optional[dict[str, Any]] = None, **fields: Any) -> str:
    """A run record naming ``ident`` in a new run directory of ``spool_dir``; its run id."""
    for _ in range(100):  # one pid writing a thousand records a second draws the same id now and then
        run_id = spool.new_run_id()
        paths = spool.RunPaths(spool_dir, run_id)
        try:
            os.mkdir(paths.dir, 0o700)
            break
        except FileExistsError:
            continue
    else:
        raise RuntimeError("no free run id in 100 draws")
    record = spool.RunRecord(
        run_id=run_id, pid=ident.pid, start_ticks=ident.start_ticks, boot_id=ident.boot_id,
        hostname=socket.gethostname(), uid=os.getuid(), user=pwd.getpwuid(os.getuid()).pw_name,
        cmdline=sys.argv, cwd=os.getcwd(), started=time.time(), heartbeat_interval=3600.0,
        name=name, **fields,
    )
    safe_json.write_json(paths.run, {**record.to_dict(), **(overrides or {})})
    return run_id
