"""Reading a run's records the way a daemon must: hostile input in mind.

Every read goes through ``spool.read_json`` (no symlinks, size cap, format
and version checks). A bad file is logged once — keyed by its path, mtime
and size, so a file that is fixed and breaks again is reported again — and
then skipped; nothing here raises for bad input. A bad field of a run record
or a final record does not skip the file: it gets its default (logged once
too), so the run is still watched and still alerts.

In a shared spool (not owned by the daemon's user, or sticky / world
writable) anyone may drop files, so a run is accepted only if its directory
and ``run.json`` belong to the uid the record claims and to the owner of the
process it names; the run's other files must belong to that uid too.
"""

from __future__ import annotations

import logging
import os
import stat
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Optional, TypeVar

from sentinel import spool
from sentinel.accounts import verified_user
from sentinel.daemon.decide import RunState
from sentinel.daemon.oom import CgroupCounter
from sentinel.procid import ProcessIdentity, process_uid, start_ticks
from sentinel.safetext import printable
from sentinel.spool import FinalRecord, Message, Progress, RunPaths, RunRecord, SpoolFormatError

log = logging.getLogger("sentinel.daemon.run_reader")

_MAX_REMEMBERED = 10_000

R = TypeVar("R", FinalRecord, Progress, Message)


class ProblemLog:
    """Logs each problem with a file once per version of that file."""

    def __init__(self) -> None:
        self._seen: OrderedDict[tuple, None] = OrderedDict()

    def report(self, path: Path, reason: str) -> bool:
        """Log ``reason`` for ``path`` unless already logged for this version."""
        return self._log_once(path, reason, "skipping %s: %s")

    def report_field(self, path: Path, reason: str) -> bool:
        """A bad field that was replaced by its default: the file is still used."""
        return self._log_once(path, reason, "%s: %s")

    def _log_once(self, path: Path, reason: str, template: str) -> bool:
        try:
            st = os.lstat(path)
            key: tuple = (str(path), st.st_mtime_ns, st.st_size, reason)
        except OSError:
            key = (str(path), None, None, reason)
        if key in self._seen:
            return False
        self._seen[key] = None
        while len(self._seen) > _MAX_REMEMBERED:
            self._seen.popitem(last=False)
        # Reasons quote what a run wrote: no control character reaches the log raw.
        log.warning(template, printable(path), printable(reason))
        return True


