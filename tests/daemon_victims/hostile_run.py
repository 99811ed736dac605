"""A run that does what a hostile (or careless) user does to its own spool files.

    python hostile_run.py MODE SPOOL [ARGS]

Modes:
  swap-msg VICTIM COUNT   queue COUNT messages one by one by writing msg/ files,
                          and after each one swap msg/ for a symlink to VICTIM
                          and back, SWAPS times in a tight loop
  live-on                 send one message, finish, and live on
  idle                    nothing (the run is finished at exit)
Every mode prints "READY <run_id>" once its record is on disk and "DONE" when
it has done its part, then waits until its stdin closes (so the test decides
when it exits), and exits 0. Stdlib + sentinel only: it runs as another user.
"""

from __future__ import annotations

import os
import sys
import time

from sentinel import watch
from sentinel.formats import safe_json, spool

SWAPS = 20


def swap_msg(run_dir: str, victim: str, count: int) -> None:
    msg = os.path.join(run_dir, spool.MESSAGE_DIR)
    real = msg + ".real"
    safe_json.make_private_dir(msg)
    for seq in range(1, count + 1):
        message = spool.Message(seq=seq, time=time.time(), text=f"m{seq}")
        safe_json.write_json(os.path.join(msg, f"{seq:08d}.json"), message.to_dict())
        for _ in range(SWAPS):
            os.rename(msg, real)
            os.symlink(victim, msg)
            os.unlink(msg)
            os.rename(real, msg)


def main() -> None:
    mode, spool_dir = sys.argv[1], sys.argv[2]
    run = watch(name=f"hostile-{mode}", spool_dir=spool_dir, heartbeat_interval=0.2)
    print(f"READY {run.run_id}", flush=True)
    if mode == "swap-msg":
        swap_msg(str(run.path), sys.argv[3], int(sys.argv[4]))
    elif mode == "idle":
        pass
    elif mode == "live-on":
        run.send("still here")
        run.finish()
    print("DONE", flush=True)
    sys.stdin.read()


if __name__ == "__main__":
    main()
