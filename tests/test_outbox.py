"""The durable outbox: retry schedule, journal, FIFO, dead letters, and a
sender SIGKILLed mid-delivery whose successor delivers everything."""

from __future__ import annotations

import json
import logging
import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading

import pytest

from sentinel.delivery.outbox import Outbox, RetryPolicy, SyncThread, backoff, next_attempt
from sentinel.model.alerts import AlertKind
from tests.fakes import FakeSlack
from tests.fakes.samples import NOW, RUN_ID, sample_alert
from tests.waiting import wait_for

# ---------------------------------------------------------------- retry schedule (pure)

POLICY = RetryPolicy(base=10.0, factor=2.0, cap=1800.0, jitter=0.25, retry_for=48 * 3600.0)


def test_backoff_doubles_up_to_the_cap():
    assert [backoff(n, POLICY, rand=0.0) for n in range(1, 9)] == [10, 20, 40, 80, 160, 320, 640, 1280]
    assert backoff(9, POLICY, rand=0.0) == 1800.0
    assert backoff(10_000, POLICY, rand=0.0) == 1800.0  # no overflow


def test_jitter_only_shortens_within_its_fraction():
    assert backoff(3, POLICY, rand=0.999999) == pytest.approx(40 * 0.75, rel=1e-5)
    assert backoff(3, POLICY, rand=0.5) == pytest.approx(40 * 0.875)
    assert all(1800 * 0.75 <= backoff(50, POLICY, rand=r / 10) <= 1800 for r in range(10))


def test_retry_after_is_honoured_even_beyond_the_cap():
    assert next_attempt(NOW, 1, NOW, POLICY, rand=0.0, retry_after=600.0) == NOW + 600.0
    assert next_attempt(NOW, 1, NOW, POLICY, rand=0.0, retry_after=3.0) == NOW + 10.0
    assert next_attempt(NOW, 1, NOW, POLICY, rand=0.0, retry_after=7200.0) == NOW + 7200.0


def test_gives_up_only_after_retry_for():
    start = NOW
    assert next_attempt(start + POLICY.retry_for - 1, 90, start, POLICY, rand=0.5) is not None
    assert next_attempt(start + POLICY.retry_for, 91, start, POLICY, rand=0.5) is None


def test_retries_span_at_least_retry_for():
    """Simulate an endless outage: attempts keep coming until retry_for has passed."""
    now, attempts, times = NOW, 0, []
    while True:
        attempts += 1
        times.append(now)
        when = next_attempt(now, attempts, NOW, POLICY, rand=0.7)
        if when is None:
            break
        assert when - now <= POLICY.cap
        now = when
    assert times[-1] - NOW >= POLICY.retry_for
    assert times[-1] - NOW < POLICY.retry_for + POLICY.cap
    assert 90 <= attempts <= 150  # ~half-hourly for two days, not a hammering


# ---------------------------------------------------------------- records


@pytest.fixture
def outbox(tmp_path):
    return Outbox(tmp_path / "outbox", policy=POLICY)


def test_enqueue_is_durable_idempotent_and_private(outbox, tmp_path):
    alert = sample_alert(AlertKind.CRASHED)
    assert outbox.enqueue(alert, ["slack", "bark"]) is True
    assert outbox.enqueue(alert, ["slack"]) is False
    assert outbox.known(alert.alert_id)
    assert outbox.pending_count() == 2
    files = list((tmp_path / "outbox" / "runs" / RUN_ID).iterdir())
    assert [f.name for f in files] == [f"000000000001.{alert.alert_id}.json"]
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "outbox").stat().st_mode) == 0o700
    record = json.loads(files[0].read_text())
    assert record["alert"] == alert.to_dict()
    assert list(record["channels"]) == ["slack", "bark"]


