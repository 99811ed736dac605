"""Attacks on the daemon's own files, reproduced: a state directory another
user made, a read-only one, a forged daemon.json, damaged and deeply nested
JSON in every file the daemon or ``sentinel status`` reads."""

from __future__ import annotations

import json
import logging
import os
import subprocess
from pathlib import Path

import pytest

from sentinel.daemon import status
from sentinel.delivery.outbox import QUARANTINE_DIR, RUNS_DIR, Outbox
from sentinel.formats import safe_json, spool
from sentinel.formats.daemon_file import daemon_alive
from sentinel.formats.state_dir import StateDir, StateDirError
from sentinel.host.procid import ProcessIdentity
from sentinel.model.alerts import AlertKind
from tests.daemon_harness import DaemonProcess, PretendDaemon
from tests.fakes import FakeBark
from tests.fakes.samples import RUN_ID, sample_alert
from tests.tmpfs import mounted_tmpfs
from tests.users import as_user, shared_spool

DEEP = b"[" * 100_000 + b"]" * 100_000


def assert_refused(daemon: DaemonProcess, reason: str) -> None:
    daemon.start(wait_ready=False)
    assert daemon.proc is not None
    assert daemon.proc.wait(60) == 78
    log = daemon.log()
    assert reason in log and "Traceback" not in log, log


# ---------------------------------------------------------------- the state directory


def test_a_state_directory_precreated_by_another_user_is_refused(tmp_path: Path, shared: Path,
                                                                 other_uid: int) -> None:
    spool_path = shared_spool(shared)
    forged = spool_path / ".daemon" / "outbox" / RUNS_DIR / RUN_ID
    as_user(other_uid, "mkdir", "-p", "-m", "700", str(forged))
    record = {"v": 1, "seq": 1, "alert": sample_alert(AlertKind.KILLED).to_dict(),
              "channels": {"phone": {"state": "pending", "attempts": 0, "first_attempt": None,
                                     "next_attempt": 0.0, "last_error": None, "answer": None,
                                     "done_at": None}}}
    (shared / "forged.json").write_text(json.dumps(record))
    (shared / "forged.json").chmod(0o644)
    as_user(other_uid, "cp", str(shared / "forged.json"), str(forged / f"000000000001.{RUN_ID}.json"))
    with FakeBark() as bark:
        daemon = DaemonProcess(tmp_path / "d", {"phone": {"type": "bark", "url": bark.key_url}},
                               spool=spool_path, state=spool_path / ".daemon")
        assert_refused(daemon, f"owned by uid {other_uid}, not by the daemon's uid 0")
        assert bark.received() == []  # the forged alert was never delivered


def test_a_symlink_planted_in_the_state_tree_is_refused(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "state")
    state.open()
    (state.outbox / "runs").mkdir(mode=0o700, exist_ok=True)
    (state.outbox / "runs" / RUN_ID).symlink_to(tmp_path)
    with pytest.raises(StateDirError, match="symlink"):
        state.open()


def test_a_state_directory_others_may_write_is_refused(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "state")
    state.open()
    state.outbox.chmod(0o777)
    with pytest.raises(StateDirError, match="must be 0700"):
        state.open()


def test_a_read_only_state_directory_is_one_clear_line(tmp_path: Path) -> None:
    with mounted_tmpfs(tmp_path / "ro", "1m") as mount:
        StateDir(mount / "state").open()
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        daemon = DaemonProcess(tmp_path / "d", {"log": {"type": "console"}}, state=mount / "state")
        assert_refused(daemon, "is not writable: read-only file system")


def test_legacy_state_is_migrated_only_when_it_is_ours(tmp_path: Path, other_uid: int) -> None:
    legacy = StateDir(tmp_path / "spool" / ".daemon")
    legacy.open()
    Outbox(legacy.outbox).enqueue(sample_alert(AlertKind.KILLED), [])
    new = StateDir(tmp_path / "state")
    assert new.migrate_from(legacy.path)
    assert [a.kind for a in Outbox(new.outbox).journal(RUN_ID)] == [AlertKind.KILLED]
    assert not legacy.path.exists()

    foreign = tmp_path / "spool2" / ".daemon"
    foreign.mkdir(parents=True)
    os.chown(foreign, other_uid, -1)
    assert not StateDir(tmp_path / "state2").migrate_from(foreign)
    assert foreign.exists()


# ---------------------------------------------------------------- daemon.json


