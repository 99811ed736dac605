"""The spool: the on-disk contract between a training process and the daemon.

This module owns the format; the in-process writer and the daemon both import
it, and nothing else reads or writes spool files directly. Stdlib only.

Layout, format version 1::

    <spool>/                     0700 for a user spool; 1777 (sticky) when shared
      daemon.json                DaemonLiveness: the daemon's pid + start ticks
      .daemon/                   the daemon's own state (outbox, archive); 0700
      <run_id>/                  one directory per run, 0700, made by the run
        run.json                 RunRecord: who the run is and where to alert
        beat.json                Progress: rewritten every heartbeat interval
        final.json               FinalRecord: written once, when the run ends
        msg/<seq:08d>.json       Message: queued user messages, in order

``run.json`` may carry ``job`` (a ``JobRecord``): the process is one rank of
a job started by a launcher (torchrun, DeepSpeed, Accelerate, Slurm). It
names the job, the rank and the launcher's agent process, from the
environment the launcher gave the rank (``sentinel.jobs`` reads it).

``run_id`` is ``<UTC yyyymmddThhmmss>-<pid>-<6 hex>``; names starting with "."
are never runs. Every file is one JSON object with ``"v": 1`` and is written
atomically (a hidden temporary file in the same directory, then ``rename``),
mode 0600, so a reader sees the old file or the new one, never half of one.

Readers are hostile-input safe: they never follow symlinks, refuse anything
that is not a regular file, cap the size they read (``MAX_FILE_BYTES``), and
raise ``SpoolFormatError`` for a malformed, truncated or unknown-version file.

Times are wall-clock seconds since the epoch (float). A new field may be added
without a version bump (readers ignore unknown fields); removing or changing
the meaning of one bumps ``FORMAT_VERSION``.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import stat
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, Optional, Union

FORMAT_VERSION = 1

SYSTEM_SPOOL = Path("/var/lib/sentinel/spool")
ENV_SPOOL = "SENTINEL_SPOOL"

RUN_FILE = "run.json"
BEAT_FILE = "beat.json"
FINAL_FILE = "final.json"
MESSAGE_DIR = "msg"
DAEMON_FILE = "daemon.json"
DAEMON_STATE_DIR = ".daemon"

MAX_FILE_BYTES = 256 * 1024
ERROR_TAIL_BYTES = 8 * 1024
MESSAGE_MAX_CHARS = 8 * 1024
MAX_SCALARS = 16
CMDLINE_MAX_CHARS = 4096
LABEL_MAX_CHARS = 1024

FINAL_STATES = ("finished", "crashed", "aborted", "terminated")

_RUN_ID_RE = re.compile(r"^[0-9]{8}T[0-9]{6}-[0-9]{1,10}-[0-9a-f]{6}$")
_MESSAGE_RE = re.compile(r"^[0-9]{8}\.json$")

Channel = Union[str, dict]  # a configured channel's name, or an inline channel


class SpoolFormatError(ValueError):
    """A spool file is unreadable, malformed, oversized or of another version."""


# ---------------------------------------------------------------- locations


def spool_dir(env: Optional[Mapping[str, str]] = None) -> Path:
    """Where runs and the daemon meet, by the same rule on both sides.

    ``$SENTINEL_SPOOL`` if set; else the system spool if it exists and this
    user may write to it; else ``$XDG_STATE_HOME/sentinel/spool``.
    """
    env = os.environ if env is None else env
    if env.get(ENV_SPOOL):
        return Path(env[ENV_SPOOL]).expanduser()
    if SYSTEM_SPOOL.is_dir() and os.access(SYSTEM_SPOOL, os.W_OK | os.X_OK):
        return SYSTEM_SPOOL
    state_home = env.get("XDG_STATE_HOME") or os.path.join(
        env.get("HOME") or os.path.expanduser("~"), ".local", "state"
    )
    return Path(state_home) / "sentinel" / "spool"


def new_run_id(pid: Optional[int] = None, now: Optional[float] = None) -> str:
    pid = os.getpid() if pid is None else pid
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(time.time() if now is None else now))
    return f"{stamp}-{pid}-{_random_hex(3)}"


def _random_hex(nbytes: int) -> str:
    # os.urandom, not the secrets module: that one imports ~20 ms of modules
    # (hmac, hashlib, random) into every training process for six hex digits.
    return os.urandom(nbytes).hex()


def is_run_id(name: str) -> bool:
    return bool(_RUN_ID_RE.match(name))


class RunPaths:
    """File names inside one run directory."""

    def __init__(self, spool: Path, run_id: str) -> None:
        self.run_id = run_id
        self.dir = Path(spool) / run_id
        self.run = self.dir / RUN_FILE
        self.beat = self.dir / BEAT_FILE
        self.final = self.dir / FINAL_FILE
        self.messages = self.dir / MESSAGE_DIR

    def message(self, seq: int) -> Path:
        return self.messages / f"{seq:08d}.json"


# ---------------------------------------------------------------- records


def _cap_tail(text: Optional[str], limit_bytes: int) -> Optional[str]:
    """Keep the end of ``text`` within ``limit_bytes`` of UTF-8: a traceback's
    last lines say what went wrong."""
    if text is None:
        return None
    data = text.encode("utf-8", "replace")
    if len(data) <= limit_bytes:
        return text
    return "…" + data[-(limit_bytes - 3) :].decode("utf-8", "ignore")


def _cap(text: Optional[str], limit: int) -> Optional[str]:
    if text is None:
        return None
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def cap_scalars(scalars: Mapping[str, Any]) -> dict[str, float]:
    """The last few numeric scalars, at most ``MAX_SCALARS``, finite floats only."""
    out: dict[str, float] = {}
    for key, value in scalars.items():
        if len(out) >= MAX_SCALARS:
            break
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if number != number or number in (float("inf"), float("-inf")):
            continue  # JSON has no NaN/inf; say nothing rather than lie
        out[_cap(str(key), 128) or ""] = number
    return out


@dataclass
class RunRecord:
    """Who the run is, how to recognise its process, and where to alert."""

    run_id: str
    pid: int
    start_ticks: int
    boot_id: str
    hostname: str
    uid: int
    user: str
    cmdline: list[str]
    cwd: str
    started: float
    heartbeat_interval: float
    stall_timeout: Optional[float] = None  # None: the daemon's default
    name: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    channels: list[Channel] = field(default_factory=list)  # empty: daemon defaults
    language: Optional[str] = None
    source: str = "watch"  # watch | swanlab | run
    version: str = ""
    job: Optional[JobRecord] = None  # a rank of a launched job; None: a lone process

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["job"] = self.job.to_dict() if self.job is not None else None
        data["cmdline"] = _cap_cmdline(self.cmdline)
        data["labels"] = {
            str(k)[:64]: _cap(str(v), LABEL_MAX_CHARS) for k, v in self.labels.items() if v is not None
        }
        data["name"] = _cap(self.name, LABEL_MAX_CHARS)
        return {"v": FORMAT_VERSION, **data}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunRecord:
        rec = _build(cls, data)
        _expect(is_run_id(rec.run_id), "run_id is not a run id")
        _expect(_is_int(rec.pid) and rec.pid > 0, "pid must be a positive integer")
        _expect(_is_int(rec.start_ticks) and rec.start_ticks >= 0, "start_ticks must be an integer")
        _expect(_is_int(rec.uid) and rec.uid >= 0, "uid must be an integer")
        _expect(_is_number(rec.started), "started must be a number")
        _expect(_is_number(rec.heartbeat_interval) and rec.heartbeat_interval > 0,
                "heartbeat_interval must be a positive number")
        _expect(rec.stall_timeout is None or (_is_number(rec.stall_timeout) and rec.stall_timeout > 0),
                "stall_timeout must be a positive number or null")
        _expect(isinstance(rec.cmdline, list) and all(isinstance(a, str) for a in rec.cmdline),
                "cmdline must be a list of strings")
        _expect(isinstance(rec.labels, dict) and all(isinstance(v, str) for v in rec.labels.values()),
                "labels must map names to strings")
        _expect(isinstance(rec.channels, list) and all(isinstance(c, (str, dict)) for c in rec.channels),
                "channels must be a list of names or objects")
        for name in ("boot_id", "hostname", "user", "cwd", "name", "source", "version"):
            _expect(isinstance(getattr(rec, name), str), f"{name} must be a string")
        if rec.job is not None:
            rec.job = JobRecord.from_dict(rec.job)
        return rec


# Slurm variables a job record keeps (``SLURM_`` prefix dropped, lower case).
SLURM_FIELDS = ("job_id", "step_id", "procid", "localid", "nodeid", "job_name", "array_job_id",
                "array_task_id", "restart_count", "job_start_time", "job_end_time")
_JOB_INTS = ("rank", "local_rank", "world_size", "local_world_size", "group_rank", "restart_count",
             "agent_pid", "agent_start_ticks")
_JOB_TEXT_MAX = 256


@dataclass
class JobRecord:
    """One rank of a job: how the launcher named it (inside ``run.json``).

    Every field comes from the rank's environment and its parent process; a
    missing variable is None / empty. ``agent_pid`` + ``agent_start_ticks``
    name the launcher process whose children the ranks on this host are.
    """

    launcher: str  # torchrun | deepspeed | accelerate | slurm | launcher
    job_id: str  # what people call it: the Slurm job id, else the rendezvous id
    rank: Optional[int] = None
    local_rank: Optional[int] = None
    world_size: Optional[int] = None
    local_world_size: Optional[int] = None
    group_rank: Optional[int] = None  # the node's rank among the job's nodes
    restart_count: Optional[int] = None  # TORCHELASTIC_RESTART_COUNT: which attempt
    rdzv_id: str = ""  # TORCHELASTIC_RUN_ID
    master: str = ""  # MASTER_ADDR:MASTER_PORT
    agent_pid: Optional[int] = None
    agent_start_ticks: Optional[int] = None
    error_file: str = ""  # TORCHELASTIC_ERROR_FILE: where @record writes a rank's traceback
    slurm: dict[str, str] = field(default_factory=dict)  # SLURM_FIELDS that were set

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for name in ("launcher", "job_id", "rdzv_id", "master"):
            data[name] = _cap(data[name], _JOB_TEXT_MAX)
        data["error_file"] = _cap(self.error_file, 4096)
        data["slurm"] = {k: _cap(str(v), _JOB_TEXT_MAX) for k, v in self.slurm.items() if k in SLURM_FIELDS}
        return data

    @classmethod
    def from_dict(cls, data: Any) -> JobRecord:
        _expect(isinstance(data, Mapping), "job must be an object")
        known = {f.name for f in fields(cls)}
        try:
            rec = cls(**{k: v for k, v in data.items() if k in known})
        except TypeError as exc:
            raise SpoolFormatError(f"job: missing field: {exc}") from None
        for name in _JOB_INTS:
            value = getattr(rec, name)
            _expect(value is None or (_is_int(value) and 0 <= value < 2**31),
                    f"job.{name} must be a non-negative integer or null")
        for name in ("launcher", "job_id", "rdzv_id", "master", "error_file"):
            _expect(isinstance(getattr(rec, name), str), f"job.{name} must be a string")
        _expect(isinstance(rec.slurm, dict) and all(isinstance(v, str) for v in rec.slurm.values()),
                "job.slurm must map names to strings")
        rec.slurm = {k: v[:_JOB_TEXT_MAX] for k, v in rec.slurm.items() if k in SLURM_FIELDS}
        for name in ("launcher", "job_id", "rdzv_id", "master"):
            setattr(rec, name, getattr(rec, name)[:_JOB_TEXT_MAX])
        rec.error_file = rec.error_file[:4096]
        return rec


def _cap_cmdline(argv: list[str]) -> list[str]:
    out, total = [], 0
    for arg in argv:
        if total + len(arg) > CMDLINE_MAX_CHARS:
            out.append("…")
            break
        out.append(arg)
        total += len(arg) + 1
    return out


@dataclass
class Progress:
    """The heartbeat: written by a background thread every heartbeat interval.

    ``beat`` proves the process is scheduled; ``last_progress`` is when the
    training code last reported a step or a metric (a hang that leaves the
    heartbeat thread running still shows as no progress). ``pause_until`` is
    set by ``expect_pause``: no stall is reported before it.
    """

    beat: float
    seq: int
    last_progress: Optional[float] = None
    step: Optional[int] = None
    scalars: dict[str, float] = field(default_factory=dict)
    pause_until: Optional[float] = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["scalars"] = cap_scalars(self.scalars)
        return {"v": FORMAT_VERSION, **data}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Progress:
        rec = _build(cls, data)
        _expect(_is_number(rec.beat), "beat must be a number")
        _expect(_is_int(rec.seq), "seq must be an integer")
        _expect(rec.last_progress is None or _is_number(rec.last_progress), "last_progress must be a number")
        _expect(rec.step is None or _is_int(rec.step), "step must be an integer")
        _expect(rec.pause_until is None or _is_number(rec.pause_until), "pause_until must be a number")
        _expect(isinstance(rec.scalars, dict), "scalars must be an object")
        rec.scalars = cap_scalars(rec.scalars)
        return rec


@dataclass
class FinalRecord:
    """How the run ended, as the process itself saw it."""

    state: str  # one of FINAL_STATES
    ended: float
    exit_code: Optional[int] = None
    signal: Optional[str] = None  # "SIGTERM" for state "terminated"
    error: Optional[str] = None  # traceback tail, at most ERROR_TAIL_BYTES
    step: Optional[int] = None
    scalars: dict[str, float] = field(default_factory=dict)
    # No daemon was alive, so the process itself delivered this ending to the
    # run's inline channels; a daemon that starts later must not send it again.
    delivered_inline: bool = False

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["error"] = _cap_tail(self.error, ERROR_TAIL_BYTES)
        data["scalars"] = cap_scalars(self.scalars)
        return {"v": FORMAT_VERSION, **data}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FinalRecord:
        rec = _build(cls, data)
        _expect(rec.state in FINAL_STATES, f"state must be one of {', '.join(FINAL_STATES)}")
        _expect(_is_number(rec.ended), "ended must be a number")
        _expect(rec.exit_code is None or _is_int(rec.exit_code), "exit_code must be an integer")
        _expect(rec.signal is None or isinstance(rec.signal, str), "signal must be a string")
        _expect(rec.error is None or isinstance(rec.error, str), "error must be a string")
        _expect(rec.step is None or _is_int(rec.step), "step must be an integer")
        _expect(isinstance(rec.scalars, dict), "scalars must be an object")
        _expect(isinstance(rec.delivered_inline, bool), "delivered_inline must be true or false")
        rec.error = _cap_tail(rec.error, ERROR_TAIL_BYTES)
        rec.scalars = cap_scalars(rec.scalars)
        return rec


@dataclass
class Message:
    """A user message (``send_msg`` / ``run.send``) queued for delivery."""

    seq: int
    time: float
    text: str

    def to_dict(self) -> dict[str, Any]:
        return {"v": FORMAT_VERSION, "seq": self.seq, "time": self.time,
                "text": _cap(self.text, MESSAGE_MAX_CHARS)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Message:
        rec = _build(cls, data)
        _expect(_is_int(rec.seq) and rec.seq >= 0, "seq must be a non-negative integer")
        _expect(_is_number(rec.time), "time must be a number")
        _expect(isinstance(rec.text, str), "text must be a string")
        rec.text = _cap(rec.text, MESSAGE_MAX_CHARS) or ""
        return rec


@dataclass
class DaemonLiveness:
    """Tells training processes that a daemon is watching this spool."""

    pid: int
    start_ticks: int
    boot_id: str
    written: float
    version: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"v": FORMAT_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DaemonLiveness:
        rec = _build(cls, data)
        _expect(_is_int(rec.pid) and rec.pid > 0, "pid must be a positive integer")
        _expect(_is_int(rec.start_ticks), "start_ticks must be an integer")
        _expect(isinstance(rec.boot_id, str), "boot_id must be a string")
        _expect(_is_number(rec.written), "written must be a number")
        return rec


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _expect(condition: bool, reason: str) -> None:
    if not condition:
        raise SpoolFormatError(reason)


def _build(cls: type, data: Mapping[str, Any]) -> Any:
    """Make ``cls`` from a decoded object: version checked, unknown keys ignored."""
    if not isinstance(data, Mapping):
        raise SpoolFormatError("not a JSON object")
    version = data.get("v")
    if version != FORMAT_VERSION:
        raise SpoolFormatError(f"unknown format version {version!r} (this reader knows {FORMAT_VERSION})")
    known = {f.name for f in fields(cls)}
    try:
        return cls(**{k: v for k, v in data.items() if k in known})
    except TypeError as exc:  # a required field is missing
        raise SpoolFormatError(f"missing field: {exc}") from None


# ---------------------------------------------------------------- I/O


def make_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) as 0700; an existing one must be a real
    directory, not a symlink."""
    with contextlib.suppress(FileExistsError):
        os.makedirs(path, mode=0o700, exist_ok=True)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise NotADirectoryError(errno.ENOTDIR, "not a directory (or a symlink)", str(path))