def test_journal_survives_reopening_in_enqueue_order(outbox, tmp_path):
    kinds = [AlertKind.STALLED, AlertKind.RECOVERED, AlertKind.KILLED]
    for n, kind in enumerate(kinds, 1):
        outbox.enqueue(sample_alert(kind, n=n), [] if kind == AlertKind.RECOVERED else ["console"])
    outbox.enqueue(sample_alert(AlertKind.CRASHED, run_id="20250615T150000-1-000001", n=1), ["console"])
    reopened = Outbox(tmp_path / "outbox")
    assert [a.kind for a in reopened.journal(RUN_ID)] == kinds  # zero-channel alert included
    assert reopened.journal(RUN_ID)[0] == sample_alert(AlertKind.STALLED, n=1)
    assert reopened.known(sample_alert(AlertKind.RECOVERED, n=2).alert_id)
    assert reopened.pending_count() == 3
    assert reopened.journal("20250615T999999-1-000000") == []


def test_pending_is_fifo_per_channel(outbox):
    ids = []
    for n in range(1, 6):
        alert = sample_alert(AlertKind.MESSAGE, n=n)
        ids.append(alert.alert_id)
        outbox.enqueue(alert, ["slack"] if n % 2 else ["slack", "bark"])
    assert [p.alert.alert_id for p in outbox.pending("slack")] == ids
    assert [p.alert.alert_id for p in outbox.pending("bark")] == [ids[1], ids[3]]
    outbox.mark_delivered(ids[0], "slack", "Slack: 200 ok", NOW)
    assert [p.alert.alert_id for p in outbox.pending("slack")] == ids[1:]
    assert sorted(outbox.channels_pending()) == ["bark", "slack"]


def test_delivered_state_survives_restart(outbox, tmp_path):
    a, b = sample_alert(n=1), sample_alert(n=2)
    outbox.enqueue(a, ["slack"])
    outbox.enqueue(b, ["slack"])
    outbox.mark_delivered(a.alert_id, "slack", "ok", NOW)
    outbox.mark_failed(b.alert_id, "slack", "HTTP 503", NOW, permanent=False, rand=0.0)
    reopened = Outbox(tmp_path / "outbox", policy=POLICY)
    (pending,) = reopened.pending("slack")
    assert pending.alert.alert_id == b.alert_id
    assert pending.attempts == 1 and pending.next_attempt == NOW + 10.0 and pending.last_error == "HTTP 503"


def test_permanent_failure_is_dead_lettered_loudly(outbox, tmp_path, caplog):
    alert = sample_alert()
    outbox.enqueue(alert, ["slack"])
    with caplog.at_level(logging.ERROR, logger="sentinel.outbox"):
        when = outbox.mark_failed(alert.alert_id, "slack", "HTTP 404 no_service", NOW, permanent=True)
    assert when is None
    assert outbox.pending_count() == 0
    (letter,) = outbox.dead_letters()
    assert (letter.alert_id, letter.channel, letter.reason, letter.attempts) == (
        alert.alert_id, "slack", "HTTP 404 no_service", 1)
    assert letter.path.parent == tmp_path / "outbox" / "dead"
    assert json.loads(letter.path.read_text())["alert"] == alert.to_dict()
    (record,) = caplog.records
    assert record.levelno == logging.ERROR and "NOT delivered" in record.getMessage()
    assert outbox.prune_dead_letters(NOW + 10, retention=60) == 0
    assert outbox.prune_dead_letters(NOW + 61, retention=60) == 1


def test_transient_failures_for_too_long_are_dead_lettered(outbox):
    alert = sample_alert()
    outbox.enqueue(alert, ["slack"])
    assert outbox.mark_failed(alert.alert_id, "slack", "timeout", NOW, permanent=False) is not None
    assert outbox.mark_failed(alert.alert_id, "slack", "timeout", NOW + POLICY.retry_for,
                              permanent=False) is None
    (letter,) = outbox.dead_letters()
    assert letter.reason.startswith(
        "gave up after 2 attempts over 48.0 h of transient failures; last: timeout")


def test_forget_run(outbox, tmp_path):
    outbox.enqueue(sample_alert(n=1), ["slack"])
    outbox.forget_run(RUN_ID)
    assert not outbox.known(sample_alert(n=1).alert_id)
    assert outbox.journal(RUN_ID) == [] and outbox.pending_count() == 0
    assert not (tmp_path / "outbox" / "runs" / RUN_ID).exists()


