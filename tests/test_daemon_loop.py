"""The daemon loop's bookkeeping, in-process with real processes and a real
outbox: stall deadlines kept in a heap, the rescan done a slice of runs per
pass, long-lived state frozen out of the cyclic collector, and message files
deleted only once their alerts are on disk."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sentinel.daemon.loop import (
    ADMIT_PER_PASS,
    RESCAN_LOOK_EVERY,
    RESCAN_SLICE,
    STARTUP_FIRST_ADMISSIONS,
    Daemon,
)
from sentinel.daemon.rescan import RescanSweep
from sentinel.daemon.run_reader import TrackedRun
from sentinel.delivery.outbox import Outbox
from sentinel.formats import safe_json, spool
from sentinel.host.procid import ProcessIdentity
from sentinel.model.alerts import Alert, AlertKind
from sentinel.model.run_states import RunState
from tests.in_process_daemon import (
    NOW,
    in_process_daemon,  # noqa: F401  (the fixture "daemon")
    open_daemon,
    plain_config,
    write_run,
)
from tests.victims.harness import identity_of
from tests.waiting import wait_for


def _write_run(spool_path: Path, ident: ProcessIdentity, index: int) -> str:
    return write_run(spool_path, ident, f"run-{index}", at=NOW + index).run_id


def _fake_run(run_id: str) -> TrackedRun:
    """A tracked run for heap bookkeeping only (never read from disk)."""
    record = spool.RunRecord(
        run_id=run_id, pid=1, start_ticks=1, boot_id="b", hostname="h", uid=0, user="u", cmdline=[],
        cwd="/", started=NOW, heartbeat_interval=10.0, stall_timeout=60.0, name=run_id, source="run")
    return TrackedRun(record=record, paths=spool.RunPaths(Path("/nonexistent"), run_id), owner_uid=0)


# ---------------------------------------------------------------- stall deadlines


def test_stall_deadlines_come_earliest_first_and_stale_ones_are_skipped(daemon: Daemon) -> None:
    runs = {name: _fake_run(name) for name in ("a", "b", "c")}
    daemon.tracker.runs.update(runs)
    daemon.tracker.schedule_stall_check(runs["a"], NOW + 100)
    daemon.tracker.schedule_stall_check(runs["b"], NOW + 50)
    daemon.tracker.schedule_stall_check(runs["c"], NOW + 300)
    assert daemon.tracker.next_stall_check() == NOW + 50

    daemon.tracker.schedule_stall_check(runs["b"], NOW + 200)  # rescheduled: its old entry is stale
    assert daemon.tracker.next_stall_check() == NOW + 100
    daemon.tracker.forget("a")  # forgotten: its entry is stale
    assert daemon.tracker.next_stall_check() == NOW + 200
    daemon.tracker.schedule_stall_check(runs["b"], None)  # nothing pending for b any more
    assert daemon.tracker.next_stall_check() == NOW + 300
    daemon.next_rescan = NOW + 1000
    assert daemon.timeout(NOW) == pytest.approx(300.0)

    daemon.tracker.schedule_stall_check(runs["b"], NOW + 10)
    daemon.tracker.schedule_stall_check(runs["b"], NOW + 10)  # the same instant twice: checked once
    assert [r.run_id for r in daemon.tracker.due_stall_checks(NOW + 5)] == []
    assert [r.run_id for r in daemon.tracker.due_stall_checks(NOW + 400)] == ["b", "c"]
    assert daemon.tracker.next_stall_check() is None


def test_stall_heap_stays_bounded_when_runs_are_rescheduled_often(daemon: Daemon) -> None:
    run = _fake_run("a")
    daemon.tracker.runs["a"] = run
    for n in range(1000):
        daemon.tracker.schedule_stall_check(run, NOW + n)
    assert len(daemon.tracker.stall_heap) <= 2 * len(daemon.tracker.runs) + 64
    assert daemon.tracker.next_stall_check() == NOW + 999


# ---------------------------------------------------------------- the rescan in slices


def test_rescan_visits_every_run_a_slice_per_pass(daemon: Daemon, child: subprocess.Popen[bytes]) -> None:
    ident = identity_of(child)
    count = 2 * RESCAN_SLICE + 7
    run_ids = {_write_run(daemon.spool, ident, i) for i in range(count)}

    daemon.start_rescan(NOW)
    assert daemon.sweep is not None
    assert daemon.timeout(NOW) == pytest.approx(0.005)  # the loop comes back soon for the next slice
    passes = 0
    while daemon.sweep is not None or len(daemon.admissions):
        before = len(daemon.tracker.runs)
        daemon.continue_rescan(NOW)  # lists a slice: new runs join the admission queue
        assert len(daemon.admissions) <= count
        daemon.admit_queued(NOW)
        passes += 1
        assert len(daemon.tracker.runs) - before <= ADMIT_PER_PASS  # no pass admits more than its share
        assert passes <= count  # bounded: stops by itself
    assert passes == -(-count // ADMIT_PER_PASS)
    assert set(daemon.tracker.runs) == run_ids
    assert all(run.watched and run.state is RunState.RUNNING for run in daemon.tracker.runs.values())
    assert spool.read_daemon_liveness(daemon.spool)[0].pid == os.getpid()  # refreshed by the rescan

    # Every run admitted by the slices is watched: one exit alerts each of them.
    child.kill()
    child.wait()
    wait_for(lambda: (daemon.poll_once(lambda: NOW, max_wait=0.05), not daemon.tracker.runs)[1], 30,
             what="every run judged")
    for run_id in run_ids:
        assert [a.kind for a in daemon.outbox.journal(run_id)] == [AlertKind.KILLED]


def test_sweep_lists_every_run_once_then_the_tracked_ones_not_listed(tmp_path: Path) -> None:
    spool_path = tmp_path / "spool"
    listed = {spool.new_run_id(1000 + i, NOW) for i in range(45)}
    for run_id in listed:
        (spool_path / run_id).mkdir(parents=True)
    (spool_path / ".daemon").mkdir()
    (spool_path / "daemon.json").write_text("{}")
    removed = {spool.new_run_id(9000 + i, NOW) for i in range(3)}  # tracked, directory gone
    sweep = RescanSweep(spool_path)
    seen: list[str] = []
    for _ in range(100):  # bounded
        if sweep.done:
            break
        part = sweep.next_slice(10, lambda: [*sorted(removed), *sorted(listed)[:5]])
        assert len(part) <= 10
        seen.extend(part)
    assert sweep.done
    assert len(seen) == len(set(seen))  # each run once
    assert set(seen) == listed | removed
    assert set(seen[-3:]) == removed  # runs missing from the spool come after the listing
    assert sweep.listed == listed
    assert RescanSweep(tmp_path / "absent").next_slice(10, lambda: ["x"]) == ["x"]


def test_a_run_added_during_a_rescan_is_admitted_by_the_next_one_at_the_latest(
        daemon: Daemon, child: subprocess.Popen[bytes]) -> None:
    ident = identity_of(child)
    first = [_write_run(daemon.spool, ident, i) for i in range(RESCAN_SLICE + 1)]
    daemon.start_rescan(NOW)
    daemon.continue_rescan(NOW)
    late = _write_run(daemon.spool, ident, 10_000)  # the listing may or may not still meet it
    while daemon.sweep is not None or len(daemon.admissions):
        daemon.continue_rescan(NOW)
        daemon.admit_queued(NOW)
    assert set(first) <= set(daemon.tracker.runs)
    daemon.rescan(NOW)  # the all-at-once form, as the next periodic rescan would
    assert set(daemon.tracker.runs) == {*first, late}
    assert all(daemon.liveness.watching(run_id) for run_id in daemon.tracker.runs)
    assert all(daemon.outbox.journal(run_id) == []  # alive: nothing alerted
               for run_id in daemon.tracker.runs)


def test_a_waiting_exit_is_judged_before_a_flood_of_new_runs_is_admitted(
        daemon: Daemon, child: subprocess.Popen[bytes]) -> None:
    """Another user's records keep the admission queue and the rescan busy; a
    watched process's exit cuts their work short (after one admission, one
    look's worth of rescan) and the next pass judges it before admitting more."""
    dying = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        watched = _write_run(daemon.spool, identity_of(dying), 0)
        daemon.rescan(NOW)
        assert daemon.liveness.watching(watched) and daemon.liveness.use_pidfd
        flood = [_write_run(daemon.spool, identity_of(child), i) for i in range(1, 3 * ADMIT_PER_PASS)]
        dying.kill()
        dying.wait()  # its pidfd is readable from now on
    finally:
        dying.kill()
        dying.wait()
    assert daemon.exits_waiting()

    daemon.start_rescan(NOW)
    daemon.continue_rescan(NOW)  # a full slice would list every run at once
    assert daemon.sweep is not None and len(daemon.admissions) <= RESCAN_LOOK_EVERY
    daemon.admit_queued(NOW)
    assert len(daemon.tracker.runs) == 2  # the watched run, and one new run: then it gave way
    assert daemon.outbox.journal(watched) == []

    order: list[str] = []
    judge, admit = daemon.tracker.on_exit, daemon.admit_queued
    daemon.tracker.on_exit = lambda *a: (order.append("exit"), judge(*a))[1]  # type: ignore[method-assign]
    daemon.admit_queued = lambda *a, **k: (order.append("admit"), admit(*a, **k))[1]  # type: ignore[method-assign]
    daemon.poll_once(lambda: NOW, max_wait=0)
    assert order[:2] == ["exit", "admit"]
    assert [a.kind for a in daemon.outbox.journal(watched)] == [AlertKind.KILLED]
    assert not daemon.exits_waiting()
    while daemon.sweep is not None or len(daemon.admissions):  # nothing waits: whole slices again
        daemon.continue_rescan(NOW)
        daemon.admit_queued(NOW)
    assert set(flood) <= set(daemon.tracker.runs)


