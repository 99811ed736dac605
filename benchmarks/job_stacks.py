"""A job's stacks: 8 ranks' stacks gathered by py-spy and grouped, as on a job stall.

    python3 benchmarks/job_stacks.py [--tiny]

Eight real Python processes stand for a job's ranks without the recorder:
seven wait in ``all_reduce`` (a function 20 frames deep), one sleeps in
``straggle``. The daemon's ``JobStacks`` gathers them as on a stall (one
py-spy per rank on its own worker thread, all at once; the caller polls
every 10 ms as the daemon's stall check comes back) and groups them. Measured:
from the first ``poll`` to the grouped answer. py-spy runs with
``--nonblocking``, so the ranks are not paused at all.
"""

from __future__ import annotations

import _common

_common.ensure_venv()

import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

from sentinel.daemon.job_stacks import JobStacks, Rank  # noqa: E402
from sentinel.host.procid import ProcessIdentity  # noqa: E402

RANKS = 8
SIZES = {"full": {"rounds": 10}, "tiny": {"rounds": 2}}
RANK_CODE = """
import sys, time
def all_reduce():
    sys.stdin.read()
def straggle():
    sys.stdin.read()
def deep(n):
    return deep(n - 1) if n else (straggle() if sys.argv[1] == "straggle" else all_reduce())
print("ready", flush=True)
deep(20)
"""


def start_ranks() -> list[subprocess.Popen[str]]:
    procs = [subprocess.Popen([sys.executable, "-c", RANK_CODE, "straggle" if i == 2 else "wait"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for i in range(RANKS)]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    return procs


def gather(ranks: list[Rank]) -> tuple[float, dict[str, Any]]:
    stacks = JobStacks(reader=None)  # type: ignore[arg-type]  # no recorded rank: the reader is not used
    started = time.monotonic()
    for _ in range(10_000):
        facts = stacks.poll("bench", ranks, time.monotonic())
        if facts is not None:
            return time.monotonic() - started, facts
        time.sleep(0.01)
    raise RuntimeError("no answer")


def main() -> int:
    args = _common.parser(__doc__ or "").parse_args()
    size = SIZES["tiny" if args.tiny else "full"]
    started = time.monotonic()
    procs = start_ranks()
    try:
        ranks = []
        for i, proc in enumerate(procs):
            ident = ProcessIdentity.of(proc.pid)
            assert ident is not None
            ranks.append(Rank(i, ident))
        times, where = [], ""
        for _ in range(size["rounds"]):
            took, facts = gather(ranks)
            where = facts.get("where", "")
            assert "rank 2 is in straggle()" in where, facts
            times.append(took * 1000)
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    s = _common.summary(times)
    body = "\n".join([
        f"{RANKS} real Python processes (no recorder; 22 frames deep), one py-spy each on its own worker "
        "thread, all at once, polled every 10 ms as the daemon's stall check does; from the first poll to "
        "the grouped answer:",
        "",
        _common.table(["rounds", "p50 ms", "p90 ms", "max ms", "min ms"],
                      [(s["n"], _common.fmt(s["p50"], 0), _common.fmt(s["p90"], 0), _common.fmt(s["max"], 0),
                        _common.fmt(s["min"], 0))]),
        "",
        f"The answer: `{where}`.",
        "",
        "py-spy runs with `--nonblocking`: the ranks are not paused. Ranks with the recorder answer the "
        "signal instead (section 9 has the pause per dump); their dumps are read after `STACK_WAIT` (0.3 s).",
        "",
    ])
    verdicts = [_common.Verdict("job_stacks", f"{RANKS} ranks' stacks gathered and grouped (p50)",
                                f"{s['p50']:.0f} ms", "reported", None)]
    _common.publish(args, "job_stacks", "14. Jobs: 8 ranks' stacks gathered", body, verdicts, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
