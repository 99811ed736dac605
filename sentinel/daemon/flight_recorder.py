"""PyTorch's NCCL Flight Recorder dumps, read without unpickling an object.

A job that sets ``TORCH_NCCL_TRACE_BUFFER_SIZE`` (> 0) keeps, in each rank,
a ring of its last collectives; on a timeout, or when
``TORCH_NCCL_DEBUG_INFO_PIPE_FILE`` is written to, each rank dumps it into
``<TORCH_NCCL_DEBUG_INFO_TEMP_FILE><rank>`` (default ``/tmp/nccl_trace_rank_<rank>``)
as a pickle (torch/csrc/distributed/c10d/FlightRecorder.hpp, version "2.10")::

    {"version": "2.10", "comm_lib_version": "...",
     "pg_config": {pg_name: {"name": ..., "desc": ..., "ranks": "[0, 1, 2, 3]"}},
     "pg_status": {pg_id: {"last_enqueued_collective": N, "last_started_collective": N,
                           "last_completed_collective": N}},
     "entries": [{"record_id": int, "pg_id": int, "process_group": (name, desc),
                  "collective_seq_id": int, "p2p_seq_id": int, "op_id": int,
                  "profiling_name": "nccl:all_reduce", "state": "scheduled" | "started"
                  | "completed", "is_p2p": bool, "retired": bool, "timeout_ms": int,
                  "time_created_ns": int, "frames": [...], "input_sizes": [...], ...}]}

The file is the user's and a root daemon reads it, so it is hostile:

* opened relative to its directory's fd with ``O_NOFOLLOW | O_NOCTTY |
  O_NONBLOCK``; it must be a regular file owned by the run's user and at most
  ``MAX_DUMP_BYTES`` (else nothing is read, only a reason);
* unpickled by ``SafeUnpickler``, whose ``find_class`` refuses every global
  and which has no ``persistent_load``: only the pickle opcodes for plain
  dicts, lists, tuples, strings, numbers, booleans and None can succeed, so
  no code of the file's choosing ever runs. (A dump whose lists the
  TorchScript pickler specialised — ``torch.jit._pickle.build_intlist`` — is
  refused as well: a refusal costs a summary, never a safety.)

``summarise`` compares the ranks' collectives: the highest
``collective_seq_id`` some rank entered, and the ranks that never did:
"collective #12 (nccl:all_reduce, process group 0): rank 2 missing".
"""

from __future__ import annotations

import errno
import io
import os
import pickle
import stat
import time
from dataclasses import dataclass
from typing import Any, Optional

from sentinel.common.redact import redact
from sentinel.common.safetext import printable
from sentinel.daemon.oom import started_since_boot
from sentinel.host.procid import ProcessIdentity

ENV_BUFFER = "TORCH_NCCL_TRACE_BUFFER_SIZE"
ENV_TEMP_FILE = "TORCH_NCCL_DEBUG_INFO_TEMP_FILE"
ENV_PIPE_FILE = "TORCH_NCCL_DEBUG_INFO_PIPE_FILE"
DEFAULT_TEMP_FILE = "/tmp/nccl_trace_rank_"
MAX_DUMP_BYTES = 16 * 1024 * 1024  # 2,000 entries (the default ring) with frames: a few MiB
MAX_NAME_CHARS = 80