def test_a_forged_daemon_json_does_not_switch_the_fallback_off(tmp_path: Path, shared: Path,
                                                               other_uid: int) -> None:
    spool_path = shared_spool(shared)
    live_pids = {"pid 1": ProcessIdentity.of(1), "this process": ProcessIdentity.current()}
    for what, ident in live_pids.items():
        assert ident is not None
        payload = json.dumps(spool.DaemonLiveness(ident.pid, ident.start_ticks, ident.boot_id).to_dict())
        (spool_path / spool.DAEMON_FILE).write_text(payload)  # by root: right owner, wrong process
        assert not daemon_alive(spool_path), what
        (spool_path / spool.DAEMON_FILE).unlink()
        (shared / "forged.json").write_text(payload)
        (shared / "forged.json").chmod(0o644)
        as_user(other_uid, "cp", str(shared / "forged.json"), str(spool_path / spool.DAEMON_FILE))
        assert not daemon_alive(spool_path), what
        assert status.collect(spool_path).daemon_alive is False
        (spool_path / spool.DAEMON_FILE).unlink()
    with PretendDaemon(spool_path):  # the real thing (named as the daemon names itself) is believed
        assert daemon_alive(spool_path)


def test_a_daemon_json_written_by_another_user_naming_a_daemon_is_not_trusted(
        shared: Path, other_uid: int) -> None:
    spool_path = shared_spool(shared)
    with PretendDaemon(spool_path):
        os.chown(spool_path / spool.DAEMON_FILE, other_uid, -1)
        assert not daemon_alive(spool_path)


# ---------------------------------------------------------------- damaged and nested JSON


def test_deeply_nested_json_is_a_format_error_everywhere(tmp_path: Path, caplog) -> None:
    spool_path = tmp_path / "spool"
    safe_json.make_private_dir(spool_path)
    (spool_path / spool.DAEMON_FILE).write_bytes(DEEP)
    assert not daemon_alive(spool_path)
    run_dir = spool_path / RUN_ID
    run_dir.mkdir()
    (run_dir / "run.json").write_bytes(DEEP)
    report = status.collect(spool_path, tmp_path / "state")
    assert report.runs == [] and "nested deeper than" in report.skipped[0]
    state = StateDir(tmp_path / "state")
    state.open()
    outbox = Outbox(state.outbox)
    outbox.enqueue(sample_alert(AlertKind.KILLED), ["phone"])
    record_dir = state.outbox / RUNS_DIR / RUN_ID
    (record_dir / "000000000002.deep.json").write_bytes(DEEP)
    with caplog.at_level(logging.ERROR, logger="sentinel.outbox"):
        reopened = Outbox(state.outbox)
    assert reopened.pending_count() == 1 and "nested deeper than" in caplog.text
    assert status.collect(spool_path, state.path).skipped  # and status still answers


def test_an_outbox_record_missing_a_field_is_quarantined_once(tmp_path: Path, caplog) -> None:
    root = tmp_path / "outbox"
    outbox = Outbox(root)
    good, bad = sample_alert(n=1), sample_alert(n=2)
    outbox.enqueue(good, ["phone"])
    outbox.enqueue(bad, ["phone"])
    [path] = (root / RUNS_DIR / RUN_ID).glob(f"*.{bad.alert_id}.json")
    data = json.loads(path.read_text())
    del data["channels"]["phone"]["attempts"]
    path.write_text(json.dumps(data))
    with caplog.at_level(logging.ERROR, logger="sentinel.outbox"):
        reopened = Outbox(root)
        Outbox(root)  # a second start finds nothing left to complain about
    assert caplog.text.count("unreadable") == 1 and "attempts" in caplog.text
    assert [p.alert.alert_id for p in reopened.pending("phone")] == [good.alert_id]
    assert [p.name for p in (root / QUARANTINE_DIR).iterdir()] == [f"{RUN_ID}.{path.name}"]


def test_the_system_service_keeps_its_state_out_of_the_spool(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from sentinel.daemon.config import Config

    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "lib"))  # as systemd sets it for StateDirectory=
    config = Config(spool=tmp_path / "spool")
    assert config.state_path() == tmp_path / "lib" / "state"
    assert config.legacy_state_path() == tmp_path / "spool" / ".daemon"
    monkeypatch.delenv("STATE_DIRECTORY")
    assert config.state_path() == tmp_path / "spool" / ".daemon"


def test_the_daemon_migrates_a_legacy_state_at_its_first_start(tmp_path: Path) -> None:
    legacy = StateDir(tmp_path / "spool" / ".daemon")
    legacy.open()
    Outbox(legacy.outbox).enqueue(sample_alert(AlertKind.KILLED), [])
    daemon = DaemonProcess(tmp_path / "d", {"log": {"type": "console"}}, spool=tmp_path / "spool",
                           state=tmp_path / "lib" / "state")
    with daemon:
        daemon.wait_log("moved the daemon's state from")
        assert daemon.stop() == 0
    assert [a.kind for a in daemon.journal(RUN_ID)] == [AlertKind.KILLED]
    assert not legacy.path.exists()
