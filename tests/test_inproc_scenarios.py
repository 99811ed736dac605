"""How a run ends, as the spool records it: real processes, real signals,
real SwanLab (offline) for every callback API, and sentinel.watch."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

from sentinel.host.procid import ProcessIdentity
from tests.victims.harness import Victim, swanlab_params, swanlab_python
from tests.waiting import wait_for

HEARTBEAT = "0.1"

# Each flavour makes a victim from (tmp, *victim args).
Flavour = Callable[..., Victim]


def _watch_flavour() -> Flavour:
    return lambda tmp, *args: Victim.watch(tmp, *args, "--heartbeat", HEARTBEAT)


def _swanlab_flavour(env_var: str) -> Flavour:
    python = swanlab_python(env_var)
    return lambda tmp, *args: Victim.swanlab(python, tmp, *args, "--heartbeat", HEARTBEAT)


@pytest.fixture(params=[pytest.param(None, id="watch"), *swanlab_params()])
def flavour(request: pytest.FixtureRequest) -> Flavour:
    """sentinel.watch, then SentinelCallback on each SwanLab generation."""
    if request.param is None and "watch" in request.node.callspec.id:
        return _watch_flavour()
    return _swanlab_flavour(request.param)


@pytest.fixture(params=[pytest.param(None, id="watch"), swanlab_params()[0]])
def flavour_latest(request: pytest.FixtureRequest) -> Flavour:
    """sentinel.watch and the newest SwanLab: for behaviour not tied to an API."""
    if request.param is None and "watch" in request.node.callspec.id:
        return _watch_flavour()
    return _swanlab_flavour(request.param)


def _is_swanlab(victim: Victim) -> bool:
    return victim.argv[1].endswith("swanlab_victim.py")


def _progress_arrives_batched(victim: Victim) -> bool:
    """SwanLab >= 0.8 reports logged values only in batched, late flushes."""
    return _is_swanlab(victim) and victim.argv[0] == sys.executable


def test_normal_finish(flavour: Flavour, tmp_path: Path) -> None:
    with flavour(tmp_path, "finish", "--steps", "3").start() as victim:
        victim.ready()
        assert victim.wait() == 0, victim.output()
        final = victim.final()
        assert final.state == "finished"
        assert final.error is None
        assert final.step == 3
        assert final.scalars["loss"] == pytest.approx(1 / 3)
        record = victim.record()
        assert record.pid == victim.pid
        assert record.heartbeat_interval == pytest.approx(float(HEARTBEAT))
        if _is_swanlab(victim):
            assert record.source == "swanlab"
            assert record.labels["project"] == "victim-project"
            assert record.labels["experiment"] == "exp-finish"
            assert record.labels["description"] == "a victim run"
            assert record.labels["mode"] == "offline"
            assert record.labels["swanlab_run_id"]
            assert "url" not in record.labels  # offline: there is no run page
        else:
            assert record.source == "watch"
            assert record.name == "watch-finish"


def test_no_finish_call_is_finished_at_exit(flavour: Flavour, tmp_path: Path) -> None:
    with flavour(tmp_path, "no-finish").start() as victim:
        victim.ready()
        assert victim.wait() == 0, victim.output()
        assert victim.final().state == "finished"


def test_uncaught_exception_is_crashed_with_traceback(flavour: Flavour, tmp_path: Path) -> None:
    with flavour(tmp_path, "exception").start() as victim:
        victim.ready()
        assert victim.wait() == 1, victim.output()
        final = victim.final()
        assert final.state == "crashed"
        assert "Traceback" in final.error
        assert "RuntimeError: boom from victim" in final.error


def test_sys_exit_1_is_crashed_with_its_exit_code(flavour: Flavour, tmp_path: Path) -> None:
    # SwanLab itself reports this run as a success.
    with flavour(tmp_path, "sys-exit-1").start() as victim:
        victim.ready()
        assert victim.wait() == 1, victim.output()
        final = victim.final()
        assert final.state == "crashed"
        assert final.exit_code == 1


def test_sigint_is_aborted(flavour: Flavour, tmp_path: Path) -> None:
    with flavour(tmp_path, "sigint-self").start() as victim:
        victim.ready()
        code = victim.wait()
        assert code in (-signal.SIGINT, 1, 130), victim.output()
        final = victim.final()
        assert final.state == "aborted"
        assert final.signal == "SIGINT"


def test_sigterm_is_terminated_and_the_process_dies_by_it(flavour: Flavour, tmp_path: Path) -> None:
    with flavour(tmp_path, "sleep-forever").start() as victim:
        victim.ready()
        victim.expect("RUNNING")
        victim.signal(signal.SIGTERM)
        assert victim.wait() == -signal.SIGTERM, victim.output()
        final = victim.final()
        assert final.state == "terminated"
        assert final.signal == "SIGTERM"
        if not _progress_arrives_batched(victim):
            assert final.step is not None and final.step >= 3


def test_sigkill_leaves_a_running_record_whose_heartbeat_stops(flavour: Flavour, tmp_path: Path) -> None:
    with flavour(tmp_path, "sleep-forever").start() as victim:
        victim.ready()
        identity = ProcessIdentity.of(victim.pid)
        first = victim.progress().seq
        wait_for(lambda: victim.progress().seq >= first + 2, what="the heartbeat to advance")
        victim.signal(signal.SIGKILL)
        assert victim.wait() == -signal.SIGKILL
        died = time.time()
        # "running": a record and a heartbeat, no final record. Nothing can
        # write after the process was reaped, so the last beat predates that.
        assert not victim.paths.final.exists()
        record = victim.record()
        assert (record.pid, record.start_ticks, record.boot_id) == (
            identity.pid, identity.start_ticks, identity.boot_id)
        progress = victim.progress()
        assert progress.seq >= first + 2
        assert progress.beat <= died
        assert os.stat(victim.paths.beat).st_mtime <= died
        assert not ProcessIdentity(record.pid, record.start_ticks, record.boot_id).is_running()
        leftovers = [p.name for p in victim.paths.dir.iterdir() if p.name.startswith(".")]
        assert leftovers == [] or all(p.endswith(".tmp") for p in leftovers)


@pytest.mark.parametrize("env_var", swanlab_params())
def test_user_sigterm_handler_calling_sys_exit_is_not_a_success(env_var: str, tmp_path: Path) -> None:
    # With a handler of the user's own we leave SIGTERM alone; SwanLab then says
    # "success" because the handler calls sys.exit(143). The status says otherwise.
    python = swanlab_python(env_var)
    with Victim.swanlab(python, tmp_path, "sleep-forever", "--heartbeat", HEARTBEAT,
                        "--user-sigterm-exit", "143").start() as victim:
        victim.ready()
        victim.expect("RUNNING")
        victim.signal(signal.SIGTERM)
        assert victim.wait() == 143, victim.output()
        final = victim.final()
        assert final.state == "crashed"
        assert final.exit_code == 143


def test_stall_keeps_heartbeats_but_not_progress(flavour_latest: Flavour, tmp_path: Path) -> None:
    with flavour_latest(tmp_path, "stall").start() as victim:
        victim.ready()
        victim.expect("STALLED")
        stalled_at = time.time()
        seq = victim.progress().seq

        def beats_went_on() -> bool:  # and the last logged values arrived (late, with SwanLab >= 0.8)
            progress = victim.progress()
            return progress.seq >= seq + 3 and progress.last_progress is not None

        wait_for(beats_went_on, what="heartbeats while stalled")
        progress = victim.progress()
        assert progress.beat > stalled_at
        assert progress.last_progress < stalled_at
        assert progress.step == 3


def test_progress_stall_resume(flavour_latest: Flavour, tmp_path: Path) -> None:
    resume = tmp_path / "resume"
    with flavour_latest(tmp_path, "progress-then-stall-then-resume", "--resume-file", str(resume)).start() \
            as victim:
        victim.ready()
        victim.expect("STALLED")
        stalled_at = time.time()
        seq = victim.progress().seq

        def beats_went_on() -> bool:
            progress = victim.progress()
            return progress.seq >= seq + 2 and progress.last_progress is not None

        wait_for(beats_went_on, what="heartbeats while stalled")
        assert victim.progress().last_progress < stalled_at
        resume.touch()
        victim.expect("RESUMED")
        assert victim.wait() == 0, victim.output()
        final = victim.final()
        assert final.state == "finished"
        assert final.step == 6
        assert victim.progress().last_progress > stalled_at


def test_messages_are_queued_in_the_spool_in_order(flavour_latest: Flavour, tmp_path: Path) -> None:
    with flavour_latest(tmp_path, "finish", "--send", "first", "--send", "second").start() as victim:
        victim.ready()
        assert victim.wait() == 0, victim.output()
        messages = victim.messages()
        assert [(m.seq, m.text) for m in messages] == [(1, "first"), (2, "second")]
        assert messages[0].time <= messages[1].time <= victim.final().ended