class SafeUnpickler(pickle.Unpickler):
    """Plain data only: every global (a class, a function) is refused."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refused the global {printable(module)[:80]}.{printable(name)[:80]}")


def loads(raw: bytes) -> Any:
    """The plain data a pickle holds; ``pickle.UnpicklingError`` (or another
    ``Exception``) for anything else."""
    return SafeUnpickler(io.BytesIO(raw)).load()


def enabled(env: dict[str, str]) -> bool:
    """The job asked for a Flight Recorder (a ring buffer of non-zero size)."""
    size = env.get(ENV_BUFFER, "").strip()
    return size.isdigit() and int(size) > 0


def dump_path(env: dict[str, str], rank: int) -> str:
    return f"{env.get(ENV_TEMP_FILE) or DEFAULT_TEMP_FILE}{rank}"


def read_dump(path: str, owner_uid: int, not_before: float = 0.0) -> tuple[Optional[dict[str, Any]], str]:
    """One rank's dump: (the dict, "") or (None, why not). A dump last written
    before ``not_before`` (wall clock: the rank's start) is an earlier job's."""
    directory, _, name = path.rpartition("/")
    if not name or name in (".", ".."):
        return None, f"{printable(path)[:200]}: not a file name"
    try:
        dir_fd = os.open(directory or ".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        return None, f"{printable(directory)[:200]}: {exc.strerror or exc}"
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC,
                     dir_fd=dir_fd)
    except FileNotFoundError:
        return None, "no dump"
    except OSError as exc:
        why = "a symlink" if exc.errno == errno.ELOOP else exc.strerror or str(exc)
        return None, f"{printable(name)[:200]}: {why}"
    finally:
        os.close(dir_fd)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None, f"{printable(name)[:200]}: not a regular file"
        if info.st_uid != owner_uid:
            return None, f"{printable(name)[:200]}: not the run's user's file"
        if info.st_size > MAX_DUMP_BYTES:
            return None, f"{printable(name)[:200]}: over {MAX_DUMP_BYTES // (1024 * 1024)} MiB"
        if info.st_mtime < not_before:
            return None, f"{printable(name)[:200]}: written before the rank started"
        with os.fdopen(fd, "rb", closefd=False) as f:
            raw = f.read(MAX_DUMP_BYTES + 1)
    finally:
        os.close(fd)
    if len(raw) > MAX_DUMP_BYTES:
        return None, f"{printable(name)[:200]}: over {MAX_DUMP_BYTES // (1024 * 1024)} MiB"
    try:
        data = loads(raw)
    except Exception as exc:  # any malformed pickle: hostile bytes, never a crash of the daemon
        return None, f"{printable(name)[:200]}: not a plain Flight Recorder dump ({printable(exc)[:200]})"
    if not isinstance(data, dict) or not isinstance(data.get("entries"), list):
        return None, f"{printable(name)[:200]}: not a Flight Recorder dump"
    return data, ""


def started_wall(ident: ProcessIdentity) -> float:
    """When ``ident`` started, on the wall clock (file times are on it)."""
    try:
        with open("/proc/uptime", encoding="ascii") as f:
            uptime = float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    return time.time() - uptime + started_since_boot(ident)


def job_summary(ranks: list[tuple[int, ProcessIdentity, dict[str, str]]], owner_uid: int) -> str:
    """The summary of the dumps the job's ranks (rank, process, environment)
    left since they started, where the job enabled the Flight Recorder; ""
    if fewer than two ranks left one (nothing to compare). Reads up to
    ``MAX_DUMP_BYTES`` per rank: call it off the daemon's loop."""
    dumps: dict[int, dict[str, Any]] = {}
    for rank, ident, env in ranks:
        if not enabled(env):
            continue
        data, _ = read_dump(dump_path(env, rank), owner_uid, not_before=started_wall(ident) - 1.0)
        if data is not None:
            dumps[rank] = data
    return summarise(dumps) if len(dumps) >= 2 else ""


@dataclass(frozen=True)
class Collective:
    seq: int
    name: str  # profiling_name: "nccl:all_reduce"
    state: str


def last_collectives(dump: dict[str, Any]) -> dict[int, Collective]:
    """Per process group id: the collective with the highest sequence id the rank entered."""
    found: dict[int, Collective] = {}
    for entry in dump.get("entries", []):
        if not isinstance(entry, dict) or entry.get("is_p2p") is True:
            continue
        pg, seq = entry.get("pg_id"), entry.get("collective_seq_id")
        if not isinstance(pg, int) or not isinstance(seq, int) or isinstance(seq, bool):
            continue
        if pg not in found or seq > found[pg].seq:
            name, state = entry.get("profiling_name"), entry.get("state")
            found[pg] = Collective(seq, _text(name), _text(state))
    return found


def summarise(dumps: dict[int, dict[str, Any]]) -> str:
    """'collective #12 (nccl:all_reduce, process group 0): rank 2 missing', per
    process group where the ranks disagree; where they agree but the last
    collective has not completed: 'collective #12 (...): started on every rank,
    not completed'. "" when there is nothing to say."""
    lasts = {rank: last_collectives(dump) for rank, dump in dumps.items()}
    groups = sorted({pg for per_rank in lasts.values() for pg in per_rank})
    said: list[str] = []
    for pg in groups:
        seen = {rank: per_rank.get(pg) for rank, per_rank in lasts.items()}
        top = max((c for c in seen.values() if c is not None), key=lambda c: c.seq)
        behind = sorted(rank for rank, c in seen.items() if c is None or c.seq < top.seq)
        head = f"collective #{top.seq} ({top.name or '?'}, process group {pg})"
        if behind:
            ranks = ", ".join(str(r) for r in behind)
            said.append(f"{head}: rank{'s' if len(behind) > 1 else ''} {ranks} missing")
        elif any(c is not None and c.state != "completed" for c in seen.values()):
            states = sorted({c.state for c in seen.values() if c is not None})
            said.append(f"{head}: {'/'.join(states)} on every rank, not completed")
    return "; ".join(said)


def _text(value: object) -> str:
    return redact(printable(value))[:MAX_NAME_CHARS] if isinstance(value, str) else ""