def test_a_start_admits_a_first_slice_then_the_rest_a_pass_at_a_time_as_started(
        daemon: Daemon, child: subprocess.Popen[bytes]) -> None:
    """A restart does not read the whole spool before READY: a first slice, then
    ADMIT_PER_PASS a pass; runs found at start-up, dead by their turn, are judged
    as ended while the daemon was down (once), the live ones are watched."""
    ident = identity_of(child)
    count = STARTUP_FIRST_ADMISSIONS + 3 * ADMIT_PER_PASS + 5
    alive = {_write_run(daemon.spool, ident, i) for i in range(count)}
    gone = ProcessIdentity(int(Path("/proc/sys/kernel/pid_max").read_text()) + 1, 1, ident.boot_id)
    dead = {_write_run(daemon.spool, gone, count + i) for i in range(5)}
    def admitted() -> int:  # the dead are alerted and archived at once
        return len(daemon.tracker.runs) + sum(1 for run_id in dead if daemon.outbox.journal(run_id))

    daemon.start(NOW)
    assert admitted() == STARTUP_FIRST_ADMISSIONS
    assert daemon.backlog is not None and daemon.timeout(NOW) == pytest.approx(0.005)
    passes = 0
    while daemon.backlog is not None:
        before = admitted()
        daemon.handle([], NOW)
        daemon.tick(NOW)
        passes += 1
        assert admitted() - before <= ADMIT_PER_PASS
        assert passes <= count  # bounded: stops by itself
    assert passes >= 3
    assert alive <= set(daemon.tracker.runs)
    assert all(daemon.tracker.runs[run_id].watched for run_id in alive)
    for run_id in dead:
        [alert] = daemon.outbox.journal(run_id)
        assert alert.kind is AlertKind.KILLED
        assert alert.reason == "died_while_down"
    daemon.rescan(NOW)  # the next rescan finds nothing new to say
    assert all(len(daemon.outbox.journal(run_id)) == 1 for run_id in dead)
    assert all(daemon.outbox.journal(run_id) == [] for run_id in alive)


