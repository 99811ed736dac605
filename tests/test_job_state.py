"""The saved job format (sentinel/daemon/job_state.py) and what is said about ranks
that ended while the daemon was down. The daemon-level tests (real torchrun jobs,
a SIGKILLed daemon, hostile files in its state directory) are in test_jobs_restart.py."""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from pathlib import Path

import pytest

from sentinel.daemon import job_state
from sentinel.daemon.job_state import JobStateStore, decode, encode, file_name, payload
from sentinel.daemon.job_watch import Death, Job, Member, verdict
from sentinel.formats.safe_json import SpoolFormatError
from sentinel.formats.spool import FinalRecord, JobRecord
from sentinel.host.procid import ProcessIdentity
from sentinel.model.alerts import AlertKind
from sentinel.model.endings import Reason
from sentinel.model.exit_status import ending_of

K = AlertKind


def a_job(*deaths: Death | None, uid: int = 0, key: str = "0/agent:1:2/job") -> Job:
    job = Job(key, uid, JobRecord("torchrun", "4242", rank=0, local_rank=0, error_file="/tmp/e.json"), "gpu7",
              first_failure=5.0)
    for rank, death in enumerate(deaths):
        member = Member(ProcessIdentity(1000 + rank, 77 + rank, "boot"), rank, rank, f"/tmp/err{rank}.json",
                        run_id="run-0" if rank == 0 else None)
        member.death, member.gone = death, death is not None
        job.members[member.ident.pid] = member
    return job


def test_a_job_round_trips_through_its_file() -> None:
    job = a_job(None, Death(at=5.0, status=ending_of(9)),
                Death(at=6.0, oom=Reason("oom_kernel", {"line": "Out of memory: Killed process 1002"}),
                      message="RuntimeError: boom", traceback="Traceback ...", down=True))
    raw = payload(encode(job, 10.0, "pid:[1]"))
    assert raw is not None
    saved = decode(json.loads(raw))
    assert (saved.key, saved.uid, saved.host) == (job.key, 0, "gpu7")
    assert (saved.pidns, saved.saved) == ("pid:[1]", 10.0)
    assert saved.record == job.record and saved.first_failure == 5.0 and saved.alerted_at is None
    first, second, third = saved.members
    assert first.ident == ProcessIdentity(1000, 77, "boot")
    assert first.run_id == "run-0" and first.death is None
    assert second.death is not None and second.death.status == ending_of(9) and not second.death.down
    assert third.death is not None
    assert third.death.oom == Reason("oom_kernel", {"line": "Out of memory: Killed process 1002"})
    assert (third.death.message, third.death.traceback, third.death.down) == ("RuntimeError: boom",
                                                                              "Traceback ...", True)


def _saved(**changes: object) -> dict:
    data = json.loads(payload(encode(a_job(None, Death(at=5.0, status=ending_of(9))), 10.0, "")) or b"")
    for path, value in changes.items():
        target = data
        *parents, last = path.split("__")
        for name in parents:
            target = target[int(name)] if name.isdigit() else target[name]
        target[last] = value
    return data


@pytest.mark.parametrize("changes, named", [
    ({"v": 2}, "format version 2"),
    ({"saved": float("nan")}, "saved must be a time"),
    ({"members__0__pid": -1}, "members[0].pid must be a pid"),
    ({"members__1__death__status": {"key": "exploded"}}, "members[1].death.status.key"),
    ({"members__1__death__at": float("inf")}, "members[1].death.at must be a time"),
    ({"members__0__rank": True}, "members[0].rank must be a rank"),
    ({"members": [{}] * 2000}, "members must be a list of at most 1024"),
    ({"record": "not an object"}, "job must be an object"),
])
def test_a_bad_field_is_named(changes: dict, named: str) -> None:
    with pytest.raises(SpoolFormatError, match=named.replace("[", r"\[").replace("]", r"\]")):
        decode(_saved(**changes))


def test_a_file_too_large_drops_tracebacks_first_then_is_not_written() -> None:
    huge = "x" * (job_state._TRACEBACK_MAX * 2)
    deaths = [Death(at=1.0, status=ending_of(9), traceback=huge) for _ in range(200)]
    raw = payload(encode(a_job(*deaths), 1.0, ""))
    assert raw is not None and len(raw) <= job_state.MAX_FILE_BYTES and huge not in raw.decode()
    wide = a_job(*[Death(at=1.0, message="m" * 300, status=ending_of(9)) for _ in range(1024)])
    for member in wide.members.values():
        member.error_file = "/" + "e" * 4000
    assert payload(encode(wide, 1.0, "")) is None


