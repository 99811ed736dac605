"""A full disk under the daemon's state directory: no alert is sent again and again.

The state directory is a real, tiny tmpfs (root only). The disk fills while
the first delivery is in flight, so the outbox cannot record the outcome:
the channel must wait (backing off) instead of resending, and once space is
freed the outcome is written once and nothing is sent again.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path
from typing import Iterator

import pytest

from sentinel.delivery.outbox import DELIVERED, RUNS_DIR, read_dead_letters, read_record
from sentinel.model.alerts import AlertKind
from tests.daemon_harness import DaemonProcess
from tests.fakes import FakeBark
from tests.tmpfs import mounted_tmpfs
from tests.victims.harness import Victim, wait_for

SAVE_FAILED = "cannot record the delivery state"


@pytest.fixture
def tiny_state(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs for the daemon's state, unmounted afterwards (root only)."""
    with mounted_tmpfs(tmp_path / "state-fs", "2m") as mount:
        yield mount


def fill(directory: Path) -> Path:
    """Write a file until the file system has no byte left."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (1 << 20, 65536, 4096, 1):
            with contextlib.suppress(OSError):
                while os.write(fd, b"\0" * size):
                    pass
    finally:
        os.close(fd)
    with pytest.raises(OSError) as full:
        (directory / "probe").write_bytes(b"\0" * 4096)
    assert full.value.errno == errno.ENOSPC
    return filler


def outbox_records(state: Path) -> list:
    runs = state / "outbox" / RUNS_DIR
    return [read_record(path) for path in sorted(runs.glob("*/*.json"))]


def killed_run(daemon: DaemonProcess, bark: FakeBark, name: str) -> str:
    """Start a victim, hold the fake's answer, kill the victim; the run id once its alert is in flight."""
    bark.hold_after(0)
    victim = Victim.watch(daemon.tmp, "sleep-forever", "--name", name, "--heartbeat", "0.1",
                          spool_dir=daemon.spool).start()
    with victim:
        run_id = victim.ready()
        victim.expect("RUNNING")
        victim.kill()
        bark.wait_for_requests(1, timeout=30)
    return run_id


@pytest.mark.parametrize("outcome", ["delivered", "dead-lettered"])
def test_full_state_disk_sends_an_alert_once(tmp_path: Path, tiny_state: Path, outcome: str) -> None:
    with FakeBark() as bark, DaemonProcess(tmp_path, {"phone": {"type": "bark", "url": bark.key_url}},
                                           state=tiny_state / "state") as daemon:
        if outcome == "dead-lettered":
            bark.fail("4xx")  # a permanent failure: the alert goes to the dead letters
        run_id = killed_run(daemon, bark, "full-disk")
        filler = fill(tiny_state)
        bark.release()  # the answer arrives; its outcome cannot be written
        daemon.wait_log(SAVE_FAILED)
        # The write is retried with backoff, and each retry is logged: two
        # more lines prove the channel went round (and did not resend).
        wait_for(lambda: daemon.log().count(SAVE_FAILED) >= 3, 30, what="two write retries")
        assert len(bark.received()) == 1
        filler.unlink()

        def settled() -> bool:
            [record] = outbox_records(daemon.state)
            return not record.open

        wait_for(settled, 30, what="the outcome written once space is free")
        [record] = outbox_records(daemon.state)
        assert record.alert.kind is AlertKind.KILLED and record.alert.run_id == run_id
        letters = read_dead_letters(daemon.state / "outbox")
        if outcome == "delivered":
            assert record.channels["phone"].state == DELIVERED and record.channels["phone"].attempts == 1
            assert letters == []
        else:
            assert record.channels["phone"].state == "dead"
            assert [(d.alert_id, d.channel) for d in letters] == [(record.alert.alert_id, "phone")]
        assert daemon.stop() == 0
    assert len(bark.received()) == 1  # never resent, also not at shutdown


def test_a_full_state_disk_does_not_hold_back_a_kill_alert(tmp_path: Path, tiny_state: Path) -> None:
    """The alert is sent first and its record written after: with no byte
    left for the record, the phone still hears of the kill at once. The run
    stays in the spool (a restarted daemon would decide it again) until the
    record is written, once there is space; nothing is sent twice."""
    with FakeBark() as bark, DaemonProcess(tmp_path, {"phone": {"type": "bark", "url": bark.key_url}},
                                           state=tiny_state / "state") as daemon:
        victim = Victim.watch(daemon.tmp, "sleep-forever", "--name", "no-room", "--heartbeat", "0.1",
                              spool_dir=daemon.spool).start()
        with victim:
            run_id = victim.ready()
            victim.expect("RUNNING")
            # Admitted: the run's record directory is made then (a kill pays for no mkdir).
            wait_for(lambda: (daemon.state / "outbox" / RUNS_DIR / run_id).is_dir(), 30, what="admission")
            filler = fill(tiny_state)
            victim.kill()
            bark.wait_for_requests(1, timeout=30)
        assert "no-room" in bark.received()[0].body.decode()
        daemon.wait_log(f"cannot write the record of alert {run_id}.")
        # Its outcome cannot be written either; retried with backoff: the channel went round.
        wait_for(lambda: daemon.log().count(SAVE_FAILED) >= 2, 30, what="a write retry")
        assert outbox_records(daemon.state) == []
        # Not archived without its record. (Here the archive, on the tmpfs, cannot take the run
        # from the spool's file system: the daemon's attempt shows as that warning.)
        archiving = f"cannot archive {daemon.spool / run_id}"
        assert archiving not in daemon.log() and (daemon.spool / run_id).is_dir()
        filler.unlink()

        def settled() -> bool:
            records = outbox_records(daemon.state)
            return len(records) == 1 and not records[0].open

        wait_for(settled, 30, what="the record written once space is free")
        [record] = outbox_records(daemon.state)
        assert record.alert.kind is AlertKind.KILLED and record.alert.run_id == run_id
        assert record.channels["phone"].state == DELIVERED and record.channels["phone"].attempts == 1
        daemon.wait_log(archiving)  # retired once its record is written
        assert daemon.stop() == 0
    assert len(bark.received()) == 1
