"""The daemon's metrics (/metrics and the textfile) and status page, from a real daemon process."""

from __future__ import annotations

import json
import os
import urllib.error
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_harness import DaemonProcess
from tests.fakes.alertmanager import FakeAlertmanager
from tests.fleet_harness import free_port, get
from tests.victims.harness import Victim, wait_for

prometheus_client = pytest.importorskip("prometheus_client", reason="pip install 'run-sentinel[prometheus]'")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

HOSTILE = "<script>alert(1)</script>\x1b[31m\u202e" + "x" * 300


def samples(text: str) -> list[Any]:
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def value(text: str, name: str, **labels: str) -> Any:
    for sample in samples(text):
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
            return sample.value
    return None


def test_metrics_status_and_textfile_follow_a_run(tmp_path: Path) -> None:
    port = free_port()
    textfile = tmp_path / "textfile" / "sentinel.prom"
    textfile.parent.mkdir()
    with FakeAlertmanager() as am, DaemonProcess(
            tmp_path, {"am": {"type": "alertmanager", "url": am.url}}, host="node-a",
            metrics={"listen": f"127.0.0.1:{port}", "textfile": str(textfile)}) as daemon:
        base = f"http://127.0.0.1:{port}"
        victim = Victim.watch(tmp_path, "sleep-forever", "--name", HOSTILE, "--label", "job=j1",
                              "--label", "rank=0", spool_dir=daemon.spool).start()
        with victim:
            run_id = victim.ready()
            def with_run() -> Any:
                t = get(base + "/metrics").decode()
                return t if value(t, "sentinel_run_step", run_id=run_id) is not None else None

            text = wait_for(with_run, what="the run's step series")
            assert value(text, "sentinel_build_info", host="node-a") == 1
            assert value(text, "sentinel_up") == 1
            assert value(text, "sentinel_last_loop_timestamp_seconds") > 0
            assert value(text, "sentinel_runs", state="running") == 1
            assert value(text, "sentinel_outbox_pending") == 0
            labels = next(s.labels for s in samples(text)
                          if s.name == "sentinel_run_last_progress_timestamp_seconds")
            assert (labels["job"], labels["rank"], labels["run_id"]) == ("j1", "0", run_id)
            assert "\x1b" not in labels["run"] and "\u202e" not in labels["run"]
            assert len(labels["run"]) <= 128

            page = get(base + "/").decode()
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>" not in page
            assert "\x1b" not in page or "&" in page  # every value went through html.escape
            status = json.loads(get(base + "/status.json"))
            assert [r["run_id"] for r in status["runs"]] == [run_id]
            with pytest.raises(urllib.error.HTTPError) as info:
                get(base + "/secrets")
            assert info.value.code == 404

            wait_for(lambda: textfile.exists() and value(textfile.read_text(), "sentinel_run_step",
                                                          run_id=run_id) is not None,
                     what="the run in the textfile")
            victim.kill()

        def ended() -> Any:
            t = get(base + "/metrics").decode()
            done = (value(t, "sentinel_run_endings_total", ending="killed") == 1
                    and value(t, "sentinel_deliveries_total", channel="am", result="delivered") == 1)
            return t if done else None

        text = wait_for(ended, what="the kill counted and delivered")
        assert value(text, "sentinel_run_step", run_id=run_id) is None  # per-run series vanish
        assert value(text, "sentinel_runs", state="running") == 0
        wait_for(lambda: value(textfile.read_text(), "sentinel_run_step", run_id=run_id) is None,
                 what="the run gone from the textfile")
        assert os.listdir(textfile.parent) == ["sentinel.prom"]  # written atomically, nothing left over
        [posted] = am.alerts
        assert posted["labels"]["alertname"] == "RunKilled" and posted["labels"]["host"] == "node-a"
        assert daemon.stop() == 0


def test_a_busy_metrics_address_stops_the_daemon_with_a_clear_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        daemon = DaemonProcess(tmp_path, {"console": {"type": "console"}},
                               metrics={"listen": f"127.0.0.1:{port}"})
        daemon.start(wait_ready=False)
        assert daemon.proc is not None
        assert daemon.proc.wait(30) == 1
        assert f"cannot start the fleet side (metrics, healthchecks) on 127.0.0.1:{port}" in daemon.log()
