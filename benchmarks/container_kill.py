"""Kill-to-alert for runs in Docker containers: SIGKILL a containerised run, time until the alert.

    python3 benchmarks/container_kill.py [--tiny]

Our own dockerd (``tests/docker_harness.py``: Debian docker.io, an empty image,
the host's Python bind-mounted) and a real daemon on the host delivering to a
fake Bark on 127.0.0.1. Each round starts one container in its own PID
namespace (the recorder is pid 1 there) running a ``sentinel.watch`` victim,
waits until the daemon has resolved it to its host pid and watches its
process and thread pidfds (the daemon's log says so), then SIGKILLs the host
pid. Latency = the fake's arrival stamp minus ``time.monotonic_ns()`` taken
just before ``os.kill`` (one clock). The daemon's journal must hold exactly
one alert per run, a kill naming the container. Needs root and dockerd.
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
from tests.docker_harness import Containers, DockerDaemon  # noqa: E402
from tests.fakes import FakeBark  # noqa: E402
from tests.victims.harness import ROOT, WATCH_VICTIM, Victim, victim_env  # noqa: E402

ROUNDS = {"full": 30, "tiny": 2}
ALERT_TIMEOUT = 30.0
PASSED_ENV = ("SENTINEL_SPOOL", "HOME", "PYTHONPATH", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE")
THREAD_PATH = "thread pidfd(s) (the thread-pidfd path, for a containerised run)"


def one_round(containers: Containers, daemon: DaemonProcess, bark: FakeBark, index: int) -> tuple[float, str]:
    python = str(ROOT / ".venv" / "bin" / "python")
    name = f"bench-box-{index}"
    victim = Victim(python, WATCH_VICTIM, ["sleep-forever", "--name", name, "--heartbeat", "0.5"], daemon.tmp,
                    spool_dir=daemon.spool)
    env = victim_env(daemon.tmp, daemon.spool)
    box = containers.name("bench")
    container = containers.adopt(box)
    victim.argv = containers.docker.run_argv([python, str(WATCH_VICTIM), *victim.argv[2:]], name=box,
                                             workdir=daemon.tmp, env={k: env[k] for k in PASSED_ENV})
    (daemon.tmp / "home").mkdir(parents=True, exist_ok=True)
    with victim.start():
        run_id = victim.ready()
        victim.expect("RUNNING")
        host_pid = containers.wait_running(container)
        daemon.wait_log(f"run {run_id}: pid 1 of PID namespace")
        daemon.wait_log(f"run {run_id} is in container")
        line = next(ln for ln in daemon.log().splitlines() if f"run {run_id}: pid 1 of PID namespace" in ln)
        if THREAD_PATH not in line:
            raise AssertionError(f"not on the thread-pidfd path: {line}")
        before = len(bark.received())
        t0 = time.monotonic_ns()
        os.kill(host_pid, signal.SIGKILL)
        if not bark.wait_for(lambda reqs: len(reqs) > before, ALERT_TIMEOUT):
            raise TimeoutError(f"no alert within {ALERT_TIMEOUT:.0f} s")
        request = bark.received()[before]
        assert name in request.body.decode("utf-8", "replace"), request.body[:300]
        victim.wait(60)
    container.remove()
    return (request.arrival_ns - t0) / 1e6, run_id


def main() -> int:
    args = _common.parser(__doc__.splitlines()[0]).parse_args()
    started = time.monotonic()
    if os.geteuid() != 0:
        print("container_kill: needs root (it starts a dockerd)", file=sys.stderr)
        return 1
    rounds = ROUNDS["tiny" if args.tiny else "full"]
    tmp = Path(tempfile.mkdtemp(prefix="sentinel-bench-box-"))
    docker = DockerDaemon(Path(tempfile.mkdtemp(prefix="sn-dk-"))).start()
    latencies: list[float] = []
    run_ids: list[str] = []
    containers = Containers(docker)
    try:
        with FakeBark() as bark:
            channels = {"phone": {"type": "bark", "url": bark.key_url}}
            daemon = DaemonProcess(tmp, channels, rescan_interval="30s")  # as deployed
            with daemon:
                for index in range(rounds):
                    latency, run_id = one_round(containers, daemon, bark, index)
                    latencies.append(latency)
                    run_ids.append(run_id)
                    print(f"round {index + 1}/{rounds}: alert {latency:.2f} ms after the SIGKILL", flush=True)
                daemon.stop()
                journals = [daemon.journal(run_id) for run_id in run_ids]
                pushes = len(bark.pushes)
    finally:
        containers.remove_all()
        docker.close()
        shutil.rmtree(tmp, ignore_errors=True)
    named = all(len(j) == 1 and j[0].kind is AlertKind.KILLED and j[0].container.get("id") for j in journals)
    stats = _common.summary(latencies)
    body = "\n".join([
        "One container per round (Docker 20.10, own PID namespace: the run is pid 1 inside), a",
        "`sentinel.watch` victim; the daemon on the host resolves it to its host pid and watches its",
        "process and thread pidfds (checked in its log for every round). The host pid is SIGKILLed;",
        "measured until the fake Bark receives the alert.",
        "",
        _common.table(["rounds", "p50 ms", "p90 ms", "p99 ms", "max ms", "min ms"],
                      [(stats["n"], _common.fmt(stats["p50"]), _common.fmt(stats["p90"]),
                        _common.fmt(_common.percentile(latencies, 99)), _common.fmt(stats["max"]),
                        _common.fmt(stats["min"]))]), "",
        f"Alerts journaled: one kill naming the container per run: {named}; pushes received: {pushes} "
        f"for {rounds} kill(s).", "",
    ])
    p99 = _common.percentile(latencies, 99)
    verdicts = [
        _common.Verdict("container_kill", "kill→alert p50, watch victim in a container (Bark)",
                        f"{stats['p50']:.2f} ms", "<= 5 ms", stats["p50"] <= 5.0, f"n = {stats['n']:.0f}"),
        _common.Verdict("container_kill", "kill→alert p99, watch victim in a container (Bark)",
                        f"{p99:.2f} ms", "<= 20 ms", p99 <= 20.0, f"max {stats['max']:.2f} ms"),
        _common.Verdict("container_kill", "alerts per killed container", f"{pushes}/{rounds}", "1 each",
                        named and pushes == rounds),
    ]
    _common.publish(args, "container_kill", "13. Kill-to-alert in Docker containers", body, verdicts, started)
    return 0 if named and pushes == rounds else 1


if __name__ == "__main__":
    sys.exit(main())
