"""The spool: the on-disk contract between a training process and the daemon.

This module owns the run directories' format; the in-process writer and the
daemon both import it, and nothing else reads or writes run files directly.
Drop directories (``.mutes/``, ``.resend/``) are ``sentinel.formats.drop_dirs``'s.
Stdlib only.

Layout, format version 1::

    <spool>/                     0700 for a user spool; 1777 (sticky) when shared
      daemon.json                DaemonLiveness: the daemon's pid + start ticks
      .daemon/                   the daemon's own state (outbox, archive); 0700
      <run_id>/                  one directory per run, 0700, made by the run
        run.json                 RunRecord: who the run is and where to alert
        beat.json                Progress: rewritten every heartbeat interval
        live.bin                 the latest step and scalars, memory-mapped (sentinel.formats.live_file)
        final.json               FinalRecord: written once, when the run ends
        msg/<seq:08d>.json       Message: queued user messages, in order
        stacks.txt               faulthandler dumps on request (``sentinel.formats.evidence``)
        crash.txt                faulthandler's dump of a fatal signal (``sentinel.formats.evidence``)

``run.json`` may carry ``stack_signal`` (a signal name, ``"SIGRTMIN+7"``):
the process dumps every thread's stack into ``stacks.txt`` when it receives
that signal. The daemon sends it only when the record says so, and only
``sentinel.formats.evidence.STACK_SIGNAL``; any other value is read as null.

``run.json`` may carry ``pidns``: the PID namespace its ``pid`` and
``watch_threads`` are numbered in (``"<st_dev>:<st_ino>"`` of
``/proc/self/ns/pid``, see ``sentinel.host.pidns``); a daemon in another namespace
(the run in a container) finds the process by it. Absent or empty: the
daemon's own namespace, as before the field existed.

``run.json`` may carry ``job`` (a ``JobRecord``): the process is one rank of
a job started by a launcher (torchrun, DeepSpeed, Accelerate, Slurm). It
names the job, the rank and the launcher's agent process, from the
environment the launcher gave the rank (``sentinel.host.jobs`` reads it).

``run_id`` is ``<UTC yyyymmddThhmmss>-<pid>-<6 hex>``; names starting with "."
are never runs. Every file is one JSON object with ``"v": 1`` and is written
atomically (a hidden temporary file in the same directory, then ``rename``),
mode 0600, so a reader sees the old file or the new one, never half of one.

Files are read and written through ``sentinel.formats.safe_json``: atomic writes;
reads that never follow a symlink (the daemon reads relative to directory
fds, ``open_dir`` + ``read_json(name, dir_fd=)``), refuse anything but a
regular file, cap the size, refuse ``NaN``/``Infinity`` and deep nesting, and
raise ``SpoolFormatError`` for a malformed, truncated or oversized file. Each
record is checked field by field (``sentinel.formats.record_rules``): every number
finite and within bounds, an unknown version refused. A bad field of
``run.json`` or ``final.json`` other than the run's identity is replaced by
its default and named in the reader's ``problems``, so one bad value never
hides a run. Writers never write a non-finite number.

Times are wall-clock seconds since the epoch (float). A new field may be added
without a version bump (readers ignore unknown fields); removing or changing
the meaning of one bumps ``FORMAT_VERSION``.

``live.bin`` is the one binary file, mapped into the training process; its
layout and reader are in ``sentinel.formats.live_file``.
"""

from __future__ import annotations

import math
import os
import re
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Mapping, Optional, Union

from sentinel.common.rules import MAX_LABELS, MAX_RUN_CHANNELS
from sentinel.common.safetext import escape_undecodable
from sentinel.formats.record_rules import (
    STRING,
    Rule,
    clean_strings,
    clean_text,
    expect,
    is_int,
    is_interval,
    is_seq,
    is_step,
    is_str,
    is_strings,
    is_time,
    keep,
    optional,
    parse_record,
)
from sentinel.formats.safe_json import SpoolFormatError, read_json
from sentinel.host.pidns import is_pidns
from sentinel.model import endings

FORMAT_VERSION = 1

SYSTEM_SPOOL = Path("/var/lib/sentinel/spool")
ENV_SPOOL = "SENTINEL_SPOOL"

RUN_FILE = "run.json"
BEAT_FILE = "beat.json"
FINAL_FILE = "final.json"
LIVE_FILE = "live.bin"
MESSAGE_DIR = "msg"
DAEMON_FILE = "daemon.json"
DAEMON_STATE_DIR = ".daemon"

