"""Cost of noting a run's descendants (survivors), per run and rescan, on the daemon's main loop.

    python3 benchmarks/survivors_cost.py [--tiny]

A real process tree stands in for a training run: a main process with
DataLoader-like workers, each with threads (PyTorch processes have dozens).
``sentinel.daemon.survivors.descendants`` is what the daemon calls for each
live run at every rescan; ``survivors_reason`` is what it calls once, when a
run's end is judged. A hostile tree (more processes and threads than the
bounds) shows that what one user's run costs the loop is capped.
"""

from __future__ import annotations

import _common

_common.ensure_venv()

import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

from sentinel.daemon import survivors  # noqa: E402

SIZES = {"full": dict(workers=8, threads=32, calls=200, hostile_workers=100, hostile_threads=64),
         "tiny": dict(workers=2, threads=2, calls=10, hostile_workers=4, hostile_threads=2)}

# A main process that forks ``workers`` workers with ``threads`` idle threads
# each, prints their pids, and ends (with them) when its stdin closes.
TREE = r"""
import os, sys, threading
workers, threads = int(sys.argv[1]), int(sys.argv[2])
def idle():
    threading.Event().wait()
pids = []
for _ in range(workers):
    pid = os.fork()
    if pid == 0:
        for _ in range(threads):
            threading.Thread(target=idle, daemon=True).start()
        os.write(1, b"%d\n" % os.getpid())
        sys.stdin.read()
        os._exit(0)
    pids.append(pid)
sys.stdin.read()
"""


def start_tree(workers: int, threads: int) -> tuple[subprocess.Popen[bytes], list[int]]:
    proc = subprocess.Popen([sys.executable, "-c", TREE, str(workers), str(threads)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    pids = [int(proc.stdout.readline()) for _ in range(workers)]  # each has started its threads
    return proc, pids


def stop_tree(proc: subprocess.Popen[bytes], pids: list[int]) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    proc.wait(60)
    _common.kill_and_reap(pids)


def time_calls(pid: int, calls: int) -> tuple[list[float], int, list[float]]:
    """ms per descendants() call, processes noted, ms per survivors_reason() call."""
    noted: tuple = ()
    note_ms, reason_ms = [], []
    for _ in range(calls):
        t0 = time.perf_counter_ns()
        noted = survivors.descendants(pid, os.getuid())
        note_ms.append(_common.ms(time.perf_counter_ns() - t0))
        t0 = time.perf_counter_ns()
        survivors.survivors_reason(noted)
        reason_ms.append(_common.ms(time.perf_counter_ns() - t0))
    return note_ms, len(noted), reason_ms


def main() -> int:
    args = _common.parser(__doc__.splitlines()[0]).parse_args()
    started = time.monotonic()
    size = SIZES["tiny" if args.tiny else "full"]
    rows = []
    results = {}
    for label, workers, threads in (("training run", size["workers"], size["threads"]),
                                    ("hostile tree", size["hostile_workers"], size["hostile_threads"])):
        proc, pids = start_tree(workers, threads)
        try:
            note_ms, noted, reason_ms = time_calls(proc.pid, size["calls"])
        finally:
            stop_tree(proc, pids)
        note, reason = _common.summary(note_ms), _common.summary(reason_ms)
        results[label] = (note, noted)
        rows.append((label, f"{workers} × {threads + 1} threads", noted, _common.fmt(note["p50"], 3),
                     _common.fmt(note["max"], 3), _common.fmt(reason["p50"], 3)))
        print(f"{label}: noted {noted}, descendants() p50 {note['p50']:.3f} ms", flush=True)
    body = "\n".join([
        "`survivors.descendants` per live run at each rescan, `survivors_reason` once per judged end; "
        f"{size['calls']} calls each, in this process (the daemon's loop does the same reads).", "",
        _common.table(["tree", "workers × threads", "noted", "note p50 ms", "note max ms", "reason p50 ms"],
                      rows), "",
        f"Bounds: at most {survivors.MAX_NOTED} processes noted, {survivors.MAX_READS} `/proc` reads "
        "per run and rescan, whatever the tree.", "",
    ])
    hostile_note, hostile_noted = results["hostile tree"]
    verdicts = [
        _common.Verdict("survivors", "noting a training run's descendants (p50, per rescan)",
                        f"{results['training run'][0]['p50']:.3f} ms", "reported", None),
        _common.Verdict("survivors", "processes noted for a hostile tree", str(hostile_noted),
                        f"≤ {survivors.MAX_NOTED}", hostile_noted <= survivors.MAX_NOTED,
                        f"max {hostile_note['max']:.3f} ms per rescan"),
    ]
    _common.publish(args, "survivors", "9. Survivors: noting a run's descendants", body, verdicts, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
