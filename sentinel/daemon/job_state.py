"""A job's state on disk, so that a daemon restart mid-job forgets nothing.

The job watch (``sentinel.daemon.job_watch``) holds each job's ranks, how
they ended and whether the job was alerted in memory. This module owns a
copy of that in the daemon's state directory (``sentinel.formats.state_dir``):
its format, and the thread that writes it. At start ``job_restore`` brings
it back and judges the ranks that ended while no daemon was watching.

Layout (format version 1)::

    <state>/jobs/<sha256(job key)[:32]>.json     one file per job, 0600
    <state>/jobs/quarantine/<name>.<ns>.bad      files refused at start (at most QUARANTINE_KEEP)

    {"v": 1, "key": "<jobs.group_key>", "uid": 1000, "host": "node1",
     "pidns": "pid:[4026531836]",          # the daemon's PID namespace: what the pids mean
     "saved": 1700000000.5,
     "record": {...},                       # the job's spool.JobRecord (to_dict)
     "first_failure": null | time, "alerted_at": null | time,
     "members": [{"pid": 123, "start_ticks": 456, "boot_id": "...",
                  "rank": 3, "local_rank": 3, "error_file": "...",
                  "run_id": null | "<run id>",  # a recorded rank
                  "gone": false,
                  "death": null | {"at": time,
                                   "status": null | {"key": "killed", "signal": "SIGKILL", "exit_code": null},
                                   "oom": null | {"code": "oom_kernel", "args": {"line": "..."}},
                                   "message": null | "RuntimeError: boom", "traceback": null | "...",
                                   "down": false}}]}

Times are wall-clock seconds (the loop's ``now``). A recorded rank's final
record is not copied: it stays in the spool and is read again at start.

Writes are atomic and durable (temporary file, fsync, rename, fsync of the
directory: ``safe_json.write_bytes``) and happen on a thread of their own, after
the loop's pass that changed the job, so neither the disk nor the encoding
of a large job stands between a rank's death and its alert. Each write is
bounded (``MAX_FILE_BYTES``; tracebacks are dropped first), each user keeps
at most ``MAX_JOBS_PER_USER`` saved jobs, and a start reads at most
``MAX_FILES`` of them.

The state directory is the daemon's own (0700), but its bytes are still
read as hostile: never through a symlink, a regular file owned by the
daemon's uid only, size-capped, bounded JSON with NaN refused, every field
checked. A file that fails is logged once and moved to ``quarantine/``; the
other jobs load as usual.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import re
import stat
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from sentinel.daemon.job_facts import Job, Member
from sentinel.formats.safe_json import SpoolFormatError, encode_json, open_dir, read_json, write_bytes
from sentinel.formats.spool import JobRecord
from sentinel.host.procid import ProcessIdentity
from sentinel.model.endings import Reason
from sentinel.model.exit_status import Ending

log = logging.getLogger("sentinel.daemon.job_state")

FORMAT_VERSION = 1
MAX_FILE_BYTES = 512 * 1024  # 1,024 ranks of ~250 bytes each fit twice over
MAX_FILES = 4096  # read at start; more are left in place (and logged)
MAX_JOBS_PER_USER = 256  # saved jobs of one uid; more are watched, not saved
MAX_MEMBERS = 1024  # rank_finder.MAX_FOUND
SAVE_EVERY = 1.0  # a job that changes again is saved again at most this often, until its alert
QUARANTINE_DIR = "quarantine"
QUARANTINE_KEEP = 32  # the newest refused files kept for a look; older ones removed
_TEXT_MAX = 4096  # a key, a host, an error file path, a run id
_MESSAGE_MAX = 300
_TRACEBACK_MAX = 8 * 1024
_NAME = re.compile(r"^[0-9a-f]{32}\.json$")
_STATUS_KEYS = ("killed", "native_crash", "terminated", "signaled", "exited")
_OOM_CODES = ("oom_kernel", "oom_cgroup")

def file_name(key: str) -> str:
    """The job's file name: a digest, so no key can name a path."""
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:32] + ".json"


def own_pidns() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


# ---------------------------------------------------------------- encoding


def encode(job: Job, now: float, pidns: str) -> dict[str, Any]:
    """The file's object for ``job`` (see the module docstring)."""
    return {"v": FORMAT_VERSION, "key": job.key, "uid": job.uid, "host": job.host, "pidns": pidns,
            "saved": now, "record": job.record.to_dict(), "first_failure": job.first_failure,
            "alerted_at": job.alerted_at,
            "members": [_encode_member(m) for m in list(job.members.values())[:MAX_MEMBERS]]}