ERROR_TAIL_BYTES = 8 * 1024
MESSAGE_MAX_CHARS = 8 * 1024
MAX_SCALARS = 16
HISTORY_POINTS = 48  # samples of each scalar kept in beat.json, one per heartbeat with progress
CMDLINE_MAX_CHARS = 4096
LABEL_MAX_CHARS = 1024
DEFAULT_HEARTBEAT_INTERVAL = 10.0

# States a process records itself: the rows of the endings table it can know.
FINAL_STATES = endings.FINAL_STATES

_RUN_ID_RE = re.compile(r"^[0-9]{8}T[0-9]{6}-[0-9]{1,10}-[0-9a-f]{6}$")
_MESSAGE_RE = re.compile(r"^[0-9]{8}\.json$")

Channel = Union[str, dict]  # a configured channel's name, or an inline channel


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
        self.live = self.dir / LIVE_FILE
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
        if isinstance(value, bool):
            continue
        try:
            number = float(value)
        except (TypeError, ValueError, OverflowError):
            continue
        if not math.isfinite(number):
            continue  # JSON has no NaN/inf; say nothing rather than lie
        out[_cap(escape_undecodable(str(key)), 128) or ""] = number
    return out


def _finite(value: Any) -> Optional[float]:
    """``value`` as a finite float, or None (not a number, NaN, inf, too large)."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def cap_history(history: Mapping[str, Any]) -> dict[str, list[float]]:
    """At most MAX_SCALARS series of at most HISTORY_POINTS finite numbers each."""
    out: dict[str, list[float]] = {}
    for key, series in history.items():
        if len(out) >= MAX_SCALARS:
            break
        if not isinstance(series, list):
            continue
        points = [v for v in map(_finite, series[-HISTORY_POINTS:]) if v is not None]
        if points:
            out[escape_undecodable(_cap(str(key), 128) or "")] = points
    return out


MAX_WATCH_THREADS = 4
MAX_UNWATCHABLE = 1000  # run ids daemon.json lists as unwatchable


def _valid_watch_threads(value: Any) -> bool:
    return isinstance(value, list) and len(value) <= MAX_WATCH_THREADS and all(
        isinstance(pair, list) and len(pair) == 2 and is_int(pair[0]) and pair[0] > 0
        and is_int(pair[1]) and pair[1] >= 0
        for pair in value
    )



def _labels(value: Any) -> bool:
    return (isinstance(value, dict) and len(value) <= MAX_LABELS
            and all(isinstance(v, str) for v in value.values()))


def _channels(value: Any) -> bool:
    return (isinstance(value, list) and len(value) <= MAX_RUN_CHANNELS
            and all(isinstance(c, (str, dict)) for c in value))



def _clean_labels(value: dict[str, str]) -> dict[str, str]:
    return {escape_undecodable(str(k)): escape_undecodable(v) for k, v in value.items()}



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
    alert_on: Optional[list[str]] = None  # states that alert for this run; None: the daemon's
    # Long-lived sub-threads of the process, [tid, start_ticks] each (start
    # ticks as in /proc/<pid>/task/<tid>/stat), whose exits the daemon may
    # watch: one dies with the process long before the process's own
    # teardown ends. Optional; a malformed list is read as empty.
    watch_threads: list[list[int]] = field(default_factory=list)
    job: Optional[JobRecord] = None  # a rank of a launched job; None: a lone process
    # The PID namespace ``pid`` and the thread ids are numbered in, as
    # "<st_dev>:<st_ino>" of /proc/self/ns/pid (``sentinel.host.pidns``). Empty: not
    # recorded (an older recorder), read as the daemon's own namespace.
    pidns: str = ""
    # the process dumps its stacks on this signal (sentinel.formats.evidence)
    stack_signal: Optional[str] = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["job"] = self.job.to_dict() if self.job is not None else None
        data["cmdline"] = _cap_cmdline(self.cmdline)
        data["labels"] = {
            str(k)[:64]: _cap(str(v), LABEL_MAX_CHARS) for k, v in self.labels.items() if v is not None
        }
        data["name"] = _cap(self.name, LABEL_MAX_CHARS)
        return {"v": FORMAT_VERSION, **data}

    # Identity and ownership are essential: without them the run's process
    # cannot be recognised. Everything else falls back to a default.
    RULES: ClassVar[Mapping[str, Rule]] = {
        "run_id": Rule(lambda v: isinstance(v, str) and is_run_id(v), "is not a run id", essential=True),
        "pid": Rule(lambda v: is_int(v) and 0 < v < 2**31, "must be a positive integer", essential=True),
        "start_ticks": Rule(lambda v: is_int(v) and 0 <= v < 2**63, "must be an integer", essential=True),
        "boot_id": Rule(is_str, "must be a string", essential=True),
        "uid": Rule(lambda v: is_int(v) and 0 <= v < 2**32, "must be an integer", essential=True),
        "hostname": STRING,
        "user": STRING,
        "cmdline": Rule(is_strings, "must be a list of strings", clean=clean_strings),
        "cwd": STRING,
        "started": Rule(is_time, "must be a time (seconds since the epoch)"),
        "heartbeat_interval": Rule(is_interval, "must be a positive number of seconds"),
        "stall_timeout": Rule(optional(is_interval), "must be a positive number of seconds or null"),
        "name": STRING,
        "labels": Rule(_labels, f"must map at most {MAX_LABELS} names to strings", clean=_clean_labels),
        "channels": Rule(_channels, f"must be a list of at most {MAX_RUN_CHANNELS} names or objects",
                          clean=keep),
        "language": Rule(optional(is_str), "must be a string or null"),
        "source": STRING,
        "version": STRING,
        "alert_on": Rule(optional(lambda v: isinstance(v, list) and len(v) <= 16
                                    and all(isinstance(x, str) for x in v)),
                          "must be a list of state names or null"),
        # Only a speed-up: with a bad value the run is still watched by its pid.
        "watch_threads": Rule(_valid_watch_threads,
                               f"must be at most {MAX_WATCH_THREADS} [thread id, start ticks] pairs",
                               clean=keep),
        # A bad job record makes the run a lone process: still watched, alerted on its own.
        # Part of the identity: read wrongly, the daemon would watch another process.
        "pidns": Rule(lambda v: v == "" or (isinstance(v, str) and is_pidns(v)),
                       'must be "<device>:<inode>" of a PID namespace', essential=True),
        "job": Rule(lambda v: v is None or _job_problem(v) is None, "must be a job object or null",
                     clean=lambda v: None if v is None else JobRecord.from_dict(v),
                     explain=lambda v: f"is not a job record ({_job_problem(v)})"),
        "stack_signal": Rule(optional(lambda v: isinstance(v, str) and len(v) <= 32),
                              "must be a signal name or null"),
    }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], problems: Optional[list[str]] = None,
                  fallback_time: Optional[float] = None) -> RunRecord:
        """The record; a bad field other than the run's identity gets its
        default and is described in ``problems``. ``fallback_time`` stands in
        for a bad start time (the file's mtime, say)."""
        defaults = {"hostname": "", "user": "", "cmdline": [], "cwd": "",
                    "started": time.time() if fallback_time is None else fallback_time,
                    "heartbeat_interval": DEFAULT_HEARTBEAT_INTERVAL}
        return parse_record(cls, data, cls.RULES, FORMAT_VERSION, problems, defaults)


# Slurm variables a job record keeps (``SLURM_`` prefix dropped, lower case).
SLURM_FIELDS = ("job_id", "step_id", "procid", "localid", "nodeid", "job_name", "array_job_id",
                "array_task_id", "restart_count", "job_start_time", "job_end_time")
_JOB_INTS = ("rank", "local_rank", "world_size", "local_world_size", "group_rank", "restart_count",
             "agent_pid", "agent_start_ticks")
_JOB_TEXTS = ("launcher", "job_id", "rdzv_id", "master")
_JOB_TEXT_MAX = 256
_ERROR_FILE_MAX = 4096


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
        for name in _JOB_TEXTS:
            data[name] = _cap(data[name], _JOB_TEXT_MAX)
        data["error_file"] = _cap(self.error_file, _ERROR_FILE_MAX)
        data["slurm"] = {k: _cap(str(v), _JOB_TEXT_MAX) for k, v in self.slurm.items() if k in SLURM_FIELDS}
        return data

    @classmethod
    def from_dict(cls, data: Any) -> JobRecord:
        """The job record in ``data``; SpoolFormatError names the first bad field."""
        expect(isinstance(data, Mapping), "job must be an object")
        known = {f.name for f in fields(cls)}
        try:
            rec = cls(**{k: v for k, v in data.items() if k in known})
        except TypeError as exc:
            raise SpoolFormatError(f"job: missing field: {exc}") from None
        for name in _JOB_INTS:
            value = getattr(rec, name)
            expect(value is None or (is_int(value) and 0 <= value < 2**31),
                    f"job.{name} must be a non-negative integer or null")
        for name in (*_JOB_TEXTS, "error_file"):
            expect(isinstance(getattr(rec, name), str), f"job.{name} must be a string")
        expect(isinstance(rec.slurm, dict) and all(isinstance(v, str) for v in rec.slurm.values()),
                "job.slurm must map names to strings")
        rec.slurm = {k: escape_undecodable(v[:_JOB_TEXT_MAX]) for k, v in rec.slurm.items()
                     if k in SLURM_FIELDS}
        for name in _JOB_TEXTS:
            setattr(rec, name, escape_undecodable(getattr(rec, name)[:_JOB_TEXT_MAX]))
        rec.error_file = rec.error_file[:_ERROR_FILE_MAX]  # a path: opened as given, never shown raw
        return rec


def _job_problem(value: Any) -> Optional[str]:
    """Why ``value`` is no job record, or None if it is one."""
    try:
        JobRecord.from_dict(value)
    except SpoolFormatError as exc:
        return str(exc)
    return None


OUTPUT_LINES = 20
OUTPUT_LINE_CHARS = 300


def _cap_output(lines: list[str]) -> list[str]:
    return [line[:OUTPUT_LINE_CHARS] for line in lines[-OUTPUT_LINES:]]


def _cap_cmdline(argv: list[str]) -> list[str]:
    out, total = [], 0
    for arg in argv:
        if total + len(arg) > CMDLINE_MAX_CHARS:
            out.append("…")
            break
        out.append(arg)
        total += len(arg) + 1
    return out


def _scalars(value: Any) -> bool:
    return isinstance(value, dict)


_SCALARS = Rule(_scalars, "must be an object", clean=cap_scalars)


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
    # The last HISTORY_POINTS values of each scalar, oldest first, in the
    # order the scalars were first logged: what a sparkline draws.
    history: dict[str, list[float]] = field(default_factory=dict)
    # The last lines the process printed (opt-in capture, sentinel.training.output_tail),
    # oldest first: at most OUTPUT_LINES of at most OUTPUT_LINE_CHARS each.
    output: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["scalars"] = cap_scalars(self.scalars)
        data["history"] = cap_history(self.history)
        data["output"] = _cap_output(self.output)
        return {"v": FORMAT_VERSION, **data}

    # A heartbeat is small and rewritten every few seconds: a bad one is
    # refused whole and the last good one stays in use.
    RULES: ClassVar[Mapping[str, Rule]] = {
        "beat": Rule(is_time, "must be a number (a time)", essential=True),
        "seq": Rule(is_seq, "must be an integer", essential=True),
        "last_progress": Rule(optional(is_time), "must be a number (a time)", essential=True),
        "step": Rule(optional(is_step), "must be an integer", essential=True),
        "scalars": Rule(_scalars, "must be an object", essential=True, clean=cap_scalars),
        "pause_until": Rule(optional(is_time), "must be a number (a time)", essential=True),
        "history": Rule(_scalars, "must be an object", clean=cap_history),
        "output": Rule(lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
                        "must be a list of strings", clean=lambda v: _cap_output(clean_strings(v))),
    }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], problems: Optional[list[str]] = None,
                  fallback_time: Optional[float] = None) -> Progress:
        return parse_record(cls, data, cls.RULES, FORMAT_VERSION, problems)


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

    # The state is what the record says; any other bad field gets its
    # default (a bad ``delivered_inline`` means "not delivered": a repeat
    # beats a loss).
    RULES: ClassVar[Mapping[str, Rule]] = {
        "state": Rule(lambda v: v in FINAL_STATES, f"must be one of {', '.join(FINAL_STATES)}",
                       essential=True),
        "ended": Rule(is_time, "must be a number (a time)"),
        "exit_code": Rule(optional(lambda v: is_int(v) and -(2**31) <= v < 2**31), "must be an integer"),
        "signal": Rule(optional(is_str), "must be a string"),
        "error": Rule(optional(is_str), "must be a string",
                       clean=lambda v: _cap_tail(clean_text(v), ERROR_TAIL_BYTES)),
        "step": Rule(optional(is_step), "must be an integer"),
        "scalars": _SCALARS,
        "delivered_inline": Rule(lambda v: isinstance(v, bool), "must be true or false"),
    }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], problems: Optional[list[str]] = None,
                  fallback_time: Optional[float] = None) -> FinalRecord:
        defaults = {"ended": time.time() if fallback_time is None else fallback_time}
        return parse_record(cls, data, cls.RULES, FORMAT_VERSION, problems, defaults)