def test_alert_without_run_and_unsafe_ids(outbox):
    assert outbox.enqueue(sample_alert(AlertKind.TEST, alert_id="test.1", run_id=""), ["console"])
    assert [a.alert_id for a in outbox.journal("")] == ["test.1"]
    with pytest.raises(ValueError):
        outbox.enqueue(sample_alert(alert_id="../escape"), ["console"])


def test_damaged_files_are_skipped_and_strays_removed(outbox, tmp_path, caplog):
    outbox.enqueue(sample_alert(n=1), ["slack"])
    run_dir = tmp_path / "outbox" / "runs" / RUN_ID
    (run_dir / "000000000002.x.json").write_text("{not json")
    (run_dir / ".000000000003.y.json.123.abcd.tmp").write_text("half")
    with caplog.at_level(logging.ERROR, logger="sentinel.outbox"):
        reopened = Outbox(tmp_path / "outbox")
    assert reopened.pending_count() == 1
    assert "unreadable" in caplog.text
    assert not (run_dir / ".000000000003.y.json.123.abcd.tmp").exists()
    assert reopened.enqueue(sample_alert(n=9), ["slack"])  # sequence continues past the damaged one


def _fsynced_paths(monkeypatch):
    """Record what each os.fsync call flushes (a power cut cannot be staged here)."""
    synced = []
    real = os.fsync

    def recording(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real(fd)

    monkeypatch.setattr(os, "fsync", recording)
    return synced


def test_an_admitted_alert_is_deliverable_before_its_record_is_written(outbox, tmp_path, monkeypatch):
    synced = _fsynced_paths(monkeypatch)
    alert = sample_alert(AlertKind.KILLED)
    outbox.prepare_run(RUN_ID)
    assert outbox.admit(alert, ["slack"]) is True
    assert outbox.admit(alert, ["slack"]) is False and outbox.enqueue(alert, ["slack"]) is False
    assert [p.alert.alert_id for p in outbox.pending("slack")] == [alert.alert_id]
    run_dir = tmp_path / "outbox" / "runs" / RUN_ID
    assert list(run_dir.iterdir()) == []  # nothing on disk yet: the request goes first
    assert outbox.unwritten(RUN_ID) and not outbox.unwritten("another-run")
    assert outbox.journal(RUN_ID) == [alert] and outbox.run_of(alert.alert_id) == RUN_ID
    assert outbox.write_admitted() is True
    assert not outbox.unwritten(RUN_ID)
    record = run_dir / f"000000000001.{alert.alert_id}.json"
    assert json.loads(record.read_text())["alert"] == alert.to_dict()
    assert synced == []
    outbox.sync()
    assert str(record) in synced
    assert [p.alert.alert_id for p in Outbox(tmp_path / "outbox").pending("slack")] == [alert.alert_id]


def test_an_outcome_written_before_the_admitted_record_is_not_undone(outbox, tmp_path):
    alert = sample_alert(AlertKind.KILLED)
    outbox.admit(alert, ["slack"])
    outbox.mark_delivered(alert.alert_id, "slack", "Slack: 200 ok", NOW)  # the answer came first
    assert not outbox.unwritten(RUN_ID)  # the outcome wrote the whole record
    assert outbox.write_admitted() is True
    reopened = Outbox(tmp_path / "outbox")
    assert reopened.pending("slack") == [] and reopened.journal(RUN_ID) == [alert]


def test_an_admitted_record_that_cannot_be_written_is_kept_and_written_later(outbox, tmp_path, monkeypatch,
                                                                              caplog):
    import errno

    from sentinel.delivery import outbox as outbox_module

    alert = sample_alert(AlertKind.KILLED)
    outbox.prepare_run(RUN_ID)
    outbox.admit(alert, ["slack"])
    real_write = outbox_module.write_json
    tries = []

    def disk_full(*args, **kwargs):
        tries.append(args[0])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(outbox_module, "write_json", disk_full)
    with caplog.at_level(logging.ERROR, logger="sentinel.outbox"):
        assert outbox.write_admitted(now=100.0) is False
        assert outbox.write_admitted(now=100.5) is False
    assert [r.getMessage() for r in caplog.records].count(
        f"cannot write the record of alert {alert.alert_id} (No space left on device): its delivery goes on, "
        "and the record is written as soon as it can be") == 1  # once, not per try
    assert outbox.unwritten(RUN_ID) and [p.alert for p in outbox.pending("slack")] == [alert]
    # Backed off like a channel's outcome: SAVE_RETRY, then doubling (not a try on every loop pass).
    assert len(tries) == 1
    assert outbox.write_admitted(now=101.0) is False and len(tries) == 2
    assert outbox.write_admitted(now=102.9) is False and len(tries) == 2
    assert outbox.write_admitted(now=103.0) is False and len(tries) == 3
    monkeypatch.setattr(outbox_module, "write_json", real_write)
    assert outbox.write_admitted(now=106.9) is False  # still waiting its turn
    assert outbox.write_admitted(now=107.0) is True and not outbox.unwritten(RUN_ID)
    assert Outbox(tmp_path / "outbox").journal(RUN_ID) == [alert]


def test_a_new_admitted_record_is_written_at_once_while_an_older_one_waits_its_turn(outbox, monkeypatch):
    import errno

    from sentinel.delivery import outbox as outbox_module

    real_write = outbox_module.write_json
    refused = {sample_alert(AlertKind.KILLED, n=1).alert_id}

    def refusing(path, *args, **kwargs):
        if any(alert_id in str(path) for alert_id in refused):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(path, *args, **kwargs)

    monkeypatch.setattr(outbox_module, "write_json", refusing)
    outbox.admit(sample_alert(AlertKind.KILLED, n=1), ["slack"])
    assert outbox.write_admitted(now=100.0) is False
    newer = sample_alert(AlertKind.CRASHED, n=2)
    outbox.admit(newer, ["slack"])
    assert outbox.write_admitted(now=100.1) is False  # the newer one written, the older still waits
    assert [a.alert_id for a in outbox.journal(RUN_ID)] == [sample_alert(AlertKind.KILLED, n=1).alert_id,
                                                              newer.alert_id]
    refused.clear()
    assert outbox.write_admitted(now=101.0) is True and not outbox.unwritten(RUN_ID)


def test_default_enqueue_fsyncs_file_and_directories_before_returning(outbox, tmp_path, monkeypatch):
    synced = _fsynced_paths(monkeypatch)
    outbox.enqueue(sample_alert(n=1), ["slack"])
    run_dir = tmp_path / "outbox" / "runs" / RUN_ID
    assert len(synced) == 3
    assert synced[0].startswith(str(run_dir / ".000000000001."))  # the record, before its rename
    assert synced[1:] == [str(run_dir), str(run_dir.parent)]  # its entry, and the new directory's
    outbox.sync()
    assert len(synced) == 3  # nothing was left for sync()


def test_unsynced_enqueue_is_in_place_at_once_and_reaches_disk_at_sync(outbox, tmp_path, monkeypatch):
    synced = _fsynced_paths(monkeypatch)
    first, second = sample_alert(n=1), sample_alert(AlertKind.KILLED, n=2)
    assert outbox.enqueue(first, ["slack"], sync=False)
    assert outbox.enqueue(second, ["slack"], sync=False)
    assert synced == []  # nothing flushed yet: the first delivery need not wait for the disk
    # Already in place: a fresh process (a daemon restarted after a kill) finds both, in order.
    reopened = Outbox(tmp_path / "outbox")
    assert [p.alert.alert_id for p in reopened.pending("slack")] == [first.alert_id, second.alert_id]
    assert outbox.enqueue(first, ["slack"], sync=False) is False  # still idempotent

    outbox.sync()
    run_dir = tmp_path / "outbox" / "runs" / RUN_ID
    files = [str(run_dir / f"{n:012d}.{a.alert_id}.json") for n, a in ((1, first), (2, second))]
    assert synced == [*files, str(run_dir), str(run_dir.parent)]  # records, their directory, its entry
    outbox.sync()
    assert len(synced) == 4  # each record is synced once


def test_a_prepared_run_directory_is_made_ahead_and_its_entry_synced_with_the_first_alert(
        outbox, tmp_path, monkeypatch):
    synced = _fsynced_paths(monkeypatch)
    run_dir = tmp_path / "outbox" / "runs" / RUN_ID
    outbox.prepare_run(RUN_ID)
    assert run_dir.is_dir() and (run_dir.stat().st_mode & 0o777) == 0o700
    assert outbox.journal(RUN_ID) == []  # an empty directory journals nothing
    made = os.mkdir
    monkeypatch.setattr(os, "mkdir", lambda *a, **k: pytest.fail("the alert made a directory"))
    assert outbox.enqueue(sample_alert(n=1), ["slack"], sync=False)
    monkeypatch.setattr(os, "mkdir", made)
    assert synced == []
    outbox.sync()
    record = str(run_dir / f"{1:012d}.{sample_alert(n=1).alert_id}.json")
    assert synced[0] == record
    assert sorted(synced[1:]) == sorted([str(run_dir), str(run_dir.parent)])  # the prepared entry too


def test_a_durable_enqueue_into_a_prepared_directory_syncs_its_entry(outbox, tmp_path, monkeypatch):
    synced = _fsynced_paths(monkeypatch)
    run_dir = tmp_path / "outbox" / "runs" / RUN_ID
    outbox.prepare_run(RUN_ID)
    outbox.enqueue(sample_alert(n=1), ["slack"])
    assert synced[1:] == [str(run_dir), str(run_dir.parent)]


def test_sync_skips_a_record_forgotten_meanwhile_and_survives_delivery_updates(outbox, tmp_path, monkeypatch):
    synced = _fsynced_paths(monkeypatch)
    outbox.enqueue(sample_alert(n=1), ["slack"], sync=False)
    outbox.enqueue(sample_alert(AlertKind.TEST, alert_id="test.1", run_id=""), ["slack"], sync=False)
    outbox.mark_delivered("test.1", "slack", "ok", NOW)  # replaced (durably) before the sync
    outbox.forget_run(RUN_ID)  # and the run's records removed
    synced.clear()
    outbox.sync()
    no_run = tmp_path / "outbox" / "runs" / "_"
    assert synced[0] == str(no_run / "000000000002.test.1.json")  # the forgotten run's record is skipped
    assert sorted(synced[1:]) == [str(no_run.parent), str(no_run)]  # the directories still there
    assert Outbox(tmp_path / "outbox").pending_count() == 0


def test_sync_returns_only_after_a_concurrent_sync_finished(outbox, monkeypatch):
    """A caller's sync() may find the work taken by the sync thread; it must
    still not return before that work is on disk (message files are deleted
    right after it)."""
    entered, release = threading.Event(), threading.Event()
    order = []
    real = os.fsync

    def blocking(fd):
        if not entered.is_set():
            entered.set()
            release.wait(30)
            order.append("first sync's fsync done")
        return real(fd)

    monkeypatch.setattr(os, "fsync", blocking)
    outbox.enqueue(sample_alert(n=1), ["slack"], sync=False)
    first = threading.Thread(target=outbox.sync)
    first.start()
    assert entered.wait(30)  # the first sync holds the record and waits for the disk
    second = threading.Thread(target=lambda: (outbox.sync(), order.append("second sync returned")))
    second.start()
    second.join(0.5)  # bounded: a second sync that does not wait returns well within this
    release.set()
    first.join(30)
    second.join(30)
    assert order == ["first sync's fsync done", "second sync returned"]


def test_sync_thread_syncs_when_poked_and_once_more_when_stopped(outbox, tmp_path, monkeypatch):
    synced = _fsynced_paths(monkeypatch)
    syncer = SyncThread(outbox.sync)
    try:
        outbox.enqueue(sample_alert(n=1), ["slack"], sync=False)
        syncer.request()
        run_dir = tmp_path / "outbox" / "runs" / RUN_ID
        record = str(run_dir / f"000000000001.{sample_alert(n=1).alert_id}.json")
        wait_for(lambda: record in synced, 30, what="the record fsynced by the thread")
        outbox.enqueue(sample_alert(n=2), ["slack"], sync=False)  # never poked for this one
    finally:
        syncer.stop()
    assert any(p.endswith(f"000000000002.{sample_alert(n=2).alert_id}.json") for p in synced)


# ---------------------------------------------------------------- crash safety

SENDER = textwrap.dedent("""
    import sys, time
    from sentinel.model.alerts import Alert, AlertKind
    from sentinel.channels import build_channel
    from sentinel.delivery.workers import ChannelSet, Delivery
    from sentinel.delivery.outbox import Outbox

    root, url, count, enqueue = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "enqueue"
    outbox = Outbox(root)
    if enqueue:
        for n in range(count):
            outbox.enqueue(Alert(alert_id=f"run.m{n:08d}", kind=AlertKind.MESSAGE, created=time.time(),
                                 run_id="run", run_name="victim", text=f"message {n}"), ["slack"])
    print("enqueued", flush=True)
    channel = build_channel("slack", {"type": "slack", "webhook_url": url})
    channel.min_interval = 0.0  # the fake does not rate-limit here; keep the test quick
    delivery = Delivery(outbox, ChannelSet({"slack": channel}))
    delivery.start()
    deadline = time.monotonic() + 60
    while outbox.pending_count() and time.monotonic() < deadline:  # the sender's own work loop
        time.sleep(0.01)
    delivery.stop(5)
    print("pending", outbox.pending_count(), flush=True)
""")


@pytest.mark.parametrize("held_after", [0, 3])
def test_sigkilled_sender_then_fresh_process_delivers_everything(tmp_path, held_after):
    """Kill the sender while a request is in flight (held by the fake); a new
    process on the same outbox delivers every alert, in order, and the only
    duplicate is the one the service saw just before the kill."""
    script = tmp_path / "sender.py"
    script.write_text(SENDER)
    root = tmp_path / "outbox"
    count = 8
    with FakeSlack(min_interval=0.0) as slack:
        slack.hold_after(held_after)
        first = subprocess.Popen([sys.executable, str(script), str(root), slack.webhook_url, str(count),
                                  "enqueue"], stdout=subprocess.PIPE, text=True)
        try:
            slack.wait_for_requests(held_after + 1, timeout=30)  # one request is now in flight
        finally:
            os.kill(first.pid, signal.SIGKILL)
            first.wait(timeout=30)
        assert first.returncode == -signal.SIGKILL
        assert first.stdout.readline() == "enqueued\n"
        slack.release()

        second = subprocess.run([sys.executable, str(script), str(root), slack.webhook_url, str(count),
                                 "deliver"], capture_output=True, text=True, timeout=90)
        assert second.returncode == 0, second.stderr
        assert second.stdout.splitlines()[-1] == "pending 0"
        texts = [m["blocks"][1]["text"]["text"] for m in slack.messages]

    expected = [f"> message {n}" for n in range(count)]  # quoted: a run's words
    assert sorted(set(texts)) == sorted(expected)  # nothing lost
    assert len(texts) <= count + 1  # at most the in-flight one twice
    deduplicated = [t for i, t in enumerate(texts) if t not in texts[:i]]
    assert deduplicated == expected  # FIFO across the crash
    assert Outbox(root).pending_count() == 0


KILLED_BEFORE_SYNC = textwrap.dedent("""
    import os, signal, sys, time
    from sentinel.model.alerts import Alert, AlertKind
    from sentinel.delivery.outbox import Outbox

    outbox = Outbox(sys.argv[1])
    for n in range(int(sys.argv[2])):
        outbox.enqueue(Alert(alert_id=f"run.m{n:08d}", kind=AlertKind.MESSAGE, created=time.time(),
                             run_id="run", run_name="victim", text=f"message {n}"), ["slack"], sync=False)
    os.kill(os.getpid(), signal.SIGKILL)  # before sync(): nothing was fsynced
""")


def test_process_killed_between_enqueue_and_sync_loses_nothing(tmp_path):
    script = tmp_path / "killed.py"
    script.write_text(KILLED_BEFORE_SYNC)
    root = tmp_path / "outbox"
    proc = subprocess.run([sys.executable, str(script), str(root), "5"], timeout=60)
    assert proc.returncode == -signal.SIGKILL
    pending = Outbox(root).pending("slack")
    assert [p.alert.text for p in pending] == [f"message {n}" for n in range(5)]
