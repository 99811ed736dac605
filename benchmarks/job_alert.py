"""Job alerts: a real 4-rank torchrun job, one rank SIGKILLed, to the one alert.

    python3 benchmarks/job_alert.py [--tiny]

Each round starts ``torchrun --standalone --nproc-per-node 4`` (CPU, gloo;
rank 0 records with ``sentinel.watch``), waits until the daemon watches the
other three ranks, SIGKILLs rank 3 and measures until the fake Bark receives
the job's alert. That span holds the kernel's exit notice, torchrun's
teardown (it polls its workers every 0.1 s, then SIGTERMs the rest), rank 0
recording "terminated", and the daemon's verdict once every rank is gone.
After the job is over the daemon is stopped and its journal read: every
job event must have raised exactly one alert. Needs torch (``.venv-torch``,
built by tests/run.py).
"""

from __future__ import annotations

import _common

_common.ensure_venv()

import os  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from sentinel.model.alerts import AlertKind  # noqa: E402
from tests.daemon_harness import DaemonProcess  # noqa: E402
from tests.fakes import FakeBark  # noqa: E402
from tests.torch_jobs import TorchJob, torch_python_path, watching_siblings  # noqa: E402

ROUNDS = {"full": 10, "tiny": 1}
ALERT_TIMEOUT = 60.0


def one_round(daemon: DaemonProcess, bark: FakeBark, python: str, index: int) -> tuple[float, str]:
    with TorchJob(daemon, "sleep", "--name", f"bench-job-{index}", python=python) as job:
        job.victim.expect("RUNNING")
        watching_siblings(daemon, 3, jobs=index + 1)  # this round's ranks (the log keeps earlier rounds')
        before = len(bark.received())
        t0 = time.monotonic_ns()
        os.kill(job.ranks[3], signal.SIGKILL)
        if not bark.wait_for(lambda reqs: len(reqs) > before, ALERT_TIMEOUT):
            raise TimeoutError(f"no job alert within {ALERT_TIMEOUT:.0f} s")
        request = bark.received()[before]
        assert f"bench-job-{index}" in request.body.decode("utf-8", "replace"), request.body[:300]
        job.victim.wait(120)
        return (request.arrival_ns - t0) / 1e6, job.run_id


def main() -> int:
    args = _common.parser(__doc__.splitlines()[0]).parse_args()
    started = time.monotonic()
    python = torch_python_path()
    if python is None:
        print("job_alert: no python with torch (python3 tests/run.py builds .venv-torch)", file=sys.stderr)
        return 1
    rounds = ROUNDS["tiny" if args.tiny else "full"]
    tmp = Path(tempfile.mkdtemp(prefix="sentinel-bench-job-"))
    latencies: list[float] = []
    run_ids: list[str] = []
    try:
        with FakeBark() as bark:
            # Default rescan interval (30 s): as deployed.
            channels = {"phone": {"type": "bark", "url": bark.key_url}}
            daemon = DaemonProcess(tmp, channels, rescan_interval="30s")
            with daemon:
                for index in range(rounds):
                    latency, run_id = one_round(daemon, bark, python, index)
                    latencies.append(latency)
                    run_ids.append(run_id)
                    print(f"round {index + 1}/{rounds}: job alert {latency:.0f} ms after the SIGKILL",
                          flush=True)
                daemon.stop()
                journals = [daemon.journal(run_id) for run_id in run_ids]
                pushes = len(bark.pushes)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    per_event = [len(j) for j in journals]
    kinds = sorted({a.kind.value for j in journals for a in j})
    stats = _common.summary(latencies)
    body = "\n".join([
        "A real `torchrun --standalone --nproc-per-node 4` job (torch 2.13 CPU, gloo) per round; rank 0",
        "records, the daemon watches ranks 1-3 itself. Rank 3 is SIGKILLed; measured until the fake Bark",
        "receives the job's alert (kernel exit notice, torchrun's teardown of ranks 0-2, the daemon's",
        "verdict).",
        "",
        _common.table(["rounds", "p50 ms", "p90 ms", "max ms", "min ms"],
                      [(stats["n"], _common.fmt(stats["p50"], 0), _common.fmt(stats["p90"], 0),
                        _common.fmt(stats["max"], 0), _common.fmt(stats["min"], 0))]), "",
        f"Alerts journaled per job event: {per_event} (kinds: {', '.join(kinds)}); "
        f"pushes received: {pushes} for {rounds} job event(s).", "",
    ])
    one_each = all(n == 1 for n in per_event) and pushes == rounds and kinds == [AlertKind.KILLED.value]
    verdicts = [
        _common.Verdict("job_alert", "job alert after one rank's SIGKILL (p50)", f"{stats['p50']:.0f} ms",
                        "reported", None, "includes torchrun's own teardown of the other ranks"),
        _common.Verdict("job_alert", "alerts per job event", f"{max(per_event, default=0)} (pushes {pushes})",
                        "1", one_each),
    ]
    _common.publish(args, "job_alert", "8. Job alerts (torchrun, one rank killed)", body, verdicts, started)
    return 0 if one_each else 1


if __name__ == "__main__":
    sys.exit(main())
