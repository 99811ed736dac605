"""Real torchrun jobs (torch from PyPI, CPU, gloo): 4 ranks on this host, a real daemon.

Rank 0 records (``sentinel.watch``); the daemon finds the other three ranks
itself. Each way a job ends must give exactly one alert about the job, naming
the rank that failed first and why. torch lives in its own environment
(``SENTINEL_TEST_PY_TORCH``, built by tests/run.py).
"""

from __future__ import annotations

import os
import pickle
import re
import signal
import sys
from pathlib import Path
from typing import Callable, Optional

import pytest

from sentinel.model.alerts import Alert, AlertKind
from tests import torch_jobs
from tests.daemon_harness import DaemonProcess, titles, wait_for_push
from tests.fakes import FakeBark
from tests.test_flight_recorder import dump as fr_dump
from tests.test_flight_recorder import entry as fr_entry
from tests.torch_jobs import ENV_TORCH, torch_python_path, watching_siblings
from tests.victims.harness import missing

K = AlertKind


def torch_python() -> str:
    path = torch_python_path()
    if path:
        return path
    missing(f"{ENV_TORCH} is not set to a python with torch (tests/run.py builds .venv-torch)")


def torch_job(daemon: DaemonProcess, mode: str, *args: str) -> torch_jobs.TorchJob:
    return torch_jobs.TorchJob(daemon, mode, *args, python=torch_python())


def the_one_alert(daemon: DaemonProcess, bark: FakeBark, run_id: str, kind: AlertKind) -> Alert:
    """Stop the daemon; the job's run raised exactly one alert, the only push sent."""
    assert daemon.stop() == 0
    journal = daemon.journal(run_id)
    assert [a.kind for a in journal] == [kind], journal
    assert len(bark.pushes) == 1, titles(bark)
    return journal[0]


def test_sigkill_of_one_rank_is_one_alert_naming_it(daemon: DaemonProcess, bark: FakeBark) -> None:
    with torch_job(daemon, "sleep", "--name", "nine") as job:
        job.victim.expect("RUNNING")
        watching_siblings(daemon, 3)
        os.kill(job.ranks[3], signal.SIGKILL)
        job.victim.wait(120)
        push = wait_for_push(bark, K.KILLED, "nine", signal="SIGKILL")
    alert = the_one_alert(daemon, bark, job.run_id, K.KILLED)
    assert alert.pid == job.ranks[3] and alert.signal == "SIGKILL"
    assert f"rank 3 (local rank 3, host {os.uname().nodename}, pid {job.ranks[3]}) was killed by SIGKILL" \
        in (alert.detail or "")
    teardown = r"was killed by SIGKILL at step [\d,]+; torchrun stopped the other 3 ranks$"
    assert re.search(teardown, alert.detail or "")
    assert alert.job == {"id": alert.job["id"], "launcher": "torchrun", "ranks": "4", "cause_rank": "3"}
    assert "rank 3" in push["body"]


def test_a_rank_raising_under_record_is_crashed_with_its_traceback(
    daemon: DaemonProcess, bark: FakeBark
) -> None:
    with torch_job(daemon, "raise", "--rank", "2", "--name", "boom") as job:
        job.victim.expect("RUNNING")
        watching_siblings(daemon, 3)
        job.victim.wait(120)
        wait_for_push(bark, K.CRASHED, "boom")
    alert = the_one_alert(daemon, bark, job.run_id, K.CRASHED)
    assert alert.pid == job.ranks[2] and alert.exit_code == 1
    assert "rank 2 (local rank 2" in (alert.detail or "")
    assert "raised RuntimeError: boom from rank 2" in (alert.detail or "")
    assert 'raise RuntimeError(f"boom from rank {rank}")' in (alert.error or "")  # torchrun's error file


def test_clean_finish_is_one_finished(daemon: DaemonProcess, bark: FakeBark) -> None:
    with torch_job(daemon, "finish", "--name", "done") as job:
        watching_siblings(daemon, 3)
        assert job.victim.wait(120) == 0
        wait_for_push(bark, K.FINISHED, "done")
    alert = the_one_alert(daemon, bark, job.run_id, K.FINISHED)
    assert "all 4 local ranks finished" in (alert.detail or "")


