"""``<spool>/.daemon.lock``: one daemon per spool, whoever starts it.

The state directory's lock keeps two daemons off one state; it does not keep
a system daemon and a user's ``sentinel-user.service`` (two state
directories) off one spool, where both would alert. So the daemon also takes
this lock: a regular file, mode 0600, owned by the daemon's user, ``flock``ed
exclusively for the daemon's life. Nothing is written in it.

In a shared (1777) spool every user can plant names. The file is opened
``O_PATH`` first and checked on that descriptor: only a regular file of the
daemon's own user is ever opened for real (never a FIFO, a device, a
symlink). The daemon of the spool's owner (root's, for the shared spool)
always takes the spool: a lock file of any other user is a squatter there,
held or not (a user who plants one and holds its ``flock`` must not keep
the system daemon from starting). A daemon of another user (a user's
``sentinel-user.service`` on the shared spool) yields to a lock file of
another user that is held, or that it cannot read (another user's 0600
file), and refuses to start, naming the user. Anything planted under the
name that does not count (a directory, a symlink, a FIFO, a stale file) is
moved out of the way (``clear_squatter``), which the spool's owner may do
in a sticky directory, to a name with a random part (a name a user could
predict, they could occupy first with a directory, and the move would
fail), and the lock is made afresh. The same helper keeps a planted
``daemon.json`` from silencing the daemon (see ``sentinel.formats.daemon_file``).
A daemon whose lock was moved aside so (a user's daemon, started first) sees
it at its next pass (``still_held``) and stops.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import pwd
import secrets
import stat
from pathlib import Path
from typing import Optional

log = logging.getLogger("sentinel.spool_lock")

LOCK_FILE = ".daemon.lock"
_OPEN = os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC  # never by name: O_EXCL or /proc/self/fd


class SpoolLockError(Exception):
    """The spool is another daemon's, or its lock cannot be made: the message says which."""


def _user(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISLNK, "a symlink"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device")):
        if test(mode):
            return name
    return "a file"


def clear_squatter(dir_fd: int, name: str, st: os.stat_result, where: Path) -> bool:
    """Move what another user planted at ``name`` out of the way; True if the name is free now.

    An empty directory is removed; anything else is renamed to a hidden name
    (its inode number and a random part in it: nobody can occupy it first),
    left for its owner. The name is never followed.
    """
    try:
        removed = False
        if stat.S_ISDIR(st.st_mode):
            try:
                os.rmdir(name, dir_fd=dir_fd)
                removed = True
            except OSError as exc:
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
        if not removed:
            _move_aside(dir_fd, name, st)
    except FileNotFoundError:
        return True
    except OSError as exc:
        log.error("%s is %s of %s, and it cannot be moved away: %s", where / name, _kind(st.st_mode),
                  _user(st.st_uid), exc.strerror)
        return False
    log.warning("%s was %s of %s: moved out of the way", where / name, _kind(st.st_mode), _user(st.st_uid))
    return True


def _move_aside(dir_fd: int, name: str, st: os.stat_result) -> None:
    for attempt in range(3):  # a taken name is a 2^-64 chance: a few tries, then the error stands
        aside = f".planted-{name.lstrip('.')}-{st.st_ino}-{secrets.token_hex(8)}"
        try:
            os.rename(name, aside, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            return
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.EISDIR, errno.ENOTDIR) or attempt == 2:
                raise


def _held(dir_fd: int, handle: int) -> bool:
    """Whether the (regular) file behind the ``O_PATH`` fd is flocked by someone;
    True also if it cannot be opened to find out (another user's 0600 file)."""
    try:
        fd = os.open(f"/proc/self/fd/{handle}", os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def lock_spool(spool_path: Path) -> int:
    """The held lock's fd (keep it open while the daemon runs); SpoolLockError if
    another daemon watches this spool or the lock cannot be taken."""
    try:
        dir_fd = os.open(spool_path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise SpoolLockError(f"cannot open spool {spool_path}: {exc.strerror}") from None
    where = spool_path / LOCK_FILE
    try:
        for _ in range(3):  # a squatter moved away, then ours made: twice is enough unless raced
            opened: Optional[int]
            try:
                opened = os.open(LOCK_FILE, _OPEN | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600,
                                 dir_fd=dir_fd)
            except FileExistsError:
                opened = _existing(dir_fd, spool_path, where)
            except OSError as exc:
                raise SpoolLockError(f"cannot create {where}: {exc.strerror}") from None
            if opened is None:
                continue
            fd = opened
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise SpoolLockError(f"another daemon already watches {spool_path} (it holds {where})"
                                     ) from None
            return fd
        raise SpoolLockError(f"cannot take {where}: something keeps replacing it")
    finally:
        os.close(dir_fd)


def _existing(dir_fd: int, spool_path: Path, where: Path) -> Optional[int]:
    """Our lock file opened, or None once a squatter was moved away."""
    try:
        handle = os.open(LOCK_FILE, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SpoolLockError(f"cannot open {where}: {exc.strerror}") from None
    try:
        st = os.fstat(handle)
        if stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid():
            try:
                return os.open(f"/proc/self/fd/{handle}", _OPEN)
            except OSError as exc:
                raise SpoolLockError(f"cannot open {where}: {exc.strerror}") from None
        spools_owner = os.fstat(dir_fd).st_uid == os.geteuid()  # whose daemon takes the spool
        if not spools_owner and stat.S_ISREG(st.st_mode) and st.st_nlink == 1 and _held(dir_fd, handle):
            raise SpoolLockError(f"another daemon watches {spool_path}: {where} belongs to {_user(st.st_uid)}"
                                 " and is held (or not readable); one daemon per spool")
    finally:
        os.close(handle)
    if not clear_squatter(dir_fd, LOCK_FILE, st, spool_path):
        raise SpoolLockError(f"{where} is {_kind(st.st_mode)} of {_user(st.st_uid)} that this daemon "
                             "cannot move: remove it")
    return None


def still_held(spool_path: Path, fd: int) -> bool:
    """Whether the lock ``fd`` is still the file at the spool's lock name: False
    once the spool's owner's daemon moved it aside and made its own (or the
    file is gone). The daemon asks on every pass and stops when it is not:
    two daemons watching one spool would both alert."""
    try:
        named = os.lstat(spool_path / LOCK_FILE)
        held = os.fstat(fd)
    except FileNotFoundError:
        return False
    except OSError:
        return True  # cannot tell now (asked again at the next pass)
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)


def unlock(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)
