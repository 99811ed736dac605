"""`sentinel status`: every run in the spool with its state, as JSON and as a table."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from sentinel.formats import safe_json, spool
from sentinel.host.procid import ProcessIdentity
from sentinel.model.alerts import AlertKind, from_run
from tests.cli_helpers import run_sentinel, sentinel_env, wait_for
from tests.daemon_harness import PretendDaemon


def make_run(
    spool_path: Path, name: str, ident: ProcessIdentity, started: float,
    progress: spool.Progress | None = None, final: spool.FinalRecord | None = None,
) -> spool.RunRecord:
    run_id = spool.new_run_id(ident.pid, now=started)
    paths = spool.RunPaths(spool_path, run_id)
    safe_json.make_private_dir(paths.dir)
    record = spool.RunRecord(
        run_id=run_id, pid=ident.pid, start_ticks=ident.start_ticks, boot_id=ident.boot_id,
        hostname="host", uid=os.getuid(), user="tester", cmdline=["train.py"], cwd="/",
        started=started, heartbeat_interval=10.0, name=name, source="watch",
    )
    safe_json.write_json(paths.run, record.to_dict())
    if progress is not None:
        safe_json.write_json(paths.beat, progress.to_dict())
    if final is not None:
        safe_json.write_json(paths.final, final.to_dict())
    return record


def gone_process() -> ProcessIdentity:
    """The identity of a process that has exited and been reaped."""
    proc = subprocess.Popen(["true"])
    ident = ProcessIdentity.of(proc.pid)
    proc.wait()
    assert ident is not None
    return ident


@pytest.fixture
def populated(tmp_path: Path) -> dict:
    spool_path = tmp_path / "spool"
    safe_json.make_private_dir(spool_path)
    now = time.time()
    me = ProcessIdentity.current()
    finished = make_run(spool_path, "finished-run", gone_process(), now - 300,
                        progress=spool.Progress(beat=now - 200, seq=5, step=900),
                        final=spool.FinalRecord(state="finished", ended=now - 199, exit_code=0, step=1000))
    running = make_run(spool_path, "running-run", me, now - 100,
                       progress=spool.Progress(beat=now - 5, seq=3, last_progress=now - 5, step=42))
    dead = make_run(spool_path, "dead-run", gone_process(), now - 50,
                    progress=spool.Progress(beat=now - 40, seq=1, step=7))
    elsewhere = ProcessIdentity(me.pid, me.start_ticks, "another-boot")
    other_boot = make_run(spool_path, "other-boot-run", elsewhere, now - 30)
    bad = spool.RunPaths(spool_path, spool.new_run_id(99999, now=now))
    safe_json.make_private_dir(bad.dir)
    bad.run.write_text("{not json")
    return {"spool": spool_path, "finished": finished, "running": running, "dead": dead,
            "other_boot": other_boot, "bad": bad.run_id}


def status_json(spool_path: Path, *extra: str) -> dict:
    result = run_sentinel(["status", "--json", *extra], sentinel_env(spool_path))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_status_json_lists_every_run(populated: dict) -> None:
    report = status_json(populated["spool"])
    assert report["spool"] == str(populated["spool"])
    assert report["daemon"] == {"pid": None, "alive": False}
    by_name = {r["name"]: r for r in report["runs"]}
    assert list(by_name) == ["finished-run", "running-run", "dead-run", "other-boot-run"]  # by start

    finished = by_name["finished-run"]
    assert (finished["state"], finished["alive"], finished["step"], finished["exit_code"]) == \
        ("finished", False, 1000, 0)
    assert finished["run_id"] == populated["finished"].run_id
    assert finished["pid"] == populated["finished"].pid

    running = by_name["running-run"]
    assert (running["state"], running["alive"], running["step"]) == ("running", True, 42)
    assert running["pid"] == os.getpid()
    assert 5 <= running["beat_age"] < 3600
    assert running["last_beat"] == pytest.approx(time.time() - running["beat_age"], abs=60)

    dead = by_name["dead-run"]
    assert (dead["state"], dead["alive"], dead["step"], dead["daemon_state"]) == ("dead", False, 7, None)

    # Same pid and start time, but from another boot: not this process.
    assert by_name["other-boot-run"]["state"] == "dead"
    assert by_name["other-boot-run"]["beat_age"] is None

    assert len(report["skipped"]) == 1 and report["skipped"][0].startswith(populated["bad"] + ": ")


def test_status_table(populated: dict) -> None:
    result = run_sentinel(["status"], sentinel_env(populated["spool"]))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"spool {populated['spool']}: 4 run(s); no daemon is watching")
    assert lines[1].split() == ["NAME", "STATE", "PID", "UPTIME", "STEP", "LAST", "BEAT", "RUN", "ID"]
    rows = {line.split()[0]: line for line in lines[2:6]}
    assert set(rows) == {"finished-run", "running-run", "dead-run", "other-boot-run"}
    running = rows["running-run"].split()
    assert running[1] == "running" and running[3:5] == ["uptime", running[4]] and running[5] == "42"
    assert rows["finished-run"].split()[3] == "ended"
    assert "skipped unreadable run record " + populated["bad"] in result.stdout


def test_status_takes_the_spool_from_the_config(populated: dict, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"spool: {populated['spool']}\n")
    env = sentinel_env(tmp_path / "elsewhere")
    result = run_sentinel(["status", "--json", "--config", str(config)], env)
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)["runs"]) == 4


def test_status_of_an_empty_spool(tmp_path: Path) -> None:
    report = status_json(tmp_path / "never-created")
    assert report["runs"] == [] and report["skipped"] == []


def test_status_shows_the_daemon_verdict_and_the_archive(populated: dict) -> None:
    """What the daemon journalled outranks a bare process check: a dead run
    it alerted as killed shows as killed; archived runs show with --all."""
    from sentinel.delivery.outbox import Outbox

    state = populated["spool"] / spool.DAEMON_STATE_DIR
    outbox = Outbox(state / "outbox")
    dead = populated["dead"]
    outbox.enqueue(from_run(f"{dead.run_id}.001.killed", AlertKind.KILLED, dead), [])
    archived = make_run(populated["spool"], "archived-run", gone_process(), time.time() - 1000,
                        final=spool.FinalRecord(state="crashed", ended=time.time() - 900, exit_code=2))
    (state / "archive").mkdir(mode=0o700)
    os.rename(populated["spool"] / archived.run_id, state / "archive" / archived.run_id)

    # A write of the daemon in flight: status only reads, it must not tidy this away.
    in_flight = next((state / "outbox" / "runs").iterdir()) / ".000000000002.x.json.1.tmp"
    in_flight.write_text("{")

    report = status_json(populated["spool"])
    assert in_flight.exists()
    by_name = {r["name"]: r for r in report["runs"]}
    assert (by_name["dead-run"]["state"], by_name["dead-run"]["daemon_state"]) == ("killed", "killed")
    assert "archived-run" not in by_name
    assert report["archived"] == 1

    report = status_json(populated["spool"], "--all")
    by_name = {r["name"]: r for r in report["runs"]}
    assert by_name["archived-run"]["archived"] is True
    assert (by_name["archived-run"]["state"], by_name["archived-run"]["exit_code"]) == ("crashed", 2)
    assert by_name["running-run"]["archived"] is False


def test_status_sees_a_live_daemon(tmp_path: Path) -> None:
    spool_path = tmp_path / "spool"
    with PretendDaemon(spool_path) as daemon:
        assert daemon.proc is not None
        assert status_json(spool_path)["daemon"] == {"pid": daemon.proc.pid, "alive": True}


def test_status_shows_dead_letters(populated: dict) -> None:
    """An alert the daemon gave up on is listed, in the table and the JSON."""
    from sentinel.delivery.outbox import Outbox

    outbox = Outbox(populated["spool"] / spool.DAEMON_STATE_DIR / "outbox")
    dead = populated["dead"]
    alert = from_run(f"{dead.run_id}.001.killed", AlertKind.KILLED, dead)
    outbox.enqueue(alert, ["phone"])
    outbox.mark_failed(alert.alert_id, "phone", "HTTP 400 bad device key", time.time(), permanent=True)
    report = status_json(populated["spool"])
    assert [(d["alert_id"], d["channel"], d["reason"]) for d in report["dead_letters"]] == [
        (alert.alert_id, "phone", "HTTP 400 bad device key")]
    table = run_sentinel(["status"], sentinel_env(populated["spool"]))
    assert f"NOT delivered to phone: alert {alert.alert_id} (HTTP 400 bad device key)" in table.stdout


def test_a_killed_run_stays_in_status_with_its_detail(tmp_path: Path) -> None:
    from tests.daemon_harness import DaemonProcess, wait_for_push
    from tests.fakes import FakeBark
    from tests.victims.harness import Victim

    long_name = "resnet50-" + "x" * 120
    with FakeBark() as bark, \
            DaemonProcess(tmp_path, {"phone": {"type": "bark", "url": bark.key_url}}) as daemon:
        with Victim.watch(daemon.tmp, "stall", "--name", long_name, "--steps", "7", "--heartbeat", "0.1",
                          "--label", "gpu=3", "--channel", '"phone"', spool_dir=daemon.spool).start() as v:
            run_id = v.ready()
            v.expect("STALLED")
            v.kill()
            wait_for_push(bark, AlertKind.KILLED, long_name, signal="SIGKILL")
        wait_for(lambda: not (daemon.spool / run_id).exists(), what="the run archived")
        env = sentinel_env(daemon.spool, COLUMNS="100")
        table = run_sentinel(["status", "--config", str(daemon.config_path)], env)
        assert table.returncode == 0, table.stderr
        [row] = [line for line in table.stdout.splitlines() if run_id in line]
        assert len(row) <= 100 and row.startswith("resnet50-xxx") and "…" in row  # fitted to the width
        assert "killed, archived" in row and "ended" in row
        detail = run_sentinel(["status", run_id[:20], "--config", str(daemon.config_path)], env)
        assert detail.returncode == 0, detail.stderr
        text = detail.stdout
        assert "Labels     gpu=3" in text and "Channels   phone" in text and "Step       7" in text
        assert "Metrics    loss=0.1429, lr=0.1" in text
        assert "Alerts (1):" in text and f"killed  {run_id}.001.killed" in text
        missing = run_sentinel(["status", "no-such-run", "--config", str(daemon.config_path)], env)
        assert missing.returncode == 1 and "no run named 'no-such-run'" in missing.stderr
