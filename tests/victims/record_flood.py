"""A user's flood of hand-written run records, each one the author's own file.

    python tests/victims/record_flood.py SPOOL fake COUNT   # records naming pids that do not exist
    python tests/victims/record_flood.py SPOOL self COUNT   # records naming this process and 4 threads
    python tests/victims/record_flood.py SPOOL fake COUNT PER_SECOND   # paced (the benchmarks)

``fake``: COUNT records named ``fake-N``, each naming a pid no process has
(above the kernel's pid_max). ``self``: COUNT records named ``hog-N``, each
naming this very process and four of its live threads (five pidfds a
record for the daemon). Prints "READY <COUNT>" once all are written, then
waits to be killed (and ends by itself after an hour). Stdlib and sentinel only.
"""

from __future__ import annotations

import os
import pwd
import socket
import sys
import threading
import time
from pathlib import Path

from sentinel.formats import safe_json, spool
from sentinel.host.procid import ProcessIdentity, thread_start_ticks

FOREVER_LIMIT = 3600.0


def write_record(spool_dir: Path, name: str, ident: ProcessIdentity, threads: list[list[int]]) -> None:
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
        name=name, watch_threads=threads,
    )
    safe_json.write_json(paths.run, record.to_dict())


def main() -> None:
    spool_dir, mode, count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    pace = 1.0 / float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
    began = time.monotonic()
    me = ProcessIdentity.current()
    stop = threading.Event()
    threads: list[list[int]] = []
    if mode == "self":
        ready = threading.Barrier(5)
        tids: list[int] = []

        def idle() -> None:
            tids.append(threading.get_native_id())
            ready.wait()
            stop.wait(FOREVER_LIMIT)

        for _ in range(4):
            threading.Thread(target=idle, daemon=True).start()
        ready.wait()
        threads = [[tid, thread_start_ticks(me.pid, tid) or 0] for tid in tids]
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    for n in range(count):
        if pace:
            time.sleep(max(0.0, began + n * pace - time.monotonic()))
        if mode == "fake":
            write_record(spool_dir, f"fake-{n}", ProcessIdentity(pid_max + 1 + n, 12345, me.boot_id), [])
        else:
            write_record(spool_dir, f"hog-{n}", me, threads)
    print(f"READY {count}", flush=True)
    deadline = time.monotonic() + FOREVER_LIMIT
    while time.monotonic() < deadline:
        time.sleep(0.05)


if __name__ == "__main__":
    main()