# ---------------------------------------------------------------- the cyclic collector


def test_start_freezes_long_lived_state_and_close_unfreezes(tmp_path: Path,
                                                             child: subprocess.Popen[bytes]) -> None:
    config = plain_config(tmp_path)
    safe_json.make_private_dir(config.spool_path())
    ident = identity_of(child)
    run_id = _write_run(config.spool_path(), ident, 0)
    d = open_daemon(config, tmp_path)
    try:
        d.start(NOW)
        assert gc.get_freeze_count() > 0
        tracked = d.tracker.runs[run_id]
        assert gc.is_tracked(tracked)
        assert not any(obj is tracked for obj in gc.get_objects(generation=2))  # frozen, not in gen 2
        gc.collect()  # a full collection afterwards leaves the frozen state intact
        assert d.tracker.runs[run_id] is tracked and tracked.watched
        child.kill()
        child.wait()
        wait_for(lambda: (d.poll_once(lambda: NOW, max_wait=0.05), run_id not in d.tracker.runs)[1], 30,
                 what="the run judged")
        assert [a.kind for a in d.outbox.journal(run_id)] == [AlertKind.KILLED]
    finally:
        d.close()
    assert gc.get_freeze_count() == 0


# ---------------------------------------------------------------- messages and the outbox's fsync


