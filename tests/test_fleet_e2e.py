"""Fleets end to end: two daemons as two hosts, real Prometheus and Alertmanager.

Prometheus scrapes both daemons (job ``sentinel``) with the shipped rules
(only ``for:`` shortened to 3 s and intervals to 1 s); Alertmanager runs the
shipped route (group by job) and notifies a local fake webhook receiver.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.daemon_harness import DaemonProcess
from tests.fakes.alertmanager import FakeWebhookReceiver
from tests.fleet_harness import PROMETHEUS_BIN, RULES, Alertmanager, Prometheus, binary, free_port
from tests.victims.harness import Victim, wait_for

pytest.importorskip("prometheus_client", reason="pip install 'run-sentinel[prometheus]'")


def test_shipped_rules_pass_promtool() -> None:
    promtool = binary("promtool")
    result = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 6 rules found" in result.stdout


@pytest.fixture
def receiver() -> Iterator[FakeWebhookReceiver]:
    with FakeWebhookReceiver() as fake:
        yield fake  # type: ignore[misc]


def two_hosts(tmp: Path, am_url: str) -> tuple[DaemonProcess, DaemonProcess, dict[str, int]]:
    ports = {"node-a": free_port(), "node-b": free_port()}
    daemons = [DaemonProcess(tmp / host, {"am": {"type": "alertmanager", "url": am_url}}, host=host,
                             metrics={"listen": f"127.0.0.1:{port}"}) for host, port in ports.items()]
    return daemons[0], daemons[1], ports


def labels_of(alerts: list[dict[str, Any]], key: str) -> list[str]:
    return sorted(a["labels"].get(key, "") for a in alerts)


def test_frozen_node_is_reported_down_and_a_killed_run_once(tmp_path: Path,
                                                             receiver: FakeWebhookReceiver) -> None:
    binary(PROMETHEUS_BIN)
    # group_interval short: the daemons' group (job="sentinel") may already have notified
    # (SentinelMetricsAbsent fires before the first scrape with the shortened for:).
    with Alertmanager(tmp_path, receiver.url + "/alerts", group_wait="1s", group_interval="2s") as am:
        node_a, node_b, ports = two_hosts(tmp_path, am.url)
        with node_a, node_b, Prometheus(tmp_path, ports, am.address) as prom:
            wait_for(lambda: len(prom.query('up{job="sentinel"} == 1')) == 2, 60, what="both daemons scraped")
            run = Victim.watch(tmp_path / "victim", "sleep-forever", "--name", "train-b",
                               spool_dir=node_b.spool).start()
            with run:
                run.ready()
                assert node_a.proc is not None
                os.kill(node_a.proc.pid, signal.SIGSTOP)
                try:
                    run.kill()
                    down = wait_for(lambda: receiver.alerts_named("SentinelNodeDown"), 120,
                                    what="a node-down notification")
                    assert labels_of(down, "host") == ["node-a"]
                    assert down[0]["status"] == "firing"
                    killed = wait_for(lambda: receiver.alerts_named("RunKilled"), 30, what="the run's alert")
                    # Node down takes longer than the kill's alert: by now a repeat would have come.
                    assert len(killed) == 1
                    assert (killed[0]["labels"]["run"], killed[0]["labels"]["host"]) == ("train-b", "node-b")
                finally:
                    os.kill(node_a.proc.pid, signal.SIGCONT)


def test_one_job_across_two_hosts_gives_one_grouped_notification(tmp_path: Path,
                                                                  receiver: FakeWebhookReceiver) -> None:
    with Alertmanager(tmp_path, receiver.url + "/alerts", group_wait="5s") as am:
        node_a, node_b, _ = two_hosts(tmp_path, am.url)
        with node_a, node_b:
            ranks = [Victim.watch(tmp_path / f"rank{rank}", "sleep-forever", "--name", f"llm-rank{rank}",
                                  "--label", "job=llm-7b", "--label", f"rank={rank}",
                                  spool_dir=node.spool).start()
                     for rank, node in enumerate((node_a, node_b))]
            with ranks[0], ranks[1]:
                for victim in ranks:
                    victim.ready()
                for victim in ranks:
                    victim.kill()
                notifications = wait_for(lambda: [n for n in receiver.notifications
                                                  if n["groupLabels"].get("job") == "llm-7b"], 60,
                                         what="the job's notification")
                [notification] = notifications
                assert labels_of(notification["alerts"], "rank") == ["0", "1"]
                assert labels_of(notification["alerts"], "host") == ["node-a", "node-b"]
                assert labels_of(notification["alerts"], "alertname") == ["RunKilled", "RunKilled"]