def _encode_member(member: Member) -> dict[str, Any]:
    death = member.death
    return {"pid": member.ident.pid, "start_ticks": member.ident.start_ticks, "boot_id": member.ident.boot_id,
            "rank": member.rank, "local_rank": member.local_rank, "error_file": member.error_file,
            "run_id": member.run_id, "gone": member.gone,
            "death": None if death is None else {
                "at": death.at,
                "status": None if death.status is None else {
                    "key": death.status.key, "signal": death.status.signal,
                    "exit_code": death.status.exit_code},
                "oom": None if death.oom is None else {
                    "code": death.oom.code, "args": {k: str(v) for k, v in death.oom.args.items()}},
                "message": death.message, "traceback": death.traceback, "down": death.down}}


def payload(data: dict[str, Any]) -> Optional[bytes]:
    """The encoded file, within ``MAX_FILE_BYTES`` (tracebacks dropped if need be); None if
    it cannot fit."""
    raw = encode_json(data)
    if len(raw) <= MAX_FILE_BYTES:
        return raw
    for member in data["members"]:
        if member["death"] is not None:
            member["death"]["traceback"] = None
    raw = encode_json(data)
    return raw if len(raw) <= MAX_FILE_BYTES else None


# ---------------------------------------------------------------- decoding


@dataclass
class SavedDeath:
    at: float
    status: Optional[Ending]
    oom: Optional[Reason]
    message: Optional[str]
    traceback: Optional[str]
    down: bool


@dataclass
class SavedMember:
    ident: ProcessIdentity
    rank: Optional[int]
    local_rank: Optional[int]
    error_file: str
    run_id: Optional[str]
    gone: bool
    death: Optional[SavedDeath]


@dataclass
class SavedJob:
    key: str
    uid: int
    host: str
    pidns: str
    saved: float
    record: JobRecord
    first_failure: Optional[float]
    alerted_at: Optional[float]
    members: list[SavedMember]


def _check(ok: bool, what: str) -> None:
    if not ok:
        raise SpoolFormatError(what)


def _is_int(value: Any, low: int = 0, high: int = 2**63) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value < high


def _is_time(value: Any) -> bool:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return number and math.isfinite(value) and value >= 0


def _opt(value: Any, test: Callable[[Any], bool]) -> bool:
    return value is None or test(value)


def _text(value: Any, limit: int = _TEXT_MAX) -> bool:
    return isinstance(value, str) and len(value) <= limit


def decode(data: Mapping[str, Any]) -> SavedJob:
    """The saved job in ``data``; SpoolFormatError names the first bad field."""
    _check(data.get("v") == FORMAT_VERSION,
           f"format version {data.get('v')!r}, this daemon reads {FORMAT_VERSION}")
    _check(_text(data.get("key")) and bool(data["key"]), "key must be a non-empty string")
    _check(_is_int(data.get("uid"), 0, 2**32), "uid must be a uid")
    _check(_text(data.get("host")), "host must be a string")
    _check(_text(data.get("pidns")), "pidns must be a string")
    _check(_is_time(data.get("saved")), "saved must be a time")
    for name in ("first_failure", "alerted_at"):
        _check(_opt(data.get(name), _is_time), f"{name} must be a time or null")
    record = JobRecord.from_dict(data.get("record"))
    members: Any = data.get("members")
    _check(isinstance(members, list) and len(members) <= MAX_MEMBERS,
           f"members must be a list of at most {MAX_MEMBERS}")
    saved = [_decode_member(m, i) for i, m in enumerate(members)]
    _check(len({m.ident.pid for m in saved}) == len(saved), "members: a pid appears twice")
    return SavedJob(data["key"], data["uid"], data["host"], data["pidns"], float(data["saved"]), record,
                    data.get("first_failure"), data.get("alerted_at"), saved)


def _decode_member(data: Any, index: int) -> SavedMember:
    where = f"members[{index}]"
    _check(isinstance(data, dict), f"{where} must be an object")
    _check(_is_int(data.get("pid"), 1, 2**31), f"{where}.pid must be a pid")
    _check(_is_int(data.get("start_ticks")), f"{where}.start_ticks must be a non-negative integer")
    _check(_text(data.get("boot_id"), 64), f"{where}.boot_id must be a string")
    for name in ("rank", "local_rank"):
        _check(_opt(data.get(name), lambda v: _is_int(v, 0, 2**31)), f"{where}.{name} must be a rank or null")
    _check(_text(data.get("error_file")), f"{where}.error_file must be a string")
    _check(_opt(data.get("run_id"), lambda v: _text(v, 255) and bool(v)), f"{where}.run_id must be a run id")
    _check(isinstance(data.get("gone"), bool), f"{where}.gone must be true or false")
    raw = data.get("death")
    death = None if raw is None else _decode_death(raw, f"{where}.death")
    ident = ProcessIdentity(data["pid"], data["start_ticks"], data["boot_id"])
    return SavedMember(ident, data.get("rank"), data.get("local_rank"), data["error_file"],
                       data.get("run_id"), data["gone"], death)