class RecordingOutbox(Outbox):
    """A real outbox that notes, at each ``sync()``, which message files still exist."""

    watched: list[Path] = []

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.at_sync: list[list[bool]] = []

    def sync(self) -> None:
        self.at_sync.append([path.exists() for path in self.watched])
        super().sync()


def test_message_files_are_deleted_only_after_their_alerts_are_synced(
        tmp_path: Path, child: subprocess.Popen[bytes]) -> None:
    config = plain_config(tmp_path)
    safe_json.make_private_dir(config.spool_path())
    safe_json.make_private_dir(config.state_path())
    outbox = RecordingOutbox(config.state_path() / "outbox")
    wakes: list[int] = []
    d = Daemon(config, outbox, wake_delivery=lambda: wakes.append(len(outbox.at_sync)),
               kmsg_path=str(tmp_path / "no-kmsg"))
    try:
        run_id = _write_run(config.spool_path(), identity_of(child), 0)
        paths = spool.RunPaths(config.spool_path(), run_id)
        safe_json.make_private_dir(paths.messages)
        for seq in (1, 2, 3):
            message = spool.Message(seq=seq, time=NOW + seq, text=f"m{seq}")
            safe_json.write_json(paths.message(seq), message.to_dict())
        outbox.watched = [paths.message(seq) for seq in (1, 2, 3)]
        d.rescan(NOW)
        assert [a.text for a in outbox.journal(run_id)] == ["m1", "m2", "m3"]
        assert outbox.at_sync == [[True, True, True]]  # all still on disk when their alerts were synced
        assert wakes == [0]  # delivery woken once, before the sync
        assert not any(path.exists() for path in outbox.watched)  # then removed
    finally:
        d.close()


def test_transition_alert_goes_to_delivery_first_and_on_disk_right_after(
        tmp_path: Path, child: subprocess.Popen[bytes]) -> None:
    """Delivery is woken with the alert in the outbox's memory (its request
    goes first); its record is on disk by the end of that pass, before the
    run could be archived."""
    config = plain_config(tmp_path)
    safe_json.make_private_dir(config.spool_path())
    safe_json.make_private_dir(config.state_path())
    outbox = Outbox(config.state_path() / "outbox")
    at_wake: list[tuple[list[str], list[Alert], bool]] = []

    def wake() -> None:
        at_wake.append(([p.alert.alert_id for p in outbox.pending("phone")],
                        # what a fresh process (a restarted daemon) would find on disk at this instant
                        Outbox(config.state_path() / "outbox").journal(run_id),
                        (config.spool_path() / run_id).is_dir()))

    d = Daemon(config, outbox, wake_delivery=wake, kmsg_path=str(tmp_path / "no-kmsg"))
    try:
        run_id = _write_run(config.spool_path(), identity_of(child), 0)
        d.rescan(NOW)
        d.tracker.runs[run_id].channels = ["phone"]
        child.kill()
        child.wait()
        wait_for(lambda: (d.poll_once(lambda: NOW, max_wait=0.05), bool(at_wake))[1], 30,
                 what="delivery woken")
        [(pending, on_disk, in_spool)] = at_wake
        assert len(pending) == 1 and on_disk == [] and in_spool
        assert [a.kind for a in Outbox(config.state_path() / "outbox").journal(run_id)] == [AlertKind.KILLED]
        assert [a.alert_id for a in outbox.journal(run_id)] == pending
    finally:
        d.close()


# ---------------------------------------------------------------- one run's trouble