@dataclass
class Message:
    """A user message (``send_msg`` / ``run.send``) queued for delivery."""

    seq: int
    time: float
    text: str

    def to_dict(self) -> dict[str, Any]:
        return {"v": FORMAT_VERSION, "seq": self.seq, "time": self.time,
                "text": _cap(self.text, MESSAGE_MAX_CHARS)}

    RULES: ClassVar[Mapping[str, Rule]] = {
        "seq": Rule(is_seq, "must be a non-negative integer", essential=True),
        "time": Rule(is_time, "must be a number", essential=True),
        "text": Rule(is_str, "must be a string", essential=True,
                      clean=lambda v: _cap(clean_text(v), MESSAGE_MAX_CHARS) or ""),
    }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], problems: Optional[list[str]] = None,
                  fallback_time: Optional[float] = None) -> Message:
        return parse_record(cls, data, cls.RULES, FORMAT_VERSION, problems)


MAX_PUBLISHED_CHANNELS = 1000


def _is_channel_name(value: Any) -> bool:
    from sentinel.common.rules import channel_name

    try:
        return channel_name(value) == value
    except ValueError:
        return False


@dataclass
class DaemonLiveness:
    """Tells training processes that a daemon is watching this spool."""

    pid: int
    start_ticks: int
    boot_id: str
    version: str = ""
    # The PID namespace ``pid`` is numbered in ("<st_dev>:<st_ino>"; "": unknown).
    # A reader in another namespace (a training process in a container) cannot
    # check the pid; it trusts a file rewritten within ``refresh`` seconds instead.
    pidns: str = ""
    refresh: Optional[float] = None  # seconds between rewrites (the rescan interval); None: unknown
    # Runs whose process this daemon cannot see (another PID namespace, not
    # visible from its own): watched by heartbeat and final record only.
    unwatchable: list[str] = field(default_factory=list)
    # The names of the daemon's configured channels (never their options), so a
    # run naming one the daemon does not know is refused at the call; None: a
    # daemon that does not say.
    channels: Optional[list[str]] = None

    def to_dict(self) -> dict[str, Any]:
        return {"v": FORMAT_VERSION, **asdict(self)}

    RULES: ClassVar[Mapping[str, Rule]] = {
        "pid": Rule(lambda v: is_int(v) and 0 < v < 2**31, "must be a positive integer", essential=True),
        "start_ticks": Rule(lambda v: is_int(v) and 0 <= v < 2**63, "must be an integer", essential=True),
        "boot_id": Rule(is_str, "must be a string", essential=True),
        "version": Rule(is_str, "must be a string", essential=True),
        "pidns": Rule(lambda v: v == "" or (isinstance(v, str) and is_pidns(v)),
                       'must be "<device>:<inode>" of a PID namespace'),
        "refresh": Rule(optional(is_interval), "must be a positive number of seconds or null"),
        "unwatchable": Rule(lambda v: isinstance(v, list) and len(v) <= MAX_UNWATCHABLE
                             and all(isinstance(r, str) and is_run_id(r) for r in v),
                             f"must be a list of at most {MAX_UNWATCHABLE} run ids", clean=keep),
        "channels": Rule(lambda v: v is None or (isinstance(v, list) and len(v) <= MAX_PUBLISHED_CHANNELS
                                                  and all(_is_channel_name(n) for n in v)),
                          "must be a list of channel names", clean=lambda v: None if v is None else list(v)),
    }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], problems: Optional[list[str]] = None,
                  fallback_time: Optional[float] = None) -> DaemonLiveness:
        return parse_record(cls, data, cls.RULES, FORMAT_VERSION, problems)


# ---------------------------------------------------------------- reading


def message_names(msg_fd: int) -> list[tuple[int, str]]:
    """Queued message file names in the open ``msg/`` directory, oldest first."""
    try:
        names = os.listdir(msg_fd)
    except OSError:
        return []
    return sorted((int(n[:8]), n) for n in names if _MESSAGE_RE.match(n))


def read_run(path: Union[Path, str], problems: Optional[list[str]] = None, *,
             dir_fd: Optional[int] = None) -> tuple[RunRecord, os.stat_result]:
    """The run record (bad fields other than its identity replaced by
    defaults and described in ``problems``) and the file's stat."""
    data, st = read_json(path, dir_fd=dir_fd)
    return RunRecord.from_dict(data, problems, fallback_time=st.st_mtime), st


def read_progress(path: Path) -> Progress:
    return Progress.from_dict(read_json(path)[0])


def read_final(path: Path, problems: Optional[list[str]] = None) -> FinalRecord:
    data, st = read_json(path)
    return FinalRecord.from_dict(data, problems, fallback_time=st.st_mtime)


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