def test_oom_kill_of_one_rank_names_the_oom_killer(
    daemon: DaemonProcess, bark: FakeBark, memory_cgroup: Path
) -> None:
    with torch_job(daemon, "oom", "--rank", "3", "--cage", str(memory_cgroup), "--name", "hog") as job:
        job.victim.expect("RUNNING")
        watching_siblings(daemon, 3)
        job.victim.wait(120)
        wait_for_push(bark, K.KILLED, "hog", detail="OOM killer")
    alert = the_one_alert(daemon, bark, job.run_id, K.KILLED)
    assert alert.pid == job.ranks[3]
    assert "rank 3 (local rank 3" in (alert.detail or "")
    assert "was killed by the OOM killer" in (alert.detail or "")


def test_stall_of_one_recorded_rank_is_one_job_stall_naming_it(
    daemon: DaemonProcess, bark: FakeBark, tmp_path: Path
) -> None:
    resume = tmp_path / "resume"
    with torch_job(daemon, "stall", "--rank", "1", "--record-all", "--stall-timeout", "2",
                  "--resume-file", str(resume), "--name", "stuck") as job:
        job.victim.expect("RUNNING")
        stalled = wait_for_push(bark, K.STALLED, "stuck", timeout=60)
        resume.touch()
        wait_for_push(bark, K.RECOVERED, "stuck", timeout=60)
        os.kill(job.ranks[2], signal.SIGKILL)
        job.victim.wait(120)
        wait_for_push(bark, K.KILLED, "stuck", signal="SIGKILL")
    assert "rank 1 of 4 stopped progressing" in stalled["body"]
    assert daemon.stop() == 0
    stall, _, _ = journal = daemon.journal(job.run_id)
    assert [a.kind for a in journal] == [K.STALLED, K.RECOVERED, K.KILLED]
    assert stall.pid == job.ranks[1] and stall.job["cause_rank"] == "1"
    assert len(bark.pushes) == 3, titles(bark)  # the other recorded ranks said nothing themselves


def _kmsg_writable() -> Optional[str]:
    if os.geteuid() != 0:
        return "needs root to write a kernel log line"
    try:
        with open("/dev/kmsg", "w"):
            return None
    except OSError as exc:
        return f"/dev/kmsg is not writable: {exc}"


def test_an_xid_naming_a_rank_alerts_while_the_job_runs(daemon: DaemonProcess, bark: FakeBark) -> None:
    reason = _kmsg_writable()
    if reason:
        pytest.skip(reason)
    with torch_job(daemon, "sleep", "--name", "gpu") as job:
        job.victim.expect("RUNNING")
        watching_siblings(daemon, 3)
        # Modal's GPU health guide quotes this line (https://modal.com/docs/guide/gpu-health);
        # here it names rank 2's pid.
        line = f"NVRM: Xid (PCI:0000:c6:00): 79, pid={job.ranks[2]}, name=python, GPU has fallen off the bus."
        with open("/dev/kmsg", "w") as kmsg:
            kmsg.write(line + "\n")
        push = wait_for_push(bark, K.GPU_FAULT, "gpu")
        assert job.victim.proc is not None and job.victim.proc.poll() is None  # the job still runs
        os.kill(job.ranks[2], signal.SIGKILL)
        job.victim.wait(120)
        wait_for_push(bark, K.KILLED, "gpu", signal="SIGKILL")
    assert "GPU has fallen off the bus" in push["body"]
    assert daemon.stop() == 0
    fault, killed = daemon.journal(job.run_id)
    assert fault.kind is K.GPU_FAULT and fault.pid == job.ranks[2] and "rank 2" in (fault.detail or "")
    assert killed.kind is K.KILLED and "Xid 79" in (killed.detail or "")


if sys.platform != "linux":  # pragma: no cover
    pytest.skip("Linux only", allow_module_level=True)


def test_a_daemon_restart_mid_job_keeps_one_alert_naming_the_killed_rank(
    daemon: DaemonProcess, bark: FakeBark
) -> None:
    """SIGKILL of the daemon while the job runs, a new daemon, then a rank killed:
    the new daemon finds the job's ranks again and raises exactly one alert about it."""
    with torch_job(daemon, "sleep", "--name", "restarted") as job:
        job.victim.expect("RUNNING")
        watching_siblings(daemon, 3)
        daemon.kill()
        daemon.start()
        watching_siblings(daemon, 3, jobs=2)  # the second daemon's log too (logs are kept per start)
        os.kill(job.ranks[3], signal.SIGKILL)
        job.victim.wait(120)
        wait_for_push(bark, K.KILLED, "restarted", signal="SIGKILL")
    alert = the_one_alert(daemon, bark, job.run_id, K.KILLED)
    assert alert.pid == job.ranks[3] and alert.job["cause_rank"] == "3"
    assert "rank 3 (local rank 3" in (alert.detail or "")


