"""A warm victim for latency benchmarks: starts a watched run, then waits.

    python benchmarks/bench_victim.py --name NAME [--api watch|swanlab] [--hold-mib N]

Prints ``READY <run_id>`` once the run is on disk (after touching
``--hold-mib`` MiB of memory, so a kill has a real address space to tear
down), then reads commands from stdin:

  send TEXT  queue TEXT as a message (``run.send``), print ``SENT <n>`` once
             the recorder has written it to the spool, and read the next command
  finish   print ``T <time.monotonic_ns()>``, then end the run normally
  finish-live  the same, then stay alive (only the spool tells the daemon)
  raise    print ``T <time.monotonic_ns()>``, then raise an uncaught exception
  (none)   wait to be killed (EOF on stdin also just waits)

``send`` is for the watch API only (the soak benchmark).

The timestamp is taken just before the finishing call, on the same clock
the fake services stamp arrivals with, so the benchmark can subtract the
two. The tests' victims (tests/victims) cover every other behaviour; this
one only adds the hand-off the latency benchmark needs.
"""

from __future__ import annotations

import argparse
import sys
import time

import sentinel

FOREVER_LIMIT = 3600.0  # nobody killed us: end by ourselves


def hold_memory(mib: int) -> bytearray:
    """``mib`` MiB, every page written (a zero-filled buffer alone is not resident)."""
    buf = bytearray(mib * 1024 * 1024)
    pages = len(range(0, len(buf), 4096))
    buf[::4096] = b"\x01" * pages
    return buf


def wait_written(run: sentinel.Run, count: int) -> None:
    """Until the heartbeat thread has written ``count`` messages: it numbers a
    message, then writes it, both under the run's lock. (The recorder keeps
    this to itself; a benchmark that counts lost messages must not count one
    its victim was killed before writing.)"""
    recorder = run._recorder
    deadline = time.monotonic() + FOREVER_LIMIT
    while time.monotonic() < deadline:
        with recorder._lock:
            if recorder._msg_seq >= count and not recorder._outgoing:
                return
        time.sleep(0.001)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--api", choices=("watch", "swanlab"), default="watch")
    parser.add_argument("--hold-mib", type=int, default=0)
    args = parser.parse_args()
    held = hold_memory(args.hold_mib) if args.hold_mib else None  # noqa: F841 (kept alive)

    if args.api == "swanlab":
        import swanlab

        callback = sentinel.SentinelCallback(name=args.name)
        swanlab.init(project="bench", experiment_name=args.name, mode="offline", callbacks=[callback])
        swanlab.log({"loss": 1.0}, step=1)
        print(f"READY {callback.run_id}", flush=True)
        command = sys.stdin.readline().strip()
        if command == "finish":
            print(f"T {time.monotonic_ns()}", flush=True)
            swanlab.finish()
        elif command == "raise":
            print(f"T {time.monotonic_ns()}", flush=True)
            raise RuntimeError("benchmark crash")
        else:
            time.sleep(FOREVER_LIMIT)
        return

    with sentinel.watch(name=args.name) as run:
        run.beat(step=1, loss=1.0)
        print(f"READY {run.run_id}", flush=True)
        command = sys.stdin.readline().strip()
        sent = 0
        while command.startswith("send "):
            run.send(command[len("send "):])
            sent += 1
            wait_written(run, sent)
            print(f"SENT {sent}", flush=True)
            command = sys.stdin.readline().strip()
        if command in ("finish", "finish-live"):
            print(f"T {time.monotonic_ns()}", flush=True)
            run.finish()
            if command == "finish-live":
                time.sleep(FOREVER_LIMIT)
        elif command == "raise":
            print(f"T {time.monotonic_ns()}", flush=True)
            raise RuntimeError("benchmark crash")
        else:
            time.sleep(FOREVER_LIMIT)


if __name__ == "__main__":
    main()
