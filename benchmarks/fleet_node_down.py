"""Fleets: SIGSTOP of a node's daemon -> the node-down notification, with the shipped settings.

    python3 benchmarks/fleet_node_down.py [--tiny]

Each round starts a real daemon (``host: node-a``, metrics on 127.0.0.1), a
real Prometheus scraping it with ``deploy/prometheus/prometheus.yml``'s
intervals (15 s scrape, 10 s timeout, 15 s evaluation) and
``deploy/prometheus/rules.yml`` as shipped (SentinelNodeDown ``for: 1m``),
and a real Alertmanager with ``deploy/alertmanager/alertmanager.yml``'s
route (group_wait 30 s) notifying a fake webhook receiver on 127.0.0.1.
Once Prometheus has scraped the daemon, the daemon is frozen (SIGSTOP, as a
hung host would be) and the time to the receiver's arrival stamp of the
SentinelNodeDown notification is measured on one monotonic clock. Fresh
services per round, so no earlier notification shifts Alertmanager's timers.
``--tiny`` shortens every interval to a second (CI smoke run).
"""

from __future__ import annotations

import _common

_common.ensure_venv()

import os  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from _common import Verdict, fmt, table  # noqa: E402

from tests.daemon_harness import DaemonProcess  # noqa: E402
from tests.fakes.alertmanager import FakeWebhookReceiver  # noqa: E402
from tests.fleet_harness import Alertmanager, Prometheus, free_port, wait_for  # noqa: E402

FULL = dict(rounds=3, prometheus={"scrape_interval": "15s", "scrape_timeout": "10s", "rule_for": None},
            alertmanager={}, limit=400.0)
TINY = dict(rounds=1, prometheus={"scrape_interval": "1s", "scrape_timeout": "500ms", "rule_for": "3s"},
            alertmanager={"group_wait": "1s", "group_interval": "1s"}, limit=120.0)


def one_round(tmp: Path, size: dict) -> float:
    """Seconds from SIGSTOP to the node-down notification's arrival."""
    with FakeWebhookReceiver() as receiver, \
            Alertmanager(tmp, receiver.url + "/alerts", **size["alertmanager"]) as am:
        port = free_port()
        daemon = DaemonProcess(tmp / "node-a", {"console": {"type": "console"}}, host="node-a",
                               metrics={"listen": f"127.0.0.1:{port}"})
        with daemon, Prometheus(tmp, {"node-a": port}, am.address, **size["prometheus"]) as prom:
            wait_for(lambda: prom.query('up{job="sentinel"} == 1'), 120, interval=0.2, what="a scrape")
            assert daemon.proc is not None
            t0 = time.monotonic_ns()
            os.kill(daemon.proc.pid, signal.SIGSTOP)
            try:
                def arrived() -> int:
                    for request in receiver.received():
                        if request.status == 200 and any(
                                a["labels"].get("alertname") == "SentinelNodeDown"
                                and a["labels"].get("host") == "node-a" and a["status"] == "firing"
                                for a in request.json()["alerts"]):
                            return request.arrival_ns
                    return 0

                arrival = wait_for(arrived, size["limit"], interval=0.05, what="the node-down notification")
            finally:
                os.kill(daemon.proc.pid, signal.SIGCONT)
    return (arrival - t0) / 1e9


def main() -> int:
    args = _common.parser(__doc__.splitlines()[0]).parse_args()
    started = time.monotonic()
    info = _common.machine()
    size = TINY if args.tiny else FULL
    seconds: list[float] = []
    for index in range(size["rounds"]):
        tmp = Path(tempfile.mkdtemp(prefix="sentinel-bench-fleet-"))
        try:
            seconds.append(one_round(tmp, size))
            print(f"round {index + 1}: node down notified {seconds[-1]:.1f} s after SIGSTOP", flush=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    stats = _common.summary(seconds)
    settings = ("scrape 15 s (timeout 10 s), evaluation 15 s, `for: 1m`, group_wait 30 s" if not args.tiny
                else "every interval 1 s, `for: 3s`, group_wait 1 s (tiny)")
    body = "\n".join([
        "SIGSTOP of a daemon (a frozen host) until Alertmanager's webhook receiver gets "
        "SentinelNodeDown naming it; real Prometheus and Alertmanager with the shipped "
        f"configuration ({settings}); {len(seconds)} round(s), fresh services each.", "",
        table(["rounds", "min s", "median s", "max s"],
              [(len(seconds), fmt(min(seconds), 1), fmt(stats["p50"], 1), fmt(max(seconds), 1))]),
        "",
        "The budget: up to one scrape interval until a scrape times out, up to one evaluation "
        "interval until the rule sees it, `for:` pending, one more evaluation, then group_wait. "
        "Each round freezes the daemon just after a scrape Prometheus made, so the rounds share one "
        "phase; a freeze at another moment in the scrape cycle can take up to one scrape interval less.",
    ])
    verdicts = [Verdict("fleet", "SIGSTOP of a node's daemon -> node-down notification (shipped settings)",
                        f"median {fmt(stats['p50'], 1)} s (max {fmt(max(seconds), 1)} s)", "–", None,
                        settings)]
    _common.publish(args, "fleet_node_down", "5. Fleets: node down", body, verdicts, started, info)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