def _decode_death(data: Any, where: str) -> SavedDeath:
    _check(isinstance(data, dict), f"{where} must be an object")
    _check(_is_time(data.get("at")), f"{where}.at must be a time")
    status = data.get("status")
    ending = None
    if status is not None:
        _check(isinstance(status, dict) and status.get("key") in _STATUS_KEYS,
               f"{where}.status.key must be one of {', '.join(_STATUS_KEYS)}")
        _check(_opt(status.get("signal"), lambda v: _text(v, 32)), f"{where}.status.signal must be a string")
        _check(_opt(status.get("exit_code"), lambda v: _is_int(v, -(2**31), 2**31)),
               f"{where}.status.exit_code must be an integer")
        ending = Ending(status["key"], status.get("signal"), status.get("exit_code"))
    oom = data.get("oom")
    reason = None
    if oom is not None:
        args = oom.get("args") if isinstance(oom, dict) else None
        _check(isinstance(oom, dict) and oom.get("code") in _OOM_CODES and isinstance(args, dict)
               and len(args) <= 4 and all(_text(k, 32) and _text(v) for k, v in args.items()),
               f"{where}.oom must be an OOM reason")
        reason = Reason(oom["code"], dict(args))  # type: ignore[arg-type]
    _check(_opt(data.get("message"), lambda v: _text(v, _MESSAGE_MAX)), f"{where}.message must be a string")
    _check(_opt(data.get("traceback"), lambda v: _text(v, _TRACEBACK_MAX * 4)),
           f"{where}.traceback must be a string")
    _check(isinstance(data.get("down", False), bool), f"{where}.down must be true or false")
    return SavedDeath(float(data["at"]), ending, reason, data.get("message"), data.get("traceback"),
                      bool(data.get("down", False)))


# ---------------------------------------------------------------- the store


