"""sentinel.watch and the recorder inside this process: what lands in the
spool, when, and what happens when the spool cannot be written."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Iterator

import pytest

import sentinel
from sentinel.formats import spool
from sentinel.host.procid import ProcessIdentity
from sentinel.training import recorder
from sentinel.training.watching import Run
from tests.waiting import wait_for

FAST = 0.05


@pytest.fixture(autouse=True)
def fresh_reports(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test sees its own "reported once" messages."""
    monkeypatch.setattr(recorder, "_reported", set())
    yield
    for rec in recorder.active_runs():  # a failing test must not leave runs to atexit
        rec.finish()


def start(tmp_path: Path, **kwargs: object) -> Run:
    kwargs.setdefault("heartbeat_interval", FAST)
    kwargs.setdefault("handle_sigterm", False)
    return sentinel.watch(spool_dir=tmp_path / "spool", **kwargs)  # type: ignore[arg-type]


def progress(run: Run) -> spool.Progress:
    return spool.read_progress(run.path / spool.BEAT_FILE)


def final(run: Run) -> spool.FinalRecord:
    return spool.read_final(run.path / spool.FINAL_FILE)


def test_run_record_names_this_process(tmp_path: Path) -> None:
    run = start(tmp_path, name="resnet", labels={"team": "vision", "empty": ""}, channels=["phone"],
                stall_timeout=120, language="zh")
    record, _ = spool.read_run(run.path / spool.RUN_FILE)
    me = ProcessIdentity.current()
    assert (record.pid, record.start_ticks, record.boot_id) == (me.pid, me.start_ticks, me.boot_id)
    assert record.run_id == run.run_id and spool.is_run_id(run.run_id)
    assert record.name == "resnet"
    assert record.labels == {"team": "vision"}
    assert record.channels == ["phone"]
    assert record.stall_timeout == 120 and record.language == "zh"
    assert record.heartbeat_interval == FAST
    run.finish()


def test_heartbeats_come_without_any_logging(tmp_path: Path) -> None:
    run = start(tmp_path)
    wait_for(lambda: progress(run).seq >= 4, what="four heartbeats")
    assert progress(run).last_progress is None
    run.finish()


def test_beat_reports_step_and_numeric_scalars(tmp_path: Path) -> None:
    run = start(tmp_path)
    run.beat(step=7, loss=0.5, note="text", flag=True, count=3)
    wait_for(lambda: progress(run).step == 7, what="the step in beat.json")
    beat = progress(run)
    assert beat.scalars == {"loss": 0.5, "count": 3.0}
    assert beat.last_progress is not None and beat.last_progress <= beat.beat
    run.beat(step=8, acc=0.9)  # a later report adds to what is known
    wait_for(lambda: progress(run).step == 8, what="step 8")
    assert progress(run).scalars == {"acc": 0.9, "loss": 0.5, "count": 3.0}
    run.finish()


def test_scalars_are_capped_newest_first(tmp_path: Path) -> None:
    run = start(tmp_path)
    run.beat(step=1, **{f"old{i}": i for i in range(10)})
    wait_for(lambda: progress(run).step == 1, what="step 1")
    run.beat(step=2, **{f"new{i}": i for i in range(40)})
    wait_for(lambda: progress(run).step == 2, what="step 2")
    scalars = progress(run).scalars
    assert len(scalars) == spool.MAX_SCALARS
    assert all(key.startswith("new") for key in scalars)
    run.finish()


def test_expect_pause_and_send_are_written_at_once_not_at_the_next_beat(tmp_path: Path) -> None:
    run = start(tmp_path, heartbeat_interval=3600)
    run.expect_pause(900)
    beat = wait_for(lambda: progress(run) if progress(run).pause_until else None, what="pause_until")
    assert beat.pause_until == pytest.approx(beat.beat + 900, abs=5)
    run.send("x" * (spool.MESSAGE_MAX_CHARS + 100))
    paths = spool.RunPaths(run.path.parent, run.run_id)
    wait_for(lambda: spool.list_messages(paths), what="the message file")
    message = spool.read_message(paths.message(1))
    assert message.seq == 1 and len(message.text) == spool.MESSAGE_MAX_CHARS
    run.finish()


def test_finish_once_and_heartbeats_stop(tmp_path: Path) -> None:
    run = start(tmp_path)
    run.beat(step=3, loss=0.1)
    run.finish()
    run.finish("crashed", error="too late")
    record = final(run)
    assert (record.state, record.step, record.scalars, record.error) == ("finished", 3, {"loss": 0.1}, None)
    thread = run._recorder._thread
    assert thread is not None
    wait_for(lambda: not thread.is_alive(), what="the heartbeat thread to end")
    assert run.ended and run.run_id not in [r.run_id for r in recorder.active_runs()]


