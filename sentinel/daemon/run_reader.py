"""Reading a run's records the way a daemon must: hostile input in mind.

Every read goes through ``safe_json.read_json`` (no symlinks, size cap, format
and version checks), relative to directory fds: the run directory is opened
by name in the spool (never through a symlink) and must be the very
directory the run was admitted with (device and inode); its files and
``msg/`` are opened in that fd, and delivered messages are unlinked in the
``msg/`` fd they were read from. A user who swaps a directory for a symlink
between two of the daemon's steps therefore never leads it outside the
spool: what the daemon reads, and what it deletes, is in the directory it
checked. A bad file is logged once — keyed by its path, mtime
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

import contextlib
import errno
import logging
import os
import stat
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Iterator, NamedTuple, Optional, TypeVar

from sentinel.common.safetext import printable
from sentinel.daemon.budgets import RefusedRuns
from sentinel.daemon.failures import BoundedSet
from sentinel.daemon.oom import CgroupCounter
from sentinel.formats import live_file, safe_json, spool
from sentinel.formats.safe_json import DirId, SpoolFormatError
from sentinel.formats.spool import FinalRecord, Message, Progress, RunPaths, RunRecord
from sentinel.host import pidns
from sentinel.host.accounts import verified_user
from sentinel.host.containers import ContainerIdentity
from sentinel.host.procid import ProcessIdentity, process_uid, start_ticks
from sentinel.model.run_states import RunState

log = logging.getLogger("sentinel.daemon.run_reader")
_OWN_PIDNS = pidns.namespace_of()

_MAX_REMEMBERED = 10_000

R = TypeVar("R", FinalRecord, Progress, Message)


class ProblemLog:
    """Logs each problem with a file once per version of that file."""

    def __init__(self) -> None:
        self._seen = BoundedSet(_MAX_REMEMBERED)

    def report(self, path: Path, reason: str, version: Optional[tuple] = None) -> bool:
        """Log ``reason`` for ``path`` unless already logged for this version
        (``version``: what tells versions apart, else the file's mtime and size)."""
        return self._log_once(path, reason, "skipping %s: %s", version)

    def report_field(self, path: Path, reason: str, version: Optional[tuple] = None) -> bool:
        """A bad field that was replaced by its default: the file is still used."""
        return self._log_once(path, reason, "%s: %s", version)

    def _log_once(self, path: Path, reason: str, template: str, version: Optional[tuple]) -> bool:
        if version is None:
            try:
                st = os.lstat(path)
                version = (st.st_mtime_ns, st.st_size)
            except OSError:
                version = (None, None)
        key: tuple = (str(path), *version, reason)
        if not self._seen.add(key):
            return False
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
    dir_id: Optional[DirId] = None  # the run directory admitted; None: not checked
    state: RunState = RunState.RUNNING
    transitions: int = 0  # alerts raised so far (journal replay on restart)
    watched: bool = False  # an exit notice (pidfd or polling) is pending
    cgroup: Optional[CgroupCounter] = None
    container: Optional[ContainerIdentity] = None  # read from its cgroup while it lived
    progress: Optional[Progress] = None
    stall_check_at: Optional[float] = None  # when to re-read beat.json
    frozen: bool = False  # stalled with the heartbeat stopped too, not only progress
    channels: list[str] = field(default_factory=list)
    family: tuple[ProcessIdentity, ...] = ()  # its descendants, noted while it lives (survivors)
    family_due: float = 0.0  # when a rescan notes its descendants again
    # Its msg/ directory's (mtime, inode) at the last full read by a rescan (runs inotify cannot watch)
    messages_stamp: Optional[tuple[int, int]] = None
    # A run of another PID namespace (``sentinel.daemon.ns_watch``): its pid as
    # the daemon sees it once found; being looked for; or not findable from here.
    host_pid: Optional[int] = None
    resolving: bool = False
    unwatchable: bool = False

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
        """The process as the daemon's namespace numbers it (the recorded pid until found)."""
        pid = self.host_pid if self.host_pid is not None else self.record.pid
        return ProcessIdentity(pid, self.record.start_ticks, self.record.boot_id)


class LoadedRun(NamedTuple):
    record: RunRecord
    owner_uid: int
    dir_id: DirId


class PendingMessages:
    """A run's queued messages, read from one open ``msg/`` directory.

    ``remove`` unlinks delivered messages in that same directory (its fd),
    so a ``msg/`` swapped for a symlink after the read makes no difference.
    Use as a context manager: the fd is closed on exit."""

    def __init__(self, msg_fd: Optional[int] = None,
                 messages: Optional[list[tuple[int, str, Optional[Message]]]] = None) -> None:
        self._fd = msg_fd
        self.messages = messages or []  # (seq, file name, message; None if bad: logged once)

    def remove(self, names: list[str]) -> None:
        if self._fd is None:
            return
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=self._fd)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> PendingMessages:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _version(dir_fd: int, name: str) -> tuple:
    """What tells versions of a file apart for the problem log (mtime, size)."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return (None, None)
    return (st.st_mtime_ns, st.st_size)


class RunReader:
    """Reads the records of runs in one spool, applying the ownership rule."""

    def __init__(self, spool_path: Path, shared: bool, problems: ProblemLog,
                 refused_limit: int = _MAX_REMEMBERED) -> None:
        self.spool = Path(spool_path)
        self.shared = shared
        self.problems = problems
        # shared spool: runs refused for their ownership (per uid, bounded)
        self.untrusted = RefusedRuns(refused_limit)
        self.dir_opens = 0  # admitted run directories opened so far (what one event costs)

    def paths(self, run_id: str) -> RunPaths:
        return RunPaths(self.spool, run_id)

    def _open_run_dir(self, run_id: str) -> tuple[int, os.stat_result]:
        """The run directory's fd and stat, opened by name in the spool (the
        spool's own path is the administrator's, so it may be a symlink)."""
        spool_fd = os.open(self.spool, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fd = safe_json.open_dir(run_id, spool_fd)
        finally:
            os.close(spool_fd)
        try:
            return fd, os.fstat(fd)
        except BaseException:
            os.close(fd)
            raise

    @contextlib.contextmanager
    def admitted_dir(self, run: TrackedRun) -> Iterator[Optional[int]]:
        """The admitted run directory's fd, or None if it is gone or was replaced.
        Every read of a run's files goes through one of these (``run_snapshot``
        takes one per event and reads everything in it)."""
        self.dir_opens += 1
        try:
            fd, st = self._open_run_dir(run.run_id)
        except FileNotFoundError:
            yield None
            return
        except OSError as exc:
            self.problems.report(run.paths.dir, _why(exc))
            yield None
            return
        try:
            if run.dir_id is not None and safe_json.dir_id(st) != run.dir_id:
                self.problems.report(run.paths.dir, "replaced by another directory since the run "
                                                    "started; not reading it", safe_json.dir_id(st))
                yield None
            else:
                yield fd
        finally:
            os.close(fd)

    def look(self, run: TrackedRun, now: float) -> tuple[bool, Optional[tuple[int, int]]]:
        """A rescan's cheap look at a run inotify does not watch: (whether it
        must be read in full: its directory gone or replaced, a final record
        there, or its ``msg/`` changed within the last second, too recently for
        the stamp to tell; the ``(mtime, inode)`` of its ``msg/``, None if it
        has none), for the caller to compare with the last full read's.

        Three ``lstat`` calls by path and nothing opened: the directory is
        checked to be the admitted one, never a symlink. Swapped for a symlink
        between two of these calls, it could only make the look see another
        directory's names, and so read in full (which refuses symlinks) or
        not read the run's own news until its next change or its end."""
        base = f"{self.spool}/{run.run_id}"
        try:
            st = os.lstat(base)
        except OSError:
            return True, None  # gone, or unreadable: the full read says which
        if not stat.S_ISDIR(st.st_mode) or (run.dir_id is not None and safe_json.dir_id(st) != run.dir_id):
            return True, None
        try:
            os.lstat(f"{base}/{spool.FINAL_FILE}")
            return True, None
        except FileNotFoundError:
            pass
        except OSError:
            return True, None
        try:
            st = os.lstat(f"{base}/{spool.MESSAGE_DIR}")
        except OSError:
            return False, None
        return now - st.st_mtime < 1.0, (st.st_mtime_ns, st.st_ino)

    def run_dir_present(self, run: TrackedRun) -> bool:
        """The directory the run was admitted with is still in the spool."""
        with self.admitted_dir(run) as fd:
            return fd is not None

    def read_run(self, run_id: str) -> Optional[LoadedRun]:
        """The run's record, file owner and directory, or None (absent, bad, or not trusted)."""
        paths = self.paths(run_id)
        try:
            dir_fd, dir_st = self._open_run_dir(run_id)
        except FileNotFoundError:
            return None
        except OSError as exc:
            self.problems.report(paths.dir, _why(exc))
            return None
        try:
            return self._read_run_in(run_id, paths, dir_fd, dir_st)
        finally:
            os.close(dir_fd)

    def _read_run_in(self, run_id: str, paths: RunPaths, dir_fd: int,
                     dir_st: os.stat_result) -> Optional[LoadedRun]:
        field_problems: list[str] = []
        try:
            record, st = spool.read_run(spool.RUN_FILE, field_problems, dir_fd=dir_fd)
        except FileNotFoundError:
            return None  # the directory is made first; run.json follows
        except SpoolFormatError as exc:
            self.problems.report(paths.run, str(exc), _version(dir_fd, spool.RUN_FILE))
            return None
        version = (st.st_mtime_ns, st.st_size)
        for problem in field_problems:  # the run is watched all the same, with defaults
            self.problems.report_field(paths.run, problem, version)
        if record.run_id != run_id:
            self.problems.report(paths.run, f"names run {record.run_id!r}, not its directory's", version)
            return None
        if self.shared:
            if run_id in self.untrusted:
                return None
            reason = self._untrusted(record, st.st_uid, dir_st.st_uid)
            if reason:
                # Once refused, always refused: when the named process dies
                # later, the files alone must not make the run acceptable.
                self.untrusted.add(run_id, st.st_uid)
                self.problems.report(paths.run, reason, version)
                return None
        return LoadedRun(record, st.st_uid, safe_json.dir_id(dir_st))
    @staticmethod
    def _untrusted(record: RunRecord, file_uid: int, dir_uid: int) -> Optional[str]:
        if file_uid != record.uid or dir_uid != record.uid:
            return (f"shared spool: owned by uid {file_uid} (directory {dir_uid}) "
                    f"but claims uid {record.uid}")
        # The process owner is only meaningful while the pid still names the
        # run's process; a dead run is judged on its files alone. A pid of
        # another namespace names no process here: ns_watch checks its owner.
        if record.pidns and record.pidns != _OWN_PIDNS:
            return None
        if start_ticks(record.pid) == record.start_ticks:
            proc_uid = process_uid(record.pid)
            if proc_uid is not None and proc_uid != file_uid:
                return f"shared spool: file owner uid {file_uid} does not own process {record.pid}"
        return None

    def _owned(self, run: TrackedRun, path: Path, st: os.stat_result) -> bool:
        if self.shared and st.st_uid != run.owner_uid:
            self.problems.report(path, f"shared spool: owned by uid {st.st_uid}, "
                                       f"not the run's {run.owner_uid}", (st.st_mtime_ns, st.st_size))
            return False
        return True

    def _read_owned(self, run: TrackedRun, dir_fd: int, name: str, path: Path, kind: type[R]) -> Optional[R]:
        """The ``kind`` of record ``name`` in ``dir_fd`` (``path`` for the log),
        or None if it is malformed or not the run's own (logged once); bad
        fields that got their default are logged once too. Raises
        FileNotFoundError if it is absent."""
        field_problems: list[str] = []
        try:
            data, st = safe_json.read_json(name, dir_fd=dir_fd)
            record = kind.from_dict(data, field_problems, fallback_time=st.st_mtime)
        except SpoolFormatError as exc:
            self.problems.report(path, str(exc), _version(dir_fd, name))
            return None
        if not self._owned(run, path, st):
            return None
        for reason in field_problems:
            self.problems.report_field(path, reason, (st.st_mtime_ns, st.st_size))
        return record

    def read_final(self, run: TrackedRun) -> Optional[FinalRecord]:
        with self.admitted_dir(run) as dir_fd:
            return None if dir_fd is None else self.final_in(run, dir_fd)

    def final_in(self, run: TrackedRun, dir_fd: int) -> Optional[FinalRecord]:
        """The final record in the open run directory, or None (absent, bad, not its own)."""
        try:
            return self._read_owned(run, dir_fd, spool.FINAL_FILE, run.paths.final, FinalRecord)
        except FileNotFoundError:
            return None

    def read_progress(self, run: TrackedRun) -> Optional[Progress]:
        """The newest beat, or the last good one if beat.json is absent or bad,
        with the step and scalars of ``live.bin`` when the run reported since."""
        with self.admitted_dir(run) as dir_fd:
            return run.progress if dir_fd is None else self.progress_in(run, dir_fd)

    def progress_in(self, run: TrackedRun, dir_fd: int) -> Optional[Progress]:
        """``read_progress`` in the open run directory."""
        try:
            progress = self._read_owned(run, dir_fd, spool.BEAT_FILE, run.paths.beat, Progress)
        except FileNotFoundError:
            progress = None
        if progress is None:
            progress = run.progress
        return live_file.with_live(progress, self.live_in(run, dir_fd))

    def live_in(self, run: TrackedRun, dir_fd: int) -> Optional[live_file.LiveProgress]:
        """The run's last reported step and scalars, or None (absent, bad, not its own)."""
        try:
            live, st = live_file.read_live(run.paths.dir, dir_fd=dir_fd)
        except FileNotFoundError:
            return None
        except SpoolFormatError as exc:
            self.problems.report(run.paths.live, str(exc), _version(dir_fd, spool.LIVE_FILE))
            return None
        return live if self._owned(run, run.paths.live, st) else None

    def read_dump(self, run: TrackedRun, name: str, offset: int, max_bytes: int) -> tuple[bytes, str]:
        """Up to ``max_bytes`` of the run's dump file ``name`` (``sentinel.formats.evidence``)
        from ``offset``: (bytes, "") or (b"", why not). Opened in the admitted
        run directory, never through a symlink, never blocking (a FIFO) and
        never as a terminal; it must be a regular file of the run's owner,
        and what lies past ``offset`` must fit ``max_bytes``: a huge file
        yields nothing, not its first bytes."""
        with self.admitted_dir(run) as dir_fd:
            if dir_fd is None:
                return b"", "the run directory is gone"
            try:
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC,
                             dir_fd=dir_fd)
            except FileNotFoundError:
                return b"", f"no {name}"
            except OSError as exc:
                return b"", f"{name}: " + ("a symlink" if exc.errno == errno.ELOOP else _why(exc))
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return b"", f"{name} is not a regular file"
            if st.st_uid != run.owner_uid:
                return b"", f"{name} is not the run owner's"
            if st.st_size - offset > max_bytes:
                return b"", f"{name} is too large ({st.st_size - offset} bytes, limit {max_bytes})"
            return os.pread(fd, max_bytes, offset), ""
        except OSError as exc:
            return b"", f"{name}: {exc.strerror or exc}"
        finally:
            os.close(fd)

    def dump_size(self, run: TrackedRun, name: str, max_bytes: int) -> tuple[int, str]:
        """The size of the run's dump file now, 0 if absent: (size, "") or
        (0, why it will not be read) — not a regular file, or over ``max_bytes``."""
        with self.admitted_dir(run) as dir_fd:
            if dir_fd is None:
                return 0, "the run directory is gone"
            try:
                st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                return 0, ""
            except OSError as exc:
                return 0, f"{name}: {exc.strerror or exc}"
        if stat.S_ISLNK(st.st_mode):
            return 0, f"{name}: a symlink"
        if not stat.S_ISREG(st.st_mode):
            return 0, f"{name} is not a regular file"
        if st.st_size > max_bytes:
            return 0, f"{name} is too large ({st.st_size} bytes, limit {max_bytes})"
        return st.st_size, ""

    def pending_messages(self, run: TrackedRun) -> PendingMessages:
        """Queued messages oldest first, in the open ``msg/``; a bad one has
        message None (logged once)."""
        with self.admitted_dir(run) as dir_fd:
            return PendingMessages() if dir_fd is None else self.messages_in(run, dir_fd)

    def messages_in(self, run: TrackedRun, dir_fd: int) -> PendingMessages:
        """``pending_messages`` in the open run directory (the ``msg/`` fd outlives ``dir_fd``)."""
        try:
            msg_fd = safe_json.open_dir(spool.MESSAGE_DIR, dir_fd)
        except FileNotFoundError:
            return PendingMessages()
        except OSError as exc:
            self.problems.report(run.paths.messages, _why(exc), _version(dir_fd, spool.MESSAGE_DIR))
            return PendingMessages()
        pending = PendingMessages(msg_fd)
        try:
            st = os.fstat(msg_fd)
            if not self._owned(run, run.paths.messages, st):
                return pending
            for seq, name in spool.message_names(msg_fd):
                try:
                    message = self._read_owned(run, msg_fd, name, run.paths.messages / name, Message)
                except FileNotFoundError:
                    continue
                pending.messages.append((seq, name, message))
        except BaseException:
            pending.close()
            raise
        return pending


def _why(exc: OSError) -> str:
    if isinstance(exc, NotADirectoryError):
        return "not a directory (symlinks are never followed)"
    return f"cannot open: {exc.strerror or exc}"