def write_json(path: Path, data: Mapping[str, Any], *, durable: bool = False, mode: int = 0o600) -> None:
    """Atomically replace ``path`` with ``data``: temporary file + rename.

    ``durable`` also fsyncs file and directory, for records that must survive
    a power cut (the final record, the daemon's outbox). ``mode`` is for the
    few files others must read (the daemon's liveness file in a shared spool).
    """
    path = Path(path)
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{_random_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        try:
            if mode != 0o600:
                os.fchmod(fd, mode)  # exact, whatever the umask
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view) :]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_json(path: Path, max_bytes: int = MAX_FILE_BYTES) -> tuple[dict[str, Any], os.stat_result]:
    """Read one spool file safely; return the object and the file's stat.

    Never follows a symlink, never blocks on a FIFO, never reads more than
    ``max_bytes``. Raises FileNotFoundError if absent, SpoolFormatError for
    anything else that is wrong with it.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise
        if exc.errno == errno.ELOOP:
            raise SpoolFormatError("is a symlink") from None
        raise SpoolFormatError(f"cannot open: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SpoolFormatError("not a regular file")
        if st.st_size > max_bytes:
            raise SpoolFormatError(f"too large ({st.st_size} bytes, limit {max_bytes})")
        chunks, remaining = [], max_bytes + 1
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 65536))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        raw = b"".join(chunks)
    finally:
        os.close(fd)
    if len(raw) > max_bytes:
        raise SpoolFormatError(f"too large (over {max_bytes} bytes)")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise SpoolFormatError(f"not valid JSON ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(data, dict):
        raise SpoolFormatError("not a JSON object")
    return data, st


def read_run(path: Path) -> tuple[RunRecord, os.stat_result]:
    data, st = read_json(path)
    return RunRecord.from_dict(data), st


def read_progress(path: Path) -> Progress:
    return Progress.from_dict(read_json(path)[0])


def read_final(path: Path) -> FinalRecord:
    return FinalRecord.from_dict(read_json(path)[0])


def read_message(path: Path) -> Message:
    return Message.from_dict(read_json(path)[0])


def read_daemon_liveness(spool: Path) -> tuple[DaemonLiveness, os.stat_result]:
    data, st = read_json(Path(spool) / DAEMON_FILE)
    return DaemonLiveness.from_dict(data), st


def list_messages(paths: RunPaths) -> list[tuple[int, Path]]:
    """Queued message files of a run, oldest first."""
    try:
        names = os.listdir(paths.messages)
    except OSError:
        return []
    return sorted((int(n[:8]), paths.messages / n) for n in names if _MESSAGE_RE.match(n))


def list_run_ids(spool: Path) -> list[str]:
    """Names in the spool that look like run directories (not checked further)."""
    try:
        names = os.listdir(spool)
    except OSError:
        return []
    return sorted(n for n in names if is_run_id(n))