def test_exception_in_the_block_is_crashed_and_still_raised(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="bad batch"), start(tmp_path) as run:
        raise ValueError("bad batch")
    record = final(run)
    assert record.state == "crashed"
    assert record.error.startswith("Traceback") and "ValueError: bad batch" in record.error


def test_error_text_keeps_its_tail(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), start(tmp_path) as run:
        raise RuntimeError("x" * 20000 + " THE END")
    error = final(run).error
    assert len(error.encode()) <= spool.ERROR_TAIL_BYTES
    assert error.rstrip().endswith("THE END")


@pytest.mark.parametrize(("code", "state", "exit_code"), [
    (None, "finished", 0), (0, "finished", 0), (2, "crashed", 2), ("bye", "crashed", 1),
])
def test_system_exit_in_the_block(tmp_path: Path, code: object, state: str, exit_code: int) -> None:
    with pytest.raises(SystemExit), start(tmp_path) as run:
        raise SystemExit(code)
    record = final(run)
    assert (record.state, record.exit_code) == (state, exit_code)


def test_keyboard_interrupt_in_the_block_is_aborted(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt), start(tmp_path) as run:
        raise KeyboardInterrupt
    record = final(run)
    assert (record.state, record.signal) == ("aborted", "SIGINT")


def test_two_runs_in_one_process_are_two_records(tmp_path: Path) -> None:
    first, second = start(tmp_path, name="a"), start(tmp_path, name="b")
    assert first.run_id != second.run_id
    first.finish("crashed", error="first only")
    second.finish()
    assert (final(first).state, final(second).state) == ("crashed", "finished")


def test_unwritable_spool_never_raises_and_is_reported_once(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    run = sentinel.watch(spool_dir=blocker / "spool", heartbeat_interval=FAST, handle_sigterm=False)
    for step in range(20):
        run.beat(step=step, loss=1.0)
    run.send("lost in the void")
    run.expect_pause(10)
    thread = run._recorder._thread
    assert thread is not None
    with pytest.raises(RuntimeError), run:  # the user's error still propagates, ours never does
        raise RuntimeError("user error")
    wait_for(lambda: not thread.is_alive(), what="the heartbeat thread to end")
    lines = [line for line in capsys.readouterr().err.splitlines() if "cannot write to the spool" in line]
    assert len(lines) == 1 and str(blocker) in lines[0]


def test_a_spool_that_comes_back_gets_the_record(tmp_path: Path) -> None:
    blocker = tmp_path / "spool"
    blocker.write_text("")  # at first a file stands where the spool should be
    run = sentinel.watch(spool_dir=blocker, heartbeat_interval=FAST, handle_sigterm=False)
    assert "spool-io" in recorder._reported  # the start failed, and said so
    assert not (blocker / run.run_id).exists()
    blocker.unlink()
    record_path = blocker / run.run_id / spool.RUN_FILE
    wait_for(record_path.exists, what="run.json once the spool can be made")
    wait_for(lambda: (blocker / run.run_id / spool.BEAT_FILE).exists(), what="beat.json")
    run.finish()
    assert final(run).state == "finished"


def test_sigterm_handler_only_over_the_default_and_removed_after(tmp_path: Path) -> None:
    previous = signal.getsignal(signal.SIGTERM)
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        run = start(tmp_path, handle_sigterm=True)
        assert signal.getsignal(signal.SIGTERM) is recorder._on_sigterm
        run.finish()
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL

        def users_own(signum: int, frame: object) -> None:
            pass

        signal.signal(signal.SIGTERM, users_own)
        run = start(tmp_path, handle_sigterm=True)
        assert signal.getsignal(signal.SIGTERM) is users_own
        run.finish()
        assert signal.getsignal(signal.SIGTERM) is users_own
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_run_started_off_the_main_thread_leaves_signals_alone(tmp_path: Path) -> None:
    before = signal.getsignal(signal.SIGTERM)
    runs: list[Run] = []
    worker = threading.Thread(target=lambda: runs.append(start(tmp_path, handle_sigterm=True)))
    worker.start()
    worker.join(30)
    assert runs and signal.getsignal(signal.SIGTERM) is before
    runs[0].finish()
    assert final(runs[0]).state == "finished"


def test_watch_and_run_are_loaded_lazily_from_one_module() -> None:
    from sentinel.training.watching import Run as RunClass
    from sentinel.training.watching import watch

    assert sentinel.watch is watch and sentinel.Run is RunClass
