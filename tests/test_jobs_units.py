"""Jobs, piece by piece: the launcher's environment, the job verdict, exit
statuses of processes we do not parent, torchrun's error file, Xid and NCCL
lines (recorded from public logs, sources beside each), Slurm's answers."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from sentinel.channels.console import render_text
from sentinel.common import fleet_labels
from sentinel.daemon import nccl, slurm, xid
from sentinel.daemon.job_watch import Death, Job, Member, outcome, read_error_file, verdict
from sentinel.daemon.pidfd import process_exit_status
from sentinel.formats import spool
from sentinel.formats.safe_json import SpoolFormatError
from sentinel.formats.spool import FinalRecord, JobRecord
from sentinel.host import jobs
from sentinel.host.procid import ProcessIdentity
from sentinel.model.alerts import Alert, AlertKind
from sentinel.model.endings import LANGUAGES, Reason
from sentinel.model.exit_status import Ending, ending_of
from sentinel.model.render import facts, headline, summary
from tests.victims.harness import identity_of

K = AlertKind

# What torchrun 2.13 gave a worker (`torchrun --standalone --nproc-per-node 4`), trimmed.
TORCHRUN_ENV = {
    "RANK": "3", "LOCAL_RANK": "3", "WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "4", "GROUP_RANK": "0",
    "ROLE_RANK": "3", "TORCHELASTIC_RESTART_COUNT": "0", "TORCHELASTIC_MAX_RESTARTS": "0",
    "TORCHELASTIC_RUN_ID": "90d3c2ab-d4d8-400d-82d2-566a16a03185", "MASTER_ADDR": "127.0.0.1",
    "MASTER_PORT": "45013",
    "TORCHELASTIC_ERROR_FILE": "/tmp/torchelastic_aeuxxck2/90d3c2ab-d4d8-400d-82d2-566a16a03185_g4det7yb/"
                               "attempt_0/3/error.json",
}
# What Slurm 22.05 gave a batch job (sbatch on the test cluster), trimmed.
SLURM_ENV = {
    "SLURM_JOB_ID": "2", "SLURM_JOBID": "2", "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0",
    "SLURM_JOB_NAME": "job.sh", "SLURM_JOB_PARTITION": "low", "SLURM_CPUS_ON_NODE": "2",
    "SLURM_NODELIST": "localhost", "SLURM_CLUSTER_NAME": "sentineltest",
}


# ------------------------------------------------------------ the launcher's environment


def test_a_lone_process_is_no_job() -> None:
    assert jobs.from_environ({"HOME": "/root", "PATH": "/usr/bin"}, os.getppid()) is None


def test_torchrun_worker() -> None:
    job = jobs.from_environ(TORCHRUN_ENV, os.getppid())
    assert job is not None
    assert (job.launcher, job.rank, job.local_rank) == ("torchrun", 3, 3)
    assert (job.world_size, job.local_world_size) == (4, 4)
    assert job.job_id == TORCHRUN_ENV["TORCHELASTIC_RUN_ID"] and jobs.display_id(job) == "90d3c2ab"
    assert job.master == "127.0.0.1:45013" and job.restart_count == 0
    assert job.error_file == TORCHRUN_ENV["TORCHELASTIC_ERROR_FILE"]
    assert job.agent_pid == os.getppid() and job.agent_start_ticks == identity_of_parent().start_ticks


def identity_of_parent() -> ProcessIdentity:
    ident = ProcessIdentity.of(os.getppid())
    assert ident is not None
    return ident


def test_accelerate_and_deepspeed_are_told_apart() -> None:
    accelerate = jobs.from_environ({**TORCHRUN_ENV, "ACCELERATE_MIXED_PRECISION": "bf16"}, None)
    deepspeed = jobs.from_environ({"RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "2", "CROSS_RANK": "0",
                                   "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29500"}, None)
    assert accelerate is not None and accelerate.launcher == "accelerate"
    assert deepspeed is not None and deepspeed.launcher == "deepspeed"
    assert deepspeed.job_id == "10.0.0.1:29500"


def test_slurm_task_without_a_torch_launcher() -> None:
    job = jobs.from_environ(SLURM_ENV, None)
    assert job is not None
    assert (job.launcher, job.job_id, job.rank, job.local_rank) == ("slurm", "2", 0, 0)
    assert job.slurm == {"job_id": "2", "procid": "0", "localid": "0", "nodeid": "0", "job_name": "job.sh"}
    assert job.agent_pid is None  # no parent given


def test_torchrun_under_slurm_is_named_by_the_slurm_job() -> None:
    job = jobs.from_environ({**TORCHRUN_ENV, **SLURM_ENV, "TORCHELASTIC_RUN_ID": "none"}, None)
    assert job is not None and job.launcher == "torchrun" and job.job_id == "2" and job.rank == 3


def test_group_key_separates_users_agents_and_attempts() -> None:
    a = jobs.from_environ(TORCHRUN_ENV, os.getppid())
    assert a is not None
    retry = JobRecord(**{**a.__dict__, "restart_count": 1})
    assert jobs.group_key(a, 1000) != jobs.group_key(a, 1001)
    assert jobs.group_key(a, 1000) != jobs.group_key(retry, 1000)
    sibling = jobs.from_environ({**TORCHRUN_ENV, "RANK": "1", "LOCAL_RANK": "1"}, os.getppid())
    assert sibling is not None and jobs.group_key(sibling, 1000) == jobs.group_key(a, 1000)


@pytest.mark.parametrize("value", ["-1", "3.5", "x", "99999999999", ""])
def test_bad_numbers_in_the_environment_are_left_out(value: str) -> None:
    job = jobs.from_environ({**TORCHRUN_ENV, "RANK": value}, None)
    assert job is not None and job.rank is None


def test_environ_parsing() -> None:
    assert jobs.parse_environ(b"A=1\0B=x=y\0\0junk\0=v\0C=\xff\0") == {"A": "1", "B": "x=y", "C": "\ufffd"}


# ------------------------------------------------------------ the record on disk


def _record(job: object) -> dict:
    record = spool.RunRecord(run_id=spool.new_run_id(42), pid=42, start_ticks=1, boot_id="b", hostname="h",
                             uid=0, user="u", cmdline=["x"], cwd="/", started=1.0, heartbeat_interval=1.0)
    data = record.to_dict()
    data["job"] = job
    return data


def test_a_ranks_metrics_labels_name_its_job_and_rank_unless_the_run_set_them() -> None:
    job = jobs.from_environ(TORCHRUN_ENV, os.getppid())
    assert job is not None and job.rank is not None
    assert fleet_labels.run_labels({"project": "p"}, jobs.labels(job)) == {
        "project": "p", "job": jobs.display_id(job), "rank": str(job.rank)}
    assert fleet_labels.run_labels({"job": "mine"}, jobs.labels(job))["job"] == "mine"
    assert jobs.labels(None) == {}


def test_job_record_round_trips_through_run_json() -> None:
    job = jobs.from_environ({**TORCHRUN_ENV, **SLURM_ENV}, os.getppid())
    record = spool.RunRecord.from_dict(_record(None))
    assert record.job is None
    record.job = job
    again = spool.RunRecord.from_dict(json.loads(json.dumps(record.to_dict())))
    assert again.job == job


@pytest.mark.parametrize(("job", "reason"), [
    ("torchrun", "job must be an object"),
    ({"launcher": "torchrun"}, "missing field"),
    ({"launcher": "t", "job_id": "1", "rank": -3}, "job.rank must be a non-negative integer"),
    ({"launcher": "t", "job_id": "1", "rank": True}, "job.rank must be a non-negative integer"),
    ({"launcher": "t", "job_id": "1", "agent_pid": 2**40}, "job.agent_pid must be"),
    ({"launcher": 7, "job_id": "1"}, "job.launcher must be a string"),
    ({"launcher": "t", "job_id": "1", "slurm": {"job_id": 5}}, "job.slurm must map names to strings"),
])
def test_hostile_job_records_are_refused(job: object, reason: str) -> None:
    with pytest.raises(SpoolFormatError, match=reason):
        spool.JobRecord.from_dict(job)
    # In a run record the run is still read, as a lone process, and the problem named.
    problems: list[str] = []
    record = spool.RunRecord.from_dict(_record(job), problems)
    assert record.job is None and record.pid > 0
    assert len(problems) == 1 and problems[0].startswith("job is not a job record (")
    assert reason in problems[0]


def test_oversized_job_fields_are_capped_and_unknown_slurm_keys_dropped() -> None:
    huge = {"launcher": "t" * 5000, "job_id": "1", "error_file": "/" * 9000,
            "slurm": {"job_id": "1", "evil": "x"}}
    record = spool.RunRecord.from_dict(_record(huge))
    assert record.job is not None
    assert len(record.job.launcher) == 256 and len(record.job.error_file) == 4096
    assert record.job.slurm == {"job_id": "1"}


# ------------------------------------------------------------ exit statuses we did not reap ourselves


def _exited(argv: list[str]) -> tuple[subprocess.Popen[bytes], int, ProcessIdentity]:
    proc = subprocess.Popen(argv)
    ident = identity_of(proc)
    fd = os.pidfd_open(proc.pid)
    return proc, fd, ident


@pytest.mark.parametrize(("argv", "expected"), [
    ([sys.executable, "-c", "import sys; sys.exit(3)"], ending_of(3 << 8)),
    ([sys.executable, "-c", "pass"], ending_of(0 << 8)),
    ([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"],
     ending_of(signal.SIGSEGV)),
])
def test_exit_status_of_a_zombie_and_after_it_was_reaped(argv: list[str], expected: Ending) -> None:
    proc, fd, ident = _exited(argv)

    def ending() -> Ending | None:
        status = process_exit_status(fd, ident.pid, ident.start_ticks)
        return ending_of(status) if status is not None else None

    try:
        select.select([fd], [], [], 30)
        assert ending() == expected  # unreaped: from /proc/<pid>/stat
        proc.wait()
        reaped = ending()  # reaped: PIDFD_GET_INFO (Linux >= 6.15), else unknown
        assert reaped in (expected, None)
        if os.uname().release.split(".")[:2] >= ["6", "15"]:
            assert reaped == expected
    finally:
        os.close(fd)


def test_exit_status_names_signals() -> None:
    assert ending_of(9).signal == "SIGKILL" and ending_of(0 << 8).exit_code == 0
    assert ending_of(9) == Ending("killed", signal="SIGKILL")
    assert ending_of(3 << 8) == Ending("exited", exit_code=3)


# ------------------------------------------------------------ torchrun's error file

# As torch 2.13's @record wrote it for a rank raising RuntimeError (test run, paths trimmed).
ERROR_JSON = {"message": {"message": "RuntimeError: boom rank 2", "extraInfo": {
    "py_callstack": "Traceback (most recent call last):\n  File \"/tmp/tr/w.py\", line 10, in main\n"
                    "    raise RuntimeError(\"boom rank 2\")\nRuntimeError: boom rank 2\n",
    "timestamp": "1796162903"}}}


def test_error_file_gives_message_and_traceback(tmp_path: Path) -> None:
    path = tmp_path / "error.json"
    path.write_text(json.dumps(ERROR_JSON))
    message, traceback = read_error_file(str(path), os.getuid()) or ("", "")
    assert message == "RuntimeError: boom rank 2" and traceback.endswith("RuntimeError: boom rank 2\n")


def test_error_file_is_hostile_input(tmp_path: Path) -> None:
    good = tmp_path / "error.json"
    good.write_text(json.dumps(ERROR_JSON))
    link = tmp_path / "link.json"
    link.symlink_to(good)
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    junk = tmp_path / "junk.json"
    junk.write_text('{"message": 5}')
    assert read_error_file(str(link), os.getuid()) is None  # a symlink is never followed
    assert read_error_file(str(fifo), os.getuid()) is None  # never blocks on a FIFO
    assert read_error_file(str(junk), os.getuid()) is None
    assert read_error_file("relative/error.json", os.getuid()) is None
    assert read_error_file(str(good), os.getuid() + 1) is None  # someone else's file says nothing


# ------------------------------------------------------------ the verdict


def _job(*deaths: Death | None, launcher: str = "torchrun") -> Job:
    record = JobRecord(launcher=launcher, job_id="4242")
    job = Job("k", 0, record, "gpu7")
    for rank, death in enumerate(deaths):
        member = Member(ProcessIdentity(1000 + rank, 1, "b"), rank, rank)
        member.death, member.gone = death, death is not None
        job.members[member.ident.pid] = member
    return job


def test_the_first_failure_is_the_cause_and_sigterms_are_teardown() -> None:
    job = _job(Death(at=5.0, final=FinalRecord("terminated", 5.0, signal="SIGTERM")),
               Death(at=5.1, status=ending_of(15)),
               Death(at=5.1, status=ending_of(15)),
               Death(at=5.0, status=ending_of(9), oom=Reason("oom_kernel", {"line": "..."})))
    found = verdict(job, 1200, None)
    assert found.kind is K.KILLED and found.cause is job.members[1003]
    assert found.detail == ("Job 4242: rank 3 (local rank 3, host gpu7, pid 1003) was killed by the OOM "
                            "killer at step 1,200; torchrun stopped the other 3 ranks")
    assert found.reason.text("zh") == ("作业 4242：rank 3（本机 rank 3，主机 gpu7，PID 1003）"
                                       "被 OOM killer 杀死（第 1,200 步）；torchrun 已停止其余 3 个 rank")
    # As the daemon sends it: the headline names the OOM killer, the summary the job, in each language.
    alert = Alert(alert_id="x", kind=K.KILLED, created=10.0, run_name="llama", signal="SIGKILL",
                  reason=found.reason.code, reason_args=dict(found.reason.args), detail=found.detail,
                  job={"id": "4242", "launcher": "torchrun", "ranks": "4", "cause_rank": "3"})
    assert headline(alert) == "Killed by the OOM killer: llama"
    assert summary(alert, "zh") == found.reason.text("zh") and summary(alert) == found.detail


def test_a_user_sigterm_to_one_rank_is_the_cause_when_all_are_sigterms() -> None:
    job = _job(Death(at=7.0, final=FinalRecord("terminated", 7.0, signal="SIGTERM")),
               Death(at=6.0, status=ending_of(15)), None)
    found = verdict(job, None, None)
    assert found.kind is K.TERMINATED and found.cause is job.members[1001]
    assert found.detail.endswith("is stopping the other ranks (1 of 2 stopped so far)")


def test_crash_from_the_error_file_carries_the_traceback() -> None:
    job = _job(Death(at=2.0, status=ending_of(1 << 8), message="RuntimeError: boom",
                     traceback="Traceback ...\n"),
               Death(at=2.1, final=FinalRecord("terminated", 2.1, signal="SIGTERM")))
    found = verdict(job, None, None)
    assert found.kind is K.CRASHED and found.error == "Traceback ...\n"
    assert "rank 0 (local rank 0, host gpu7, pid 1000) raised RuntimeError: boom" in found.detail


def test_all_clean_is_finished() -> None:
    job = _job(Death(at=1.0, final=FinalRecord("finished", 1.0)), Death(at=1.0, status=ending_of(0 << 8)),
               Death(at=1.0, status=None))
    found = verdict(job, None, None)
    assert found.kind is K.FINISHED and found.cause is None
    assert found.detail == "Job 4242: all 3 local ranks finished (1 without an exit status seen)"


def test_a_scheduler_ending_names_sigterms_but_not_an_oom() -> None:
    ending = slurm.SlurmEnding(K.TIME_LIMIT, Reason("slurm_time_limit", {"limit": "01:00:00"}))
    sigterms = _job(Death(at=1.0, final=FinalRecord("terminated", 1.0, signal="SIGTERM")),
                    Death(at=1.0, status=ending_of(15)), launcher="slurm")
    found = verdict(sigterms, None, ending)
    assert found.kind is K.TIME_LIMIT
    assert found.detail == ("Job 4242: Slurm ended the job at its time limit (01:00:00); "
                            "2 of 2 local ranks stopped")
    oom = _job(Death(at=1.0, status=ending_of(9), oom=Reason("oom_kernel", {"line": "..."})),
               launcher="slurm")
    assert verdict(oom, None, ending).kind is K.KILLED


@pytest.mark.parametrize(("death", "kind"), [
    (Death(0, final=FinalRecord("aborted", 0)), K.ABORTED),
    (Death(0, final=FinalRecord("crashed", 0, error="Traceback\nValueError: x")), K.CRASHED),
    (Death(0, status=ending_of(2 << 8)), K.CRASHED),
    # One classifier (sentinel.model.exit_status.ending_kind) wherever a death is seen:
    (Death(0, status=ending_of(11)), K.CRASHED),  # SIGSEGV: its own native code
    (Death(0, status=ending_of(9)), K.KILLED),
    (Death(0, status=ending_of(2)), K.ABORTED),  # SIGINT
    (Death(0, status=ending_of(15)), K.TERMINATED),
    (Death(0, final=FinalRecord("killed", 0, signal="SIGKILL")), K.KILLED),  # `sentinel run` recorded it
    (Death(0), K.KILLED),
])
def test_outcome_of_one_rank(death: Death, kind: AlertKind) -> None:
    assert outcome(death)[0] is kind


def test_a_job_alert_reads_as_one_sentence() -> None:
    alert = Alert(alert_id="x", kind=K.KILLED, created=10.0, run_name="llama", hostname="gpu7", pid=1003,
                  detail="Job 4242: rank 3 (...) was killed by the OOM killer; torchrun stopped the others",
                  job={"id": "4242", "launcher": "torchrun", "ranks": "4", "cause_rank": "3"})
    assert summary(alert) == alert.detail
    assert ("Job", "torchrun job 4242, rank 3, 4 local ranks") in facts(alert)
    assert ("作业", "torchrun 作业 4242，rank 3，本机 4 个 rank") in facts(alert, "zh")
    assert "Cause" not in render_text(alert)  # said once, in the summary


# ------------------------------------------------------------ NVIDIA Xid lines

# Real kernel lines, each from a public report.
XID_SAMPLES = [
    # https://github.com/madMAx43v3r/chia-gigahorse/issues/301 (dmesg)
    ("[14328.198504] NVRM: Xid (PCI:0000:0a:00): 31, pid=13332, name=cuda_plot_k32_v, Ch 00000010, "
     "intr 00000000. MMU Fault: ENGINE CE2 HUBCLIENT_CE0 faulted @ 0x7f29_5b8c9000. "
     "Fault is of type FAULT_PRIV_VIOLATION ACCESS_TYPE_VIRT_READ", 31, "0000:0a:00", 13332, False),
    ("[14370.688139] NVRM: Xid (PCI:0000:0a:00): 45, pid='<unknown>', name=<unknown>, Ch 00000008",
     45, "0000:0a:00", None, False),
    # https://github.com/NVIDIA/open-gpu-kernel-modules/issues/1150
    ("kernel: NVRM: Xid (PCI:0000:dc:00): 45, pid=1818990, name=python3, Ch 00000001 "
     "caused by previous Xid 149",
     45, "0000:dc:00", 1818990, False),
    # https://modal.com/docs/guide/gpu-health
    ("NVRM: Xid (PCI:0000:c6:00): 79, pid=1101234, name=nvc:[driver], GPU has fallen off the bus.",
     79, "0000:c6:00", 1101234, True),
    ("NVRM: Xid (PCI:0000:b1:00): 79, GPU has fallen off the bus.", 79, "0000:b1:00", None, True),
    # https://github.com/stas00/ml-engineering compute/accelerator/nvidia/debug.md
    ("NVRM: Xid (PCI:0000:10:1c): 63, pid=1896, Row Remapper: New row marked for remapping, "
     "reset gpu to activate.",
     63, "0000:10:1c", 1896, False),
    # https://github.com/leptonai/gpud/pull/1174 (kmsg input quoted in the description)
    ("NVRM: Xid (PCI:0000:9b:00): 94, pid=1234, name=python3, Contained ECC error",
     94, "0000:9b:00", 1234, True),
    # https://pastebin.com/NGng33SB (an older driver: no "PCI:")
    ("NVRM: Xid (0000:01:00): 31, Ch 0000000b, engmask 00000101, intr 10000000",
     31, "0000:01:00", None, False),
]


@pytest.mark.parametrize(("line", "code", "bus", "pid", "node_fault"), XID_SAMPLES)
def test_xid_lines(line: str, code: int, bus: str, pid: int | None, node_fault: bool) -> None:
    hit = xid.parse_xid_line(line, 12.5)
    assert hit is not None
    assert (hit.code, hit.bus, hit.pid, hit.node_fault, hit.since_boot) == (code, bus, pid, node_fault, 12.5)
    assert hit.line.startswith("NVRM: Xid") and len(hit.line) <= 240


def test_xid_meanings_cover_the_codes_that_matter() -> None:
    assert xid.MEANINGS[79].words["en"].startswith("GPU has fallen off the bus")
    assert xid.MEANINGS[48].words["en"].startswith("double-bit ECC")
    assert all(xid.MEANINGS[c].node_fault for c in (48, 64, 74, 79, 94, 95, 119, 120, 154))
    assert not any(xid.MEANINGS[c].node_fault for c in (13, 31, 43, 45))
    assert all(set(m.words) == set(LANGUAGES) for m in [*xid.MEANINGS.values(), xid.UNKNOWN])
    unknown = xid.parse_xid_line("NVRM: Xid (PCI:0000:01:00): 999, whatever")
    assert unknown is not None and not unknown.node_fault and "catalogue" in unknown.meaning.words["en"]


@pytest.mark.parametrize("line", ["NVRM: GPU 0000:41:00.0: RmInitAdapter failed! (0x62:0x40:2404)",
                                  "Out of memory: Killed process 1 (x)", "NVRM: Xid (PCI:zz): 79, x", ""])
def test_not_xid_lines(line: str) -> None:
    assert xid.parse_xid_line(line) is None


def test_kmsg_records_feed_gpu_faults_per_process() -> None:
    faults = xid.GpuFaults()
    me = ProcessIdentity.current()
    started = me.start_ticks / os.sysconf("SC_CLK_TCK")
    after = int((started + 5) * 1e6)
    before = int(max(0.0, started - 50) * 1e6)
    faults.feed(f"3,100,{after},-;NVRM: Xid (PCI:0000:3b:00): 13, pid={me.pid}, name=python, "
                "Graphics Exception".encode())
    faults.feed(f"3,101,{before},-;NVRM: Xid (PCI:0000:3b:00): 79, pid={me.pid}, GPU has fallen off the bus."
                .encode())  # before this process started: an earlier owner of the pid
    faults.feed(b"6,102,1,-;eth0: link up")
    assert [h.code for h in faults.take_pending()] == [13, 79] and faults.take_pending() == []
    assert [h.code for h in faults.of_process(me)] == [13]
    [note] = faults.notes_for(me)
    assert note.text("en") == ("GPU PCI:0000:3b:00 Xid 13 (graphics engine exception: usually the "
                               "application (an illegal or out-of-range access))")
    assert note.text("zh") == ("GPU PCI:0000:3b:00 Xid 13"
                               "（图形引擎异常：通常是应用程序的问题（非法或越界访问））")


# ------------------------------------------------------------ NCCL watchdog

NCCL_SAMPLES = [
    # https://github.com/hiyouga/LlamaFactory/issues/7396
    ("[80746] [rank0]:[E321 02:07:08.408271257 ProcessGroupNCCL.cpp:607] [Rank 0] Watchdog caught collective "
     "operation timeout: WorkNCCL(SeqNum=1580, OpType=ALLREDUCE, NumelIn=466119168, NumelOut=466119168, "
     "Timeout(ms)=600000) ran for 600060 milliseconds before timing out.",
     "NCCL watchdog timeout: rank 0: ALLREDUCE #1580 did not complete in 600s (timeout 600s); "
     "a peer rank died or hung"),
    # https://github.com/OFA-Sys/OFA/issues/271 (an older torch: no Numel fields)
    ("[E ProcessGroupNCCL.cpp:737] [Rank 1] Watchdog caught collective operation timeout: "
     "WorkNCCL(SeqNum=469508, OpType=ALLREDUCE, Timeout(ms)=1800000) ran for 1802212 milliseconds "
     "before timing out.",
     "NCCL watchdog timeout: rank 1: ALLREDUCE #469508 did not complete in 1802s (timeout 1800s); "
     "a peer rank died or hung"),
]


@pytest.mark.parametrize(("text", "expected"), NCCL_SAMPLES)
def test_nccl_watchdog_timeouts(text: str, expected: str) -> None:
    found = nccl.explain(f"Traceback (most recent call last):\n...\nRuntimeError: {text}\n")
    assert found is not None and found.text("en") == expected
    assert "NCCL 看门狗超时" in (found.text("zh") or "")


def test_no_nccl_story_without_one() -> None:
    assert nccl.explain("RuntimeError: CUDA out of memory") is None
    assert nccl.explain(None) is None


# ------------------------------------------------------------ Slurm's answers

# `scontrol show job -o` fields on the test cluster (Slurm 22.05), at and after the ending.
@pytest.mark.parametrize(("fields", "restarts", "kind"), [
    ({"JobState": "COMPLETING", "Reason": "TimeLimit", "TimeLimit": "00:01:00"}, 0, K.TIME_LIMIT),
    ({"JobState": "TIMEOUT", "Reason": "TimeLimit", "TimeLimit": "00:01:00"}, 0, K.TIME_LIMIT),
    ({"JobState": "CANCELLED", "Reason": "None"}, 0, K.CANCELLED),
    ({"JobState": "PENDING", "Reason": "BeginTime", "Restarts": "1"}, 0, K.PREEMPTED),
    ({"JobState": "PREEMPTED", "Reason": "None"}, 0, K.PREEMPTED),
    ({"JobState": "NODE_FAIL", "Reason": "NodeDown"}, 0, K.NODE_FAILURE),
    ({"JobState": "PENDING", "Reason": "BeginTime", "Restarts": "1"}, 1, None),  # this very attempt
    ({"JobState": "COMPLETING", "Reason": "None", "Restarts": "1"}, 0, None),  # not settled yet
    ({"JobState": "FAILED", "Reason": "NonZeroExitCode"}, 0, None),
    ({"JobState": "OUT_OF_MEMORY"}, 0, None),
])
def test_slurm_classify(fields: dict, restarts: int, kind: AlertKind | None) -> None:
    found = slurm.classify(fields, restarts)
    assert (found.kind if found else None) is kind


def test_scontrol_one_line_output_is_parsed() -> None:
    line = ("JobId=4 JobName=job.sh UserId=root(0) JobState=COMPLETING Reason=TimeLimit Dependency=(null) "
            "Requeue=1 Restarts=0 BatchFlag=1 TimeLimit=00:01:00 StartTime=2026-12-01T22:10:17 "
            "EndTime=2026-12-01T22:11:42 Command=/tmp/sl/job.sh\n")
    fields = slurm.parse_show_job(line)
    assert fields == {"JobId": "4", "JobName": "job.sh", "JobState": "COMPLETING", "Reason": "TimeLimit",
                      "Restarts": "0", "TimeLimit": "00:01:00", "StartTime": "2026-12-01T22:10:17",
                      "EndTime": "2026-12-01T22:11:42"}
    assert not slurm.is_settled(fields) and slurm.is_settled({"JobState": "TIMEOUT"})


def test_time_limit_from_the_end_time_without_scontrol() -> None:
    assert slurm.by_end_time(1000.0, "SIGTERM", 1001.0) is not None
    assert slurm.by_end_time(1000.0, "SIGTERM", 900.0) is None  # long before the end: someone else
    assert slurm.by_end_time(1000.0, "SIGKILL", 1001.0) is None
    assert slurm.by_end_time(None, "SIGTERM", 1001.0) is None
    assert slurm.env_time("1796163077") == 1796163077.0 and slurm.env_time("soon") is None
