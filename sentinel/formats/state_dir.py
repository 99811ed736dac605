"""The daemon's state directory: its layout, its creation and its checks.

Layout (every directory 0700, everything owned by the daemon's uid)::

    <state>/daemon.lock     flock held for the daemon's life: one daemon per state
    <state>/outbox/         the durable outbox and alert journal (sentinel.delivery.outbox)
    <state>/inline/         channels runs passed inline (sentinel.delivery.workers.ChannelSet)
    <state>/archive/        ended run directories moved out of the spool (sentinel.daemon.archive)
    <state>/jobs/           jobs' state, kept across restarts (sentinel.daemon.job_state)

The daemon trusts what it finds here (alerts it will deliver, channels it
will post to), so ``open`` refuses a state directory it cannot trust: one
made by another user (a user who precreates ``<spool>/.daemon`` in a shared
spool would otherwise feed the daemon forged outbox records, or have root
write through their symlinks), one others may write, or a symlink anywhere
in the outbox and inline trees. Archived runs keep their owners' files, so
only the archive directory itself is checked. Refusals are ``StateDirError``
with one line that says what is wrong and how to fix it.

The system service keeps its state outside the world-writable spool
(``/var/lib/sentinel/state``, see systemd/sentinel.service); ``migrate``
moves a state left in ``<spool>/.daemon`` by an earlier version there, if
it passes the same checks.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import shutil
import stat
from pathlib import Path
from typing import Optional

log = logging.getLogger("sentinel.state_dir")

LOCK_FILE = "daemon.lock"
OUTBOX_DIR = "outbox"
INLINE_DIR = "inline"
ARCHIVE_DIR = "archive"
JOBS_DIR = "jobs"  # its files are checked as they are read (job_state), so one bad file stops nothing
CHECKED_TREES = (OUTBOX_DIR, INLINE_DIR)  # every entry below these is ours


class StateDirError(Exception):
    """The state directory cannot be used; the message is one line for the log."""


class StateDir:
    """One daemon's state directory (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @property
    def outbox(self) -> Path:
        return self.path / OUTBOX_DIR

    @property
    def inline(self) -> Path:
        return self.path / INLINE_DIR

    @property
    def archive(self) -> Path:
        return self.path / ARCHIVE_DIR

    @property
    def jobs(self) -> Path:
        return self.path / JOBS_DIR

    @property
    def lock_path(self) -> Path:
        return self.path / LOCK_FILE

    # ------------------------------------------------------------ start-up

    def open(self) -> None:
        """Create the directory if missing, then check it all; StateDirError if unusable."""
        try:
            os.makedirs(self.path.parent, 0o700, exist_ok=True)
            self._create(self.path)
            for name in (OUTBOX_DIR, INLINE_DIR, ARCHIVE_DIR, JOBS_DIR):
                self._create(self.path / name)
        except OSError as exc:
            raise StateDirError(f"cannot create state directory {self.path}: {_why(exc)}") from None
        self.check()
        self._check_writable()

    def check(self) -> None:
        """StateDirError unless the directory and its outbox/inline trees are ours alone."""
        _check_private_dir(self.path)
        _check_private_dir(self.archive)
        if os.path.lexists(self.jobs):  # a state left by an earlier version has none yet
            _check_private_dir(self.jobs)
        for tree in CHECKED_TREES:
            root = self.path / tree
            _check_private_dir(root)
            for top, dirs, files in os.walk(root, onerror=_raise):
                for name in dirs:
                    _check_private_dir(Path(top) / name)
                for name in files:
                    _check_owned(Path(top) / name)

    def lock(self) -> Optional[int]:
        """The held lock's fd, or None if another daemon holds it."""
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StateDirError(f"cannot open {self.lock_path}: {_why(exc)}") from None
        try:
            _check_owned(self.lock_path, fd)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _create(self, path: Path) -> None:
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, 0o700)

    def _check_writable(self) -> None:
        probe = self.path / f".probe.{os.getpid()}"
        try:
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StateDirError(f"state directory {self.path} is not writable: {_why(exc)}") from None
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(probe)

    # ------------------------------------------------------------ migration

    def migrate_from(self, old: Path) -> bool:
        """Move the state an earlier version kept at ``old`` here, if this one
        is new and ``old`` passes the checks; True if it moved."""
        old_state = StateDir(old)
        if not os.path.lexists(old) or old_state.path.resolve() == self.path.resolve():
            return False
        if os.path.lexists(self.outbox) and any(os.scandir(self.outbox)):
            log.warning("not migrating the state in %s: %s already holds an outbox", old, self.path)
            return False
        try:
            old_state.check()
        except StateDirError as exc:
            log.error("not migrating the state in %s, it cannot be trusted: %s", old, exc)
            return False
        with contextlib.suppress(OSError):
            os.rmdir(self.path)  # an empty target (StateDirectory= makes the parent only)
        try:
            shutil.move(str(old), str(self.path))
        except OSError as exc:
            raise StateDirError(f"cannot move the state from {old} to {self.path}: {_why(exc)}") from None
        log.info("moved the daemon's state from %s to %s", old, self.path)
        return True


def _check_private_dir(path: Path) -> None:
    st = _check_owned(path)
    if not stat.S_ISDIR(st.st_mode):
        raise StateDirError(f"{path} in the state directory is not a directory (or is a symlink)")
    if st.st_mode & 0o077:
        raise StateDirError(f"{path} is mode {stat.S_IMODE(st.st_mode):03o}; the state directory must be "
                            f"0700 (chmod 700 {path})")


def _check_owned(path: Path, fd: Optional[int] = None) -> os.stat_result:
    try:
        st = os.fstat(fd) if fd is not None else os.lstat(path)
    except OSError as exc:
        raise StateDirError(f"cannot check {path}: {_why(exc)}") from None
    if stat.S_ISLNK(st.st_mode):
        raise StateDirError(f"{path} in the state directory is a symlink; refusing to follow it")
    if st.st_uid != os.geteuid():
        raise StateDirError(f"{path} is owned by uid {st.st_uid}, not by the daemon's uid {os.geteuid()}: "
                            "someone else made it; remove it or choose another state_dir")
    return st


def _raise(exc: OSError) -> None:
    raise StateDirError(f"cannot check {exc.filename}: {_why(exc)}")


def _why(exc: OSError) -> str:
    if exc.errno == errno.EROFS:
        return "read-only file system"
    return exc.strerror or str(exc)
