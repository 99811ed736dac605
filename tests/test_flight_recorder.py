"""Flight Recorder dumps: summarised from pickles in PyTorch's real layout, and
hostile pickles or paths refused by the reader (nothing executed, nothing read).

gloo on CPU writes no Flight Recorder dump, so the test writes each rank's dump
with ``pickle.dumps`` of plain dicts and lists in the layout of
torch/csrc/distributed/c10d/FlightRecorderDetail.hpp (version "2.10").
"""

from __future__ import annotations

import os
import pickle
import shlex
from pathlib import Path
from typing import Any

import pytest

from sentinel.daemon import flight_recorder as fr

UID = os.getuid()


def entry(seq: int, state: str, name: str = "nccl:all_reduce", pg: int = 0) -> dict[str, Any]:
    return {"record_id": seq, "pg_id": pg, "process_group": ("0", "default_pg"),
            "thread_name": "pt_main_thread", "thread_id": "140000", "collective_seq_id": seq,
            "p2p_seq_id": 0, "op_id": seq, "profiling_name": name, "time_created_ns": 1_700_000_000 + seq,
            "input_sizes": [[1024]], "input_dtypes": ["Float"], "output_sizes": [[1024]],
            "output_dtypes": ["Float"], "state": state, "time_discovered_started_ns": None,
            "time_discovered_completed_ns": None, "retired": state == "completed", "timeout_ms": 600000,
            "is_p2p": False, "frames": [{"name": "all_reduce", "filename": "train.py", "line": 42}]}


def dump(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"version": "2.10", "comm_lib_version": "2.21.5",
            "pg_config": {"0": {"name": "0", "desc": "default_pg", "ranks": "[0, 1, 2, 3]"}},
            "pg_status": {"0": {"last_enqueued_collective": entries[-1]["collective_seq_id"],
                                "last_started_collective": -1, "last_completed_collective": -1}},
            "entries": entries}


def write(prefix: Path, rank: int, data: Any) -> str:
    path = f"{prefix}{rank}"
    Path(path).write_bytes(data if isinstance(data, bytes) else pickle.dumps(data))
    return path


def read(prefix: Path, rank: int) -> tuple[Any, str]:
    return fr.read_dump(f"{prefix}{rank}", UID)


def test_the_rank_that_never_entered_the_collective_is_named(tmp_path: Path) -> None:
    prefix = tmp_path / "nccl_trace_rank_"
    for rank in range(4):
        last = 11 if rank == 2 else 12
        entries = [entry(seq, "completed") for seq in range(1, last)] + [entry(last, "started")]
        write(prefix, rank, dump(entries))
    dumps = {rank: read(prefix, rank)[0] for rank in range(4)}
    assert fr.summarise(dumps) == "collective #12 (nccl:all_reduce, process group 0): rank 2 missing"


def test_every_rank_stuck_in_the_same_collective_says_so(tmp_path: Path) -> None:
    prefix = tmp_path / "trace_"
    for rank in range(2):
        write(prefix, rank, dump([entry(1, "completed"), entry(2, "started" if rank else "scheduled")]))
    dumps = {rank: read(prefix, rank)[0] for rank in range(2)}
    assert fr.summarise(dumps) == \
        "collective #2 (nccl:all_reduce, process group 0): scheduled/started on every rank, not completed"
    done = {0: dump([entry(1, "completed")]), 1: dump([entry(1, "completed")])}
    assert fr.summarise(done) == ""


def test_the_job_environment_says_where_the_dumps_are() -> None:
    env = {fr.ENV_BUFFER: "2000", fr.ENV_TEMP_FILE: "/scratch/fr_"}
    assert fr.enabled(env) and fr.dump_path(env, 3) == "/scratch/fr_3"
    assert not fr.enabled({fr.ENV_BUFFER: "0"}) and not fr.enabled({})
    assert fr.dump_path({}, 1) == "/tmp/nccl_trace_rank_1"


class Planted:
    """An object whose unpickling would run a shell command."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return os.system, (self.command,)


def test_a_pickle_with_a_global_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    hostile = dump([entry(1, "started")])
    hostile["entries"][0]["frames"] = Planted(f"touch {shlex.quote(str(marker))}")
    raw = pickle.dumps(hostile)
    assert b"system" in raw  # the pickle really names os.system
    write(tmp_path / "r", 0, raw)
    data, why = read(tmp_path / "r", 0)
    assert data is None and "refused the global" in why and "system" in why
    assert not marker.exists()
    with pytest.raises(pickle.UnpicklingError):
        fr.loads(pickle.dumps(Path("/etc/shadow")))  # a harmless class is refused too


def test_hostile_paths_yield_a_reason_and_no_bytes(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(pickle.dumps(dump([entry(1, "started")])))
    (tmp_path / "s0").symlink_to(secret)
    assert read(tmp_path / "s", 0) == (None, "s0: a symlink")
    os.mkfifo(tmp_path / "f0")  # O_NONBLOCK: opening a FIFO with no writer does not hang
    assert read(tmp_path / "f", 0) == (None, "f0: not a regular file")
    with open(tmp_path / "h0", "wb") as f:
        f.truncate(fr.MAX_DUMP_BYTES + 1)
    assert read(tmp_path / "h", 0) == (None, "h0: over 16 MiB")
    assert read(tmp_path / "n", 0) == (None, "no dump")
    assert fr.read_dump(str(secret), UID + 1)[1] == "secret: not the run's user's file"
    write(tmp_path / "g", 0, b"\x80\x04garbage")
    assert read(tmp_path / "g", 0)[1].startswith("g0: not a plain Flight Recorder dump")
    write(tmp_path / "l", 0, [1, 2, 3])
    assert read(tmp_path / "l", 0) == (None, "l0: not a Flight Recorder dump")