class JobStateStore:
    """The ``jobs/`` directory: loads at start, saves and removes on a writer thread."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.pidns = own_pidns()
        self._pending: dict[str, Optional[bytes]] = {}  # file name -> content (None: remove)
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: Optional[threading.Thread] = None
        self._refused_users: set[int] = set()  # users told once that their jobs are over the cap
        self._handed: dict[str, float] = {}  # job key -> when it was last handed to the thread
        self._deferred: set[str] = set()  # changed again within SAVE_EVERY: saved at next_due()

    # ------------------------------------------------------------ start

    def load(self) -> list[SavedJob]:
        """Every saved job that passes the checks; the others are logged and quarantined."""
        try:
            os.makedirs(self.directory, 0o700, exist_ok=True)
            dir_fd = open_dir(self.directory)
        except OSError as exc:
            log.error("cannot open the job state directory %s (%s): jobs start from scratch",
                      self.directory, exc)
            return []
        found: list[SavedJob] = []
        try:
            st = os.fstat(dir_fd)
            if st.st_uid != os.geteuid() or st.st_mode & 0o077:
                log.error("%s is not the daemon's private directory (uid %d, mode %03o): jobs start from "
                          "scratch", self.directory, st.st_uid, stat.S_IMODE(st.st_mode))
                return []
            names: list[str] = []
            with os.scandir(dir_fd) as entries:
                for entry in entries:
                    if entry.name == QUARANTINE_DIR:
                        continue
                    if len(names) >= MAX_FILES:
                        log.warning("more than %d saved jobs in %s: the rest are not read", MAX_FILES,
                                    self.directory)
                        break
                    names.append(entry.name)
            for name in sorted(names):
                if name.startswith(".") and name.endswith(".tmp"):
                    with contextlib.suppress(OSError):
                        os.unlink(name, dir_fd=dir_fd)  # a write cut short by a crash
                    continue
                saved = self._read(dir_fd, name)
                if saved is not None:
                    found.append(saved)
        finally:
            os.close(dir_fd)
        return found

    def _read(self, dir_fd: int, name: str) -> Optional[SavedJob]:
        try:
            if not _NAME.match(name):
                raise SpoolFormatError("not a job state file name")
            data, st = read_json(name, MAX_FILE_BYTES, dir_fd=dir_fd)
            if st.st_uid != os.geteuid():
                raise SpoolFormatError(f"owned by uid {st.st_uid}, not the daemon's")
            saved = decode(data)
            if file_name(saved.key) != name:
                raise SpoolFormatError("its name does not match the job it holds")
        except FileNotFoundError:
            return None
        except (OSError, SpoolFormatError) as exc:
            self._quarantine(dir_fd, name, str(exc))
            return None
        return saved

    def _quarantine(self, dir_fd: int, name: str, why: str) -> None:
        """Move a refused file aside (the link itself, never its target), once, and say so."""
        shown = name.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")[:80]
        target = f"{shown.replace('/', '_')}.{time.time_ns()}.bad"
        try:
            os.makedirs(self.directory / QUARANTINE_DIR, 0o700, exist_ok=True)
            qfd = open_dir(QUARANTINE_DIR, dir_fd)
        except OSError as exc:
            log.error("saved job %s refused (%s); cannot quarantine it (%s): removing it", shown, why, exc)
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=dir_fd)
            return
        try:
            os.rename(name, target, src_dir_fd=dir_fd, dst_dir_fd=qfd)
            log.error("saved job %s refused (%s): moved to %s", shown, why,
                      self.directory / QUARANTINE_DIR / target)
            kept = sorted(os.listdir(qfd), key=_age)
            for old in kept[:-QUARANTINE_KEEP]:
                with contextlib.suppress(OSError):
                    os.unlink(old, dir_fd=qfd)
        except OSError as exc:
            log.error("saved job %s refused (%s); cannot move it aside (%s)", shown, why, exc)
            with contextlib.suppress(OSError):
                if os.path.isdir(self.directory / name) and not os.path.islink(self.directory / name):
                    return  # a directory is left alone: nothing of it is read
                os.unlink(name, dir_fd=dir_fd)
        finally:
            os.close(qfd)

    # ------------------------------------------------------------ saving

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="sentinel-job-state", daemon=True)
        self._thread.start()

    def save(self, jobs: list[Job], gone: list[str], users: Counter[int], now: float,
             force: bool = False) -> set[str]:
        """Hand ``jobs`` (encoded here, written on the thread) and the keys of jobs ``gone`` over;
        returns the keys of the jobs deferred (saved less than ``SAVE_EVERY`` ago: a teardown of
        many ranks is encoded a few times, not once per rank)."""
        batch: dict[str, Optional[bytes]] = {file_name(key): None for key in gone}
        for key in gone:
            self._handed.pop(key, None)
        self._deferred = set()
        for job in jobs:
            last = self._handed.get(job.key)
            if not force and job.alerted_at is None and last is not None and now - last < SAVE_EVERY:
                self._deferred.add(job.key)
                continue
            self._handed[job.key] = now
            if users[job.uid] > MAX_JOBS_PER_USER:
                if job.uid not in self._refused_users:
                    self._refused_users.add(job.uid)
                    log.warning("uid %d has more than %d jobs: the rest are watched but not saved across "
                                "a restart", job.uid, MAX_JOBS_PER_USER)
                continue
            raw = payload(encode(job, now, self.pidns))
            if raw is None:
                log.warning("job %s is too large to save (over %d bytes)", job.key[:80], MAX_FILE_BYTES)
                continue
            batch[file_name(job.key)] = raw
        if batch:
            with self._cond:
                self._pending.update(batch)
                self._cond.notify()
        return set(self._deferred)

    def next_due(self) -> Optional[float]:
        """When the deferred jobs are to be saved (the loop wakes for it), None if none is."""
        due = [self._handed[k] + SAVE_EVERY for k in self._deferred if k in self._handed]
        return min(due) if due else None

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stopping:
                    self._cond.wait()
                if not self._pending and self._stopping:
                    return
                batch, self._pending = self._pending, {}
            self._write(batch)

    def _write(self, batch: dict[str, Optional[bytes]]) -> None:
        for name, raw in batch.items():
            path = self.directory / name
            try:
                if raw is None:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)
                else:
                    write_bytes(path, raw, durable=True)
            except OSError as exc:  # a full disk: the job is still watched, only not saved
                log.warning("cannot save job state %s: %s", name, exc.strerror or exc)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is pending, then stop the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout)
        with self._cond:
            batch, self._pending = self._pending, {}
        self._write(batch)


def _age(name: str) -> int:
    stamp = name.rsplit(".", 2)[-2] if name.count(".") >= 2 else ""
    return int(stamp) if stamp.isdigit() else 0
