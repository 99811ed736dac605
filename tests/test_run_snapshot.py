"""One event, one read: a run's directory is opened and verified once per exit.

A daemon object runs in the test process against real child processes that
are really killed; ``os.open`` is wrapped to count every open of the run's
directory (by name in the spool, or by path) while the exit is handled.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sentinel.daemon import run_snapshot
from sentinel.daemon.loop import Daemon
from sentinel.formats import live_file, safe_json, spool
from sentinel.model.alerts import AlertKind
from tests.in_process_daemon import (
    NOW,
    in_process_daemon,  # noqa: F401  (the fixture "daemon")
    write_run,
)
from tests.victims.harness import identity_of
from tests.waiting import wait_for


class OpenCounter:
    """Counts ``os.open`` calls that name the run directory."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, paths: spool.RunPaths) -> None:
        self.names = {paths.run_id, str(paths.dir)}
        self.count = 0
        real = os.open

        def counting(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
            if str(path) in self.names:
                self.count += 1
            return real(path, flags, *args, **kwargs)

        monkeypatch.setattr(os, "open", counting)


def _judge_exit(daemon: Daemon, run_id: str) -> None:
    """Loop passes until the run's exit is judged (no rescan meanwhile: its visits read too)."""
    daemon.next_rescan = float("inf")
    wait_for(lambda: (daemon.poll_once(lambda: NOW, max_wait=0.05),
                      daemon.tracker.runs[run_id].state.is_terminal)[1], 30, what="the exit judged")


def test_a_kill_opens_the_run_directory_once(daemon: Daemon, child: subprocess.Popen[bytes],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    paths = write_run(daemon.spool, identity_of(child), "snap")
    daemon.rescan(NOW)
    assert daemon.tracker.runs[paths.run_id].watched
    counter = OpenCounter(monkeypatch, paths)
    reads = daemon.tracker.reader.dir_opens
    child.kill()
    child.wait()
    _judge_exit(daemon, paths.run_id)
    assert [a.kind for a in daemon.outbox.journal(paths.run_id)] == [AlertKind.KILLED]
    assert counter.count == 1
    assert daemon.tracker.reader.dir_opens - reads == 1


def test_one_read_gives_messages_final_record_and_live_progress(
        daemon: Daemon, child: subprocess.Popen[bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    paths = write_run(daemon.spool, identity_of(child), "snap")
    daemon.rescan(NOW)
    safe_json.make_private_dir(paths.messages)
    safe_json.write_json(paths.message(1), spool.Message(seq=1, time=NOW + 1, text="nearly done").to_dict())
    safe_json.write_json(paths.beat, spool.Progress(beat=NOW + 2, seq=1, last_progress=NOW + 2, step=10,
                                                scalars={"loss": 0.5}).to_dict())
    writer = live_file.LiveWriter.create(paths.dir)
    writer.update(NOW + 3, 42, {"loss": 0.25})
    safe_json.write_json(paths.final, spool.FinalRecord(state="crashed", ended=NOW + 4, exit_code=1,
                                                    error="RuntimeError: boom").to_dict())
    counter = OpenCounter(monkeypatch, paths)
    child.kill()
    child.wait()
    _judge_exit(daemon, paths.run_id)
    alerts = daemon.outbox.journal(paths.run_id)
    assert [a.kind for a in alerts] == [AlertKind.MESSAGE, AlertKind.CRASHED]
    assert alerts[0].text == "nearly done"
    assert alerts[1].step == 42  # live.bin's step, newer than beat.json's 10
    assert not paths.message(1).exists()  # delivered, unlinked in the msg/ it was read from
    assert counter.count == 1


def test_a_directory_swapped_after_admission_is_not_read(daemon: Daemon, child: subprocess.Popen[bytes],
                                                         tmp_path: Path) -> None:
    paths = write_run(daemon.spool, identity_of(child), "snap")
    daemon.rescan(NOW)
    run = daemon.tracker.runs[paths.run_id]
    # Another directory, with a final record of its own, takes the admitted one's name.
    os.rename(paths.dir, tmp_path / "moved")
    safe_json.make_private_dir(paths.dir)
    safe_json.write_json(paths.final, spool.FinalRecord(state="finished", ended=NOW + 1).to_dict())
    with run_snapshot.take(daemon.tracker.reader, run) as snapshot:
        assert not snapshot.present
        assert snapshot.final is None
        assert snapshot.messages.messages == []


def test_a_symlinked_run_directory_is_not_followed(daemon: Daemon, child: subprocess.Popen[bytes],
                                                   tmp_path: Path) -> None:
    paths = write_run(daemon.spool, identity_of(child), "snap")
    daemon.rescan(NOW)
    run = daemon.tracker.runs[paths.run_id]
    os.rename(paths.dir, tmp_path / "real")
    os.symlink(tmp_path / "real", paths.dir)
    with run_snapshot.take(daemon.tracker.reader, run) as snapshot:
        assert not snapshot.present


def test_a_fifo_as_final_record_is_refused_without_blocking(
        daemon: Daemon, child: subprocess.Popen[bytes]) -> None:
    paths = write_run(daemon.spool, identity_of(child), "snap")
    daemon.rescan(NOW)
    run = daemon.tracker.runs[paths.run_id]
    os.mkfifo(paths.final)
    with run_snapshot.take(daemon.tracker.reader, run) as snapshot:
        assert snapshot.present
        assert snapshot.final is None  # a FIFO is never opened for reading (it would block)


if sys.platform != "linux":  # pragma: no cover
    pytest.skip("pidfds and /proc are Linux's", allow_module_level=True)
