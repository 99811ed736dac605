"""A job's state survives a daemon restart (sentinel/daemon/job_state.py).

Real torchrun jobs (4 CPU ranks, gloo) and a real daemon, started as
systemd/sentinel.service starts it (tests/unit_caps.py), SIGKILLed mid-job:
a rank that dies while no daemon runs is named by the next daemon in exactly
one alert, or, when nothing can tell which rank failed first, the ranks that
ended unseen are named as such (never rank 0's teardown SIGTERM). A job
alerted before the restart is not alerted again. A damaged or hostile saved
job (garbage, NaN, too large, a symlink, a FIFO) is logged once and moved
aside; the daemon starts and everything else is kept.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any, Optional

import pytest

from sentinel.daemon.job_state import QUARANTINE_DIR, file_name
from sentinel.formats.spool import JobRecord
from sentinel.host.procid import ProcessIdentity
from sentinel.model.alerts import AlertKind
from tests import torch_jobs
from tests.daemon_harness import DaemonProcess, wait_for_push
from tests.fakes import FakeBark
from tests.test_jobs_torchrun import the_one_alert, torch_python
from tests.victims.harness import Victim, wait_for

K = AlertKind

if sys.platform != "linux":  # pragma: no cover
    pytest.skip("Linux only", allow_module_level=True)


def saved_jobs(daemon: DaemonProcess) -> list[dict[str, Any]]:
    """The job state files the daemon wrote (read as they are at this moment)."""
    found = []
    for path in sorted((daemon.state / "jobs").glob("*.json")):
        try:
            found.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue  # replaced meanwhile: read again on the next look
    return found


def saved_with(daemon: DaemonProcess, ranks: int, recorded: int) -> dict[str, Any]:
    """Wait until the saved job lists ``ranks`` ranks, ``recorded`` of them with a run."""
    def ready() -> Optional[dict[str, Any]]:
        for job in saved_jobs(daemon):
            members = job["members"]
            if len(members) == ranks and sum(1 for m in members if m["run_id"]) == recorded:
                return job
        return None
    return wait_for(ready, 60, what=f"a saved job with {ranks} ranks, {recorded} recorded")


def alerted_or_gone(daemon: DaemonProcess) -> Optional[list[list[dict[str, Any]]]]:
    """[the saved jobs] once every one is marked alerted (none left counts too), else None."""
    jobs = saved_jobs(daemon)
    return [jobs] if all(j["alerted_at"] is not None for j in jobs) else None


def first_pass_done(daemon: DaemonProcess) -> None:
    """The restarted daemon finished its first loop pass (it reports its status after each)."""
    notify = daemon.notify
    assert notify is not None
    wait_for(lambda: any(s.startswith("STATUS=") for s in notify.states), 30, what="a STATUS= notice")


def test_a_rank_killed_while_the_daemon_is_down_is_named_in_one_alert(
    daemon: DaemonProcess, bark: FakeBark
) -> None:
    """Every rank records: the next daemon finds ranks 0-2 terminated by the teardown
    (their final records) and rank 3 gone without one: rank 3 is the cause."""
    with torch_jobs.TorchJob(daemon, "sleep", "--record-all", "--name", "downed",
                             python=torch_python()) as job:
        job.victim.expect("RUNNING")
        saved = saved_with(daemon, ranks=4, recorded=4)
        assert sorted(m["rank"] for m in saved["members"]) == [0, 1, 2, 3]
        daemon.kill()
        os.kill(job.ranks[3], signal.SIGKILL)
        job.victim.wait(120)  # torchrun tore the other ranks down while no daemon watched
        daemon.start()
        push = wait_for_push(bark, K.KILLED, "downed")
    alert = the_one_alert(daemon, bark, job.run_id, K.KILLED)
    assert alert.pid == job.ranks[3] and alert.job["cause_rank"] == "3"
    assert f"rank 3 (local rank 3, host {os.uname().nodename}, pid {job.ranks[3]}) ended while the " \
           "daemon was down" in (alert.detail or "")
    assert "SIGTERM" not in (alert.detail or "") and "rank 3" in push["body"]
    assert saved_jobs(daemon) == []  # judged and forgotten: nothing is left to restore


def test_ranks_ended_unseen_while_down_are_named_without_guessing_an_order(
    daemon: DaemonProcess, bark: FakeBark
) -> None:
    """Only rank 0 records: its final record says SIGTERM (the teardown), and nothing
    tells which of ranks 1-3 died first. The alert says exactly that."""
    with torch_jobs.TorchJob(daemon, "sleep", "--name", "unseen", python=torch_python()) as job:
        job.victim.expect("RUNNING")
        saved_with(daemon, ranks=4, recorded=1)
        daemon.kill()
        os.kill(job.ranks[3], signal.SIGKILL)
        job.victim.wait(120)
        daemon.start()
        wait_for_push(bark, K.KILLED, "unseen")
    alert = the_one_alert(daemon, bark, job.run_id, K.KILLED)
    assert "ranks 1, 2, 3 ended while the daemon was down; which one failed first is not known " \
           "(4 local ranks)" in (alert.detail or "")
    assert "terminated" not in (alert.detail or "").lower() and "cause_rank" not in alert.job


def test_a_job_that_finished_while_the_daemon_was_down_is_one_finished(
    daemon: DaemonProcess, bark: FakeBark
) -> None:
    with torch_jobs.TorchJob(daemon, "finish", "--record-all", "--steps", "200", "--name", "calm",
                             python=torch_python()) as job:
        saved_with(daemon, ranks=4, recorded=4)
        daemon.kill()
        assert job.victim.wait(120) == 0
        daemon.start()
        wait_for_push(bark, K.FINISHED, "calm")
    alert = the_one_alert(daemon, bark, job.run_id, K.FINISHED)
    assert "all 4 local ranks finished" in (alert.detail or "")


def test_a_job_alerted_before_a_restart_is_not_alerted_again(daemon: DaemonProcess, bark: FakeBark) -> None:
    with torch_jobs.TorchJob(daemon, "sleep", "--record-all", "--name", "once",
                             python=torch_python()) as job:
        job.victim.expect("RUNNING")
        saved_with(daemon, ranks=4, recorded=4)
        os.kill(job.ranks[3], signal.SIGKILL)
        job.victim.wait(120)
        wait_for_push(bark, K.KILLED, "once", signal="SIGKILL")
        daemon.wait_log(".killed to phone")  # marked delivered: a restart does not send it again
        # Saved as alerted, or already forgotten once every rank was judged.
        [left] = wait_for(lambda: alerted_or_gone(daemon), 30, what="the saved job marked alerted (or gone)")
        daemon.kill()
        daemon.start()
        first_pass_done(daemon)
    alert = the_one_alert(daemon, bark, job.run_id, K.KILLED)  # one journal entry, one push in all
    assert alert.job["cause_rank"] == "3"
    restarted = daemon.log().split(" job(s) restored from the state directory")[-2:]
    assert restarted[0].endswith(f"start-up: {len(left)}"), restarted
    assert ("alerted before the restart" in restarted[1]) == bool(left)


# ---------------------------------------------------------------- hostile saved jobs


def a_saved_job(uid: int) -> dict[str, Any]:
    """A well-formed saved job whose one rank (this test process's parent's pid, never
    ours to judge) is long gone: restored, judged, forgotten."""
    ident = ProcessIdentity.current()
    record = JobRecord("torchrun", "restored-job", rank=1, local_rank=1)
    return {"v": 1, "key": f"{uid}/restored", "uid": uid, "host": os.uname().nodename,
            "pidns": os.readlink("/proc/self/ns/pid"), "saved": 1.0, "record": record.to_dict(),
            "first_failure": None, "alerted_at": None,
            "members": [{"pid": ident.pid, "start_ticks": ident.start_ticks + 1, "boot_id": ident.boot_id,
                         "rank": 1, "local_rank": 1, "error_file": "", "run_id": None, "gone": False,
                         "death": None}]}


def test_hostile_saved_jobs_are_quarantined_and_the_rest_kept(daemon: DaemonProcess, bark: FakeBark,
                                                              tmp_path: Path) -> None:
    daemon.stop()  # it made the state directory; now plant files in it
    jobs_dir = daemon.state / "jobs"
    good = a_saved_job(os.getuid())
    (jobs_dir / file_name(good["key"])).write_text(json.dumps(good))
    nan = a_saved_job(os.getuid())
    nan["key"] = "0/nan"
    text = json.dumps(nan).replace('"saved": 1.0', '"saved": NaN')
    planted = {
        "garbage": ("0" * 32 + ".json", b"\x00\xff not json at all"),
        "nan": (file_name("0/nan"), text.encode()),
        "huge": ("1" * 32 + ".json", b'{"v": 1, "pad": "' + b"x" * (600 * 1024) + b'"}'),
        "renamed": ("2" * 32 + ".json", json.dumps(good).encode()),  # its name is not its key's
    }
    for name, raw in planted.values():
        (jobs_dir / name).write_bytes(raw)
    secret = tmp_path / "elsewhere.json"
    secret.write_text(json.dumps(good))
    (jobs_dir / ("3" * 32 + ".json")).symlink_to(secret)
    os.mkfifo(jobs_dir / ("4" * 32 + ".json"))

    daemon.start()  # it starts; a FIFO does not block it, a symlink is not followed
    daemon.wait_log("start-up: 1 job(s) restored")
    log = daemon.log()
    for name in [n for n, _ in planted.values()] + ["3" * 32 + ".json", "4" * 32 + ".json"]:
        assert log.count(f"saved job {name} refused") == 1, log
        assert not os.path.lexists(jobs_dir / name)
    quarantined = sorted(p.name for p in (jobs_dir / QUARANTINE_DIR).iterdir())
    assert len(quarantined) == 6, quarantined
    assert "NaN" in log or "not valid JSON" in log
    assert secret.read_text() == json.dumps(good)  # the link's target untouched
    assert "Traceback" not in log

    # Nothing else is lost: a run started now is watched and alerted as ever.
    victim = Victim.watch(daemon.tmp, "sleep-forever", "--name", "after", "--heartbeat", "0.1",
                          spool_dir=daemon.spool).start()
    try:
        victim.ready()
        victim.expect("RUNNING")
        victim.kill()
        wait_for_push(bark, K.KILLED, "after", signal="SIGKILL")
    finally:
        victim.kill()


def test_a_job_stalled_before_a_restart_recovers_only_when_its_stalled_rank_does(
    daemon: DaemonProcess, bark: FakeBark, tmp_path: Path
) -> None:
    """Rank 1 of four recorded ranks stops progressing; the job's stall is alerted, the
    daemon SIGKILLed and restarted: the stall stands (rank 0 alone progressing is no
    recovery), and ends once rank 1 progresses again."""
    resume = tmp_path / "resume"
    with torch_jobs.TorchJob(daemon, "stall", "--rank", "1", "--record-all", "--stall-timeout", "2",
                             "--resume-file", str(resume), "--name", "stuck", python=torch_python()) as job:
        job.victim.expect("RUNNING")
        wait_for_push(bark, K.STALLED, "stuck", timeout=60)
        daemon.wait_log(".stalled to phone")  # marked delivered: a restart does not send it again
        saved_with(daemon, ranks=4, recorded=4)
        daemon.kill()
        daemon.start()
        first_pass_done(daemon)
        assert "restored: 4 rank(s), 0 ended while the daemon was down" in daemon.log()
        assert [p["title"] for p in bark.pushes] == [bark.pushes[0]["title"]]  # no recovery, no second stall
        resume.touch()
        wait_for_push(bark, K.RECOVERED, "stuck", timeout=60)
        os.kill(job.ranks[2], signal.SIGKILL)
        job.victim.wait(120)
        wait_for_push(bark, K.KILLED, "stuck", signal="SIGKILL")
    assert daemon.stop() == 0
    assert [a.kind for a in daemon.journal(job.run_id)] == [K.STALLED, K.RECOVERED, K.KILLED]
    assert len(bark.pushes) == 3, [p["title"] for p in bark.pushes]