def test_the_store_writes_on_its_thread_caps_each_user_and_removes_judged_jobs(tmp_path: Path,
                                                                               caplog) -> None:
    store = JobStateStore(tmp_path / "jobs")
    assert store.load() == []
    store.start()
    mine, theirs = a_job(None, key="0/a"), a_job(None, uid=1000, key="1000/b")
    over = Counter({0: 1, 1000: job_state.MAX_JOBS_PER_USER + 1})
    with caplog.at_level(logging.WARNING, "sentinel.daemon.job_state"):
        store.save([mine, theirs], [], over, 1.0)
        store.save([theirs], [], over, 2.0)
    store.close()  # writes what is pending
    assert sorted(p.name for p in (tmp_path / "jobs").iterdir()) == [file_name("0/a")]
    assert caplog.text.count("uid 1000 has more than 256 jobs") == 1
    again = JobStateStore(tmp_path / "jobs")
    [loaded] = again.load()
    assert loaded.key == "0/a" and loaded.uid == 0
    path = tmp_path / "jobs" / file_name("0/a")
    assert path.stat().st_mode & 0o777 == 0o600
    again.start()
    again.save([], ["0/a"], Counter(), 3.0)
    again.close()
    assert not path.exists()


def test_leftover_temporary_files_are_removed_and_other_names_quarantined(tmp_path: Path, caplog) -> None:
    jobs = tmp_path / "jobs"
    jobs.mkdir(mode=0o700)
    (jobs / f".{'a' * 32}.json.123.abcd.tmp").write_text("{")
    (jobs / "notes.txt").write_text("hello")
    with caplog.at_level(logging.ERROR, "sentinel.daemon.job_state"):
        assert JobStateStore(jobs).load() == []
    assert sorted(os.listdir(jobs)) == [job_state.QUARANTINE_DIR]
    assert caplog.text.count("saved job notes.txt refused (not a job state file name)") == 1


# ---------------------------------------------------------------- what is said


def test_ranks_ended_unseen_while_down_are_named_without_an_order() -> None:
    job = a_job(Death(at=5.0, final=FinalRecord("terminated", 5.0, signal="SIGTERM")),
                Death(at=9.0, down=True), Death(at=9.0, down=True), Death(at=9.0, down=True))
    found = verdict(job, 12, None)
    assert found.kind is K.KILLED and found.cause is None
    assert found.detail == ("Job 4242: ranks 1, 2, 3 ended while the daemon was down; which one failed "
                            "first is not known (4 local ranks)")
    assert found.reason.text("zh") == ("作业 4242：rank 1, 2, 3 在守护进程停止期间结束；"
                                       "无法得知哪一个最先失败（本机共 4 个 rank）")


def test_the_one_rank_ended_unseen_beside_the_teardown_is_the_cause() -> None:
    terminated = FinalRecord("terminated", 5.0, signal="SIGTERM")
    job = a_job(Death(at=5.0, final=terminated), Death(at=5.1, final=terminated),
                Death(at=5.1, final=terminated), Death(at=9.0, down=True))
    found = verdict(job, 12, None)
    assert found.kind is K.KILLED and found.cause is job.members[1003]
    assert found.detail == ("Job 4242: rank 3 (local rank 3, host gpu7, pid 1003) ended while the daemon was "
                            "down at step 12; torchrun stopped the other 3 ranks")


def test_an_ending_seen_before_the_restart_is_the_cause_over_those_unseen() -> None:
    job = a_job(Death(at=5.0, final=FinalRecord("terminated", 5.0, signal="SIGTERM")),
                Death(at=9.0, down=True), Death(at=4.0, status=ending_of(9)), Death(at=9.0, down=True))
    found = verdict(job, None, None)
    assert found.cause is job.members[1002] and "was killed by SIGKILL" in found.detail


def test_a_job_changing_again_is_saved_again_at_most_once_a_second_until_its_alert(tmp_path: Path) -> None:
    store = JobStateStore(tmp_path / "jobs")
    assert store.load() == []  # makes the directory, as at the daemon's start
    job = a_job(None, None)
    users = Counter({0: 1})
    assert store.save([job], [], users, 10.0) == set() and store.next_due() is None
    assert store.save([job], [], users, 10.4) == {job.key}  # a rank's death 0.4 s later: deferred
    assert store.next_due() == 11.0
    assert store.save([job], [], users, 11.0) == set() and store.next_due() is None
    job.alerted_at = 11.2
    assert store.save([job], [], users, 11.2) == set()  # the alert is saved at once
    assert store.save([job], [], users, 11.3, force=True) == set()  # a clean stop saves everything
    store.close()
    [saved] = JobStateStore(tmp_path / "jobs").load()
    assert saved.alerted_at == 11.2


def test_ranks_that_finished_while_down_beside_a_finished_rank_are_a_finished_job() -> None:
    job = a_job(Death(at=5.0, final=FinalRecord("finished", 5.0, exit_code=0)),
                Death(at=9.0, down=True), Death(at=9.0, down=True), Death(at=9.0, down=True))
    found = verdict(job, None, None)
    assert found.kind is K.FINISHED and found.cause is None
    assert found.detail == "Job 4242: all 4 local ranks finished (3 without an exit status seen)"