def test_a_run_that_fails_every_rescan_is_logged_once_and_others_go_on(
        daemon: Daemon, child: subprocess.Popen[bytes], caplog: pytest.LogCaptureFixture) -> None:
    ident = identity_of(child)
    child.kill()
    child.wait()  # the runs' process is gone: each is judged at once, from its final record
    good, bad, worse = (_write_run(daemon.spool, ident, i) for i in range(3))
    for run_id in (good, bad, worse):
        safe_json.write_json(spool.RunPaths(daemon.spool, run_id).final,
                         spool.FinalRecord(state="finished", ended=NOW).to_dict())
    for run_id in (bad, worse):
        # A damaged alert journal: storing any alert about the run raises, at every attempt.
        (daemon.state.outbox / "runs" / run_id).write_text("not a directory")
    with caplog.at_level("DEBUG", logger="sentinel.daemon"):
        for _ in range(4):
            daemon.rescan(NOW)
    failures = [r for r in caplog.records if r.levelname == "ERROR" and "failed" in r.getMessage()]
    assert sorted(r.getMessage().split()[2] for r in failures) == sorted([bad, worse])  # once each
    assert all(r.exc_info for r in failures)  # with the traceback, the first time
    assert sum("again" in r.getMessage() for r in caplog.records) == 6  # later passes: debug only
    assert [a.kind for a in daemon.outbox.journal(good)] == [AlertKind.FINISHED]


# ---------------------------------------------------------------- runs inotify cannot watch


def test_a_rescan_reads_an_unwatched_run_only_when_it_changed(
        tmp_path: Path, child: subprocess.Popen[bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    """Over the per-user watch cap, a run's messages and final record come at
    rescans only; a rescan looks with a few stats and reads the run in full
    (its progress too) only when a message or a final record is there."""
    from sentinel.daemon import run_reader, spool_watcher

    monkeypatch.setattr(spool_watcher, "MAX_RUNS_WATCHED_PER_USER", 0)
    full_reads: list[str] = []  # (what was read, of which run)
    for name in ("messages_in", "progress_in"):
        real = getattr(run_reader.RunReader, name)

        def counted(self: run_reader.RunReader, run: TrackedRun, dir_fd: int, real=real, name=name) -> object:
            full_reads.append(f"{name} {run.run_id}")
            return real(self, run, dir_fd)

        monkeypatch.setattr(run_reader.RunReader, name, counted)
    d = open_daemon(plain_config(tmp_path), tmp_path)
    try:
        d.start(NOW)
        paths = write_run(d.spool, identity_of(child), "unwatched")
        d.rescan(NOW)  # the first rescan reads every run (events before it could not be seen)
        assert paths.run_id in d.tracker.runs and not d.watcher.watched(paths.run_id)
        full_reads.clear()
        d.rescan(NOW)
        assert full_reads == []  # nothing new: stats only

        safe_json.make_private_dir(paths.messages)
        safe_json.write_json(paths.message(1), spool.Message(seq=1, time=NOW, text="epoch 3 done").to_dict())
        d.rescan(NOW)
        texts = [a.text for a in d.outbox.journal(paths.run_id) if a.kind is AlertKind.MESSAGE]
        assert texts == ["epoch 3 done"]
        assert not paths.message(1).exists()

        safe_json.write_json(paths.final, spool.FinalRecord(state="finished", ended=NOW).to_dict())
        full_reads.clear()
        d.rescan(NOW)
        # a final record: read in full, progress for its alert
        assert full_reads == [f"messages_in {paths.run_id}", f"progress_in {paths.run_id}"]
        assert AlertKind.FINISHED in [a.kind for a in d.outbox.journal(paths.run_id)]
    finally:
        d.close()


def test_descendants_are_noted_for_a_bounded_number_of_runs_a_rescan_in_turn(
        daemon: Daemon, child: subprocess.Popen[bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    from sentinel.daemon import loop

    monkeypatch.setattr(loop, "FAMILY_NOTES_PER_RESCAN", 2)
    run_ids = {_write_run(daemon.spool, identity_of(child), i) for i in range(5)}
    daemon.rescan(NOW)  # admitted: each noted once then
    noted: list[str] = []
    monkeypatch.setattr(daemon.tracker, "note_descendants", lambda run: noted.append(run.run_id))
    rounds = []
    for _ in range(4):
        noted.clear()
        daemon.rescan(NOW)
        rounds.append(list(noted))
    assert [len(r) for r in rounds] == [2, 2, 1, 0]  # at most 2 a rescan, then none due yet
    assert {run_id for r in rounds for run_id in r} == run_ids  # every run in turn
    noted.clear()
    daemon.rescan(NOW + 3 * daemon.config.rescan_interval)  # 5 runs, 2 a rescan: each every 3 rescans
    assert len(noted) == 2