def _straggler_stall(daemon: DaemonProcess, bark: FakeBark, env: Optional[dict[str, str]] = None,
                     while_running: Callable[[], None] = lambda: None) -> Alert:
    """A job whose rank 2 sleeps in ``straggle()`` while ranks 0, 1, 3 block in
    all_reduce: rank 0 (the recorded one) stalls; its one alert, the daemon stopped."""
    job = torch_jobs.TorchJob(daemon, "straggle", "--rank", "2", "--stall-timeout", "2", "--name", "lag",
                              python=torch_python(), env=env)
    with job:
        job.victim.expect("RUNNING")
        watching_siblings(daemon, 3)
        while_running()
        stalled = wait_for_push(bark, K.STALLED, "lag", timeout=60)
        assert daemon.stop() == 0  # before the job is killed: its teardown would alert too
    journal = daemon.journal(job.run_id)
    assert [a.kind for a in journal] == [K.STALLED], journal
    assert len(bark.pushes) == 1, titles(bark)
    assert (journal[0].where or "") in stalled["body"]
    return journal[0]


def test_a_straggling_rank_is_named_as_the_odd_one_out(daemon: DaemonProcess, bark: FakeBark) -> None:
    alert = _straggler_stall(daemon, bark)
    # rank 0 answers the recorder's signal; ranks 1, 2, 3 (no recorder) are dumped by py-spy
    assert re.fullmatch(r"ranks 0, 1, 3 wait in all_reduce \(distributed_c10d\.py:\d+\); "
                        r"rank 2 is in straggle\(\) \(torch_worker\.py:\d+\)", alert.where or ""), alert.where
    assert alert.evidence_missing is None
    assert "rank 2, main thread" in (alert.stacks or "") and "in straggle" in (alert.stacks or "")


def test_without_py_spy_the_stall_says_why_the_other_ranks_stacks_are_missing(
    tmp_path: Path, bark: FakeBark
) -> None:
    absent = tmp_path / "not-installed" / "py-spy"
    with DaemonProcess(tmp_path, {"phone": {"type": "bark", "url": bark.key_url}},
                       daemon_env={"SENTINEL_PY_SPY": str(absent)}) as daemon:
        alert = _straggler_stall(daemon, bark)
    assert alert.evidence_missing == "ranks 1, 2, 3: py-spy is not installed"
    assert re.fullmatch(r"rank 0 waits in all_reduce \(distributed_c10d\.py:\d+\); "
                        r"stacks not available for ranks 1, 2, 3: py-spy is not installed", alert.where or "")



def test_a_flight_recorder_dump_names_the_rank_missing_from_the_collective(
    daemon: DaemonProcess, bark: FakeBark
) -> None:
    """gloo writes no Flight Recorder dump: the test writes each rank's, in PyTorch's
    layout, into the path the job's environment names, once the ranks run."""
    prefix = daemon.tmp / "fr" / "nccl_trace_rank_"
    prefix.parent.mkdir()
    env = {"TORCH_NCCL_TRACE_BUFFER_SIZE": "2000", "TORCH_NCCL_DEBUG_INFO_TEMP_FILE": str(prefix)}

    def write_dumps() -> None:
        for rank in range(4):
            last = 11 if rank == 2 else 12
            entries = [fr_entry(seq, "completed") for seq in range(1, last)] + [fr_entry(last, "started")]
            Path(f"{prefix}{rank}").write_bytes(pickle.dumps(fr_dump(entries)))

    alert = _straggler_stall(daemon, bark, env=env, while_running=write_dumps)
    assert re.fullmatch(r"ranks 0, 1, 3 wait in all_reduce \(distributed_c10d\.py:\d+\); "
                        r"rank 2 is in straggle\(\) \(torch_worker\.py:\d+\); "
                        r"collective #12 \(nccl:all_reduce, process group 0\): rank 2 missing",
                        alert.where or ""), alert.where