def is_shared_spool(path: Path) -> bool:
    """A spool others may write to: owned by someone else, sticky or world-writable."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return st.st_uid != os.geteuid() or bool(st.st_mode & (stat.S_ISVTX | stat.S_IWOTH))


@dataclass
class TrackedRun:
    """Everything the daemon knows about one accepted run."""

    record: RunRecord
    paths: RunPaths
    owner_uid: int  # owner of run.json; the run's other files must match in a shared spool
    state: RunState = RunState.RUNNING
    transitions: int = 0  # alerts raised so far (journal replay on restart)
    watched: bool = False  # an exit notice (pidfd or polling) is pending
    cgroup: Optional[CgroupCounter] = None
    progress: Optional[Progress] = None
    stall_check_at: Optional[float] = None  # when to re-read beat.json
    channels: list[str] = field(default_factory=list)

    @property
    def run_id(self) -> str:
        return self.record.run_id

    @cached_property
    def user(self) -> str:
        """Who started the run, as alerts show it: the account of the verified
        owner uid (a record's ``user`` is only a claim)."""
        return verified_user(self.owner_uid, self.record.user)

    @property
    def identity(self) -> ProcessIdentity:
        return ProcessIdentity(self.record.pid, self.record.start_ticks, self.record.boot_id)


class RunReader:
    """Reads the records of runs in one spool, applying the ownership rule."""

    def __init__(self, spool_path: Path, shared: bool, problems: ProblemLog) -> None:
        self.spool = Path(spool_path)
        self.shared = shared
        self.problems = problems
        self.untrusted: set[str] = set()  # shared spool: runs refused for their ownership

    def paths(self, run_id: str) -> RunPaths:
        return RunPaths(self.spool, run_id)

    def _run_dir_ok(self, paths: RunPaths) -> Optional[os.stat_result]:
        try:
            st = os.lstat(paths.dir)
        except FileNotFoundError:
            return None
        except OSError as exc:
            self.problems.report(paths.dir, f"cannot stat: {exc.strerror}")
            return None
        if not stat.S_ISDIR(st.st_mode):
            self.problems.report(paths.dir, "not a directory (symlinks are never followed)")
            return None
        return st

    def read_run(self, run_id: str) -> Optional[tuple[RunRecord, int]]:
        """The run's record and file owner, or None (absent, bad, or not trusted)."""
        paths = self.paths(run_id)
        dir_st = self._run_dir_ok(paths)
        if dir_st is None:
            return None
        field_problems: list[str] = []
        try:
            record, st = spool.read_run(paths.run, field_problems)
        except FileNotFoundError:
            return None  # the directory is made first; run.json follows
        except SpoolFormatError as exc:
            self.problems.report(paths.run, str(exc))
            return None
        for problem in field_problems:  # the run is watched all the same, with defaults
            self.problems.report_field(paths.run, problem)
        if record.run_id != run_id:
            self.problems.report(paths.run, f"names run {record.run_id!r}, not its directory's")
            return None
        if self.shared:
            if run_id in self.untrusted:
                return None
            reason = self._untrusted(record, st.st_uid, dir_st.st_uid)
            if reason:
                # Once refused, always refused: when the named process dies
                # later, the files alone must not make the run acceptable.
                self.untrusted.add(run_id)
                self.problems.report(paths.run, reason)
                return None
        return record, st.st_uid

    @staticmethod
    def _untrusted(record: RunRecord, file_uid: int, dir_uid: int) -> Optional[str]:
        if file_uid != record.uid or dir_uid != record.uid:
            return (f"shared spool: owned by uid {file_uid} (directory {dir_uid}) "
                    f"but claims uid {record.uid}")
        # The process owner is only meaningful while the pid still names the
        # run's process; a dead run is judged on its files alone.
        if start_ticks(record.pid) == record.start_ticks:
            proc_uid = process_uid(record.pid)
            if proc_uid is not None and proc_uid != file_uid:
                return f"shared spool: file owner uid {file_uid} does not own process {record.pid}"
        return None

    def _owned(self, run: TrackedRun, path: Path, st: os.stat_result) -> bool:
        if self.shared and st.st_uid != run.owner_uid:
            self.problems.report(path, f"shared spool: owned by uid {st.st_uid}, "
                                       f"not the run's {run.owner_uid}")
            return False
        return True

    def _read_owned(self, run: TrackedRun, path: Path, kind: type[R]) -> Optional[R]:
        """The ``kind`` of record at ``path``, or None if it is malformed or not
        the run's own (logged once); bad fields that got their default are
        logged once too. Raises FileNotFoundError if it is absent."""
        field_problems: list[str] = []
        try:
            data, st = spool.read_json(path)
            record = kind.from_dict(data, field_problems, fallback_time=st.st_mtime)
        except SpoolFormatError as exc:
            self.problems.report(path, str(exc))
            return None
        if not self._owned(run, path, st):
            return None
        for reason in field_problems:
            self.problems.report_field(path, reason)
        return record

    def read_final(self, run: TrackedRun) -> Optional[FinalRecord]:
        try:
            return self._read_owned(run, run.paths.final, FinalRecord)
        except FileNotFoundError:
            return None

    def read_progress(self, run: TrackedRun) -> Optional[Progress]:
        """The newest beat, or the last good one if beat.json is absent or bad."""
        try:
            progress = self._read_owned(run, run.paths.beat, Progress)
        except FileNotFoundError:
            return run.progress
        return progress if progress is not None else run.progress

    def pending_messages(self, run: TrackedRun) -> list[tuple[int, Path, Optional[Message]]]:
        """Queued messages oldest first; a bad one has message None (logged once)."""
        try:
            st = os.lstat(run.paths.messages)
        except OSError:
            return []
        if not stat.S_ISDIR(st.st_mode):
            self.problems.report(run.paths.messages, "not a directory (symlinks are never followed)")
            return []
        out: list[tuple[int, Path, Optional[Message]]] = []
        for seq, path in spool.list_messages(run.paths):
            try:
                out.append((seq, path, self._read_owned(run, path, Message)))
            except FileNotFoundError:
                continue
        return out
