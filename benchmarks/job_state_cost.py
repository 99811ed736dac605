"""Cost of keeping jobs' state across a restart: on the daemon's loop, on its writer thread, at start.

    python3 benchmarks/job_state_cost.py [--tiny]

What the loop pays when a job changes (a rank found, a rank's death, the
alert): ``JobStateStore.save`` encodes the job and hands the bytes to the
writer thread; the write itself (temporary file, fsync, rename, fsync of the
directory) runs on that thread, so it is timed apart. Both for a 4-rank job
and for the largest job one host can hold (1,024 ranks). At start,
``JobStateStore.load`` reads and checks every saved job: timed for a
directory of saved 4-rank jobs. The kill-to-alert latency of a real torchrun
job with this in place is measured by ``benchmarks/job_alert.py``.
"""

from __future__ import annotations

import _common

_common.ensure_venv()

import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from pathlib import Path  # noqa: E402

from sentinel.daemon import job_state  # noqa: E402
from sentinel.daemon.job_watch import Death, Job, Member  # noqa: E402
from sentinel.formats.safe_json import write_bytes  # noqa: E402
from sentinel.formats.spool import JobRecord  # noqa: E402
from sentinel.host.procid import ProcessIdentity  # noqa: E402
from sentinel.model.exit_status import ending_of  # noqa: E402

SIZES = {"full": dict(calls=500, writes=200, saved=1000), "tiny": dict(calls=20, writes=10, saved=20)}


def a_job(ranks: int, key: str) -> Job:
    record = JobRecord("torchrun", "bench", rank=0, local_rank=0, rdzv_id="a" * 36,
                       error_file="/tmp/torchelastic_abc/attempt_0/0/error.json")
    job = Job(key, 1000, record, "gpu-node-17")
    for rank in range(ranks):
        member = Member(ProcessIdentity(10_000 + rank, 123_456 + rank, "b" * 36), rank, rank,
                        f"/tmp/torchelastic_abc/attempt_0/{rank}/error.json",
                        run_id="20261207T120000-10000-abcdef" if rank == 0 else None)
        if rank == 3:
            member.death, member.gone = Death(at=1.0, status=ending_of(9)), True
        job.members[member.ident.pid] = member
    return job


def time_loop_side(store: job_state.JobStateStore, job: Job, calls: int) -> list[float]:
    users = Counter({job.uid: 1})
    out = []
    for i in range(calls):
        t0 = time.perf_counter_ns()
        store.save([job], [], users, float(i))
        out.append(_common.ms(time.perf_counter_ns() - t0))
    return out


def time_writes(directory: Path, job: Job, writes: int) -> tuple[list[float], int]:
    raw = job_state.payload(job_state.encode(job, 1.0, ""))
    assert raw is not None
    path = directory / job_state.file_name(job.key)
    out = []
    for _ in range(writes):
        t0 = time.perf_counter_ns()
        write_bytes(path, raw, durable=True)
        out.append(_common.ms(time.perf_counter_ns() - t0))
    return out, len(raw)


def main() -> int:
    args = _common.parser(__doc__.splitlines()[0]).parse_args()
    started = time.monotonic()
    size = SIZES["tiny" if args.tiny else "full"]
    work = Path(tempfile.mkdtemp(prefix="sentinel-bench-jobstate-"))
    rows, loop_p50 = [], {}
    try:
        for ranks in (4, 1024):
            directory = work / f"jobs-{ranks}"
            directory.mkdir(mode=0o700)
            job = a_job(ranks, f"1000/agent:1:2/job-{ranks}")
            store = job_state.JobStateStore(directory)  # its thread not started: only the hand-over is timed
            loop = _common.summary(time_loop_side(store, job, size["calls"]))
            writes, nbytes = time_writes(directory, job, size["writes"])
            disk = _common.summary(writes)
            loop_p50[ranks] = loop["p50"]
            rows.append((ranks, f"{nbytes:,}", _common.fmt(loop["p50"], 3), _common.fmt(loop["max"], 3),
                         _common.fmt(disk["p50"], 2), _common.fmt(disk["p90"], 2)))
            print(f"{ranks} ranks: loop p50 {loop['p50']:.3f} ms, write p50 {disk['p50']:.2f} ms", flush=True)
        directory = work / "start"
        directory.mkdir(mode=0o700)
        for i in range(size["saved"]):
            job = a_job(4, f"1000/agent:{i}:1/job")
            raw = job_state.payload(job_state.encode(job, 1.0, ""))
            assert raw is not None
            (directory / job_state.file_name(job.key)).write_bytes(raw)
        t0 = time.perf_counter_ns()
        loaded = job_state.JobStateStore(directory).load()
        load_ms = _common.ms(time.perf_counter_ns() - t0)
        assert len(loaded) == size["saved"], len(loaded)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    body = "\n".join([
        f"`JobStateStore.save` (encode + hand-over, on the loop) {size['calls']} times per job, "
        "`safe_json.write_bytes` (tmp + fsync + rename + directory fsync, on the writer thread) "
        f"{size['writes']} times, "
        f"on the temp directory's file system. Rank 3 of each job has died (its exit status is saved).", "",
        _common.table(["ranks", "file bytes", "loop p50 ms", "loop max ms", "write p50 ms", "write p90 ms"],
                      rows), "",
        f"Start-up: {size['saved']} saved 4-rank jobs read and checked in {load_ms:.0f} ms "
        f"({load_ms / size['saved']:.3f} ms each); at most {job_state.MAX_FILES} files are read.", "",
        "The loop pays the encoding only, after the pass's verdicts (their alerts are enqueued first); "
        "a job's alert waits for its ranks' teardown (every rank ended, or 2 s after the first failure), "
        "and the disk is never waited for in between. Kill-to-alert with this in place: section 8 "
        "(job_alert).", "",
    ])
    verdicts = [
        _common.Verdict("job_state", "saving a 4-rank job, on the loop (p50)", f"{loop_p50[4]:.3f} ms",
                        "reported", None, "the write runs on its own thread"),
        _common.Verdict("job_state", "saving a 1,024-rank job, on the loop (p50)", f"{loop_p50[1024]:.3f} ms",
                        "reported", None, "the largest job one host's daemon watches"),
        _common.Verdict("job_state", "reading saved jobs at start",
                        f"{load_ms / size['saved']:.3f} ms per job", "reported", None,
                        f"{size['saved']} jobs"),
    ]
    _common.publish(args, "job_state", "15. Jobs' state across a restart: what keeping it costs", body,
                    verdicts, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
