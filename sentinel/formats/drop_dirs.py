"""Drop directories: where users leave requests for the daemon (``.mutes/``, ``.resend/``).

Layout::

    <spool>/<name>/              sticky and world-writable (1777) in a shared
                                 spool, like /tmp; 0700 in a user's own spool
      <uid>-<anything>.json      one request, written atomically by its user
                                 (``sentinel.formats.safe_json.write_json``)

The request formats belong to their modules (``sentinel.formats.mutes``,
``sentinel.delivery.resend``); this module makes the directory and hands out the
files to read, fairly across users. The daemon judges each request by the
owner of the file it opens, never by its name alone. Stdlib only.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from pathlib import Path
from typing import Optional

from sentinel.formats.safe_json import open_dir


def ensure_drop_dir(spool_path: Path, name: str) -> Path:
    """``<spool>/<name>/``, where users leave requests for the daemon, who judges
    each by its file's owner: sticky and world-writable in a shared spool
    (like /tmp), else 0700."""
    path = Path(spool_path) / name
    try:
        st = os.stat(spool_path)
        shared = bool(st.st_mode & (stat.S_ISVTX | stat.S_IWOTH))
    except OSError:
        shared = False
    for _ in range(2):
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, 0o700)
            if shared:
                os.chmod(path, 0o1777)
        st = os.lstat(path)
        if stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid():
            return path
        if not _own_dir(spool_path) or not _move_planted(Path(spool_path), name, st):
            break  # not ours to clear: the caller's own check below says what is wrong
    if not stat.S_ISDIR(st.st_mode):
        raise NotADirectoryError(f"{path} is not a directory (or is a symlink)")
    return path


def _own_dir(path: Path) -> bool:
    try:
        return os.stat(path).st_uid == os.geteuid()
    except OSError:
        return False


def _move_planted(spool_path: Path, name: str, st: os.stat_result) -> bool:
    """Another user's thing at a name the spool's owner keeps for itself: moved aside."""
    from sentinel.formats.spool_lock import clear_squatter

    try:
        dir_fd = open_dir(spool_path)
    except OSError:
        return False
    try:
        return clear_squatter(dir_fd, name, st, spool_path)
    finally:
        os.close(dir_fd)


_DROP_NAME = re.compile(r"([0-9]{1,10})-[^/]*\.json")


def drop_files(root: Path, per_user: int, total: int, max_scan: int = 10_000,
               junk: Optional[list[str]] = None) -> list[tuple[str, int]]:
    """Files users left in a drop directory (``.mutes/``, ``.resend/``) to read now:
    (name, the uid its name claims), at most ``per_user`` per uid and ``total``
    in all, taken in turn from each user (their names in order).

    Bounded and fair: at most ``max_scan`` entries are looked at (``scandir``
    and one ``lstat`` each), only regular files named ``<uid>-....json`` and
    owned by that uid count (a directory, symlink or FIFO named to sort
    first is passed over, and so is a file named for another user: neither
    can fill a quota), and one user's thousand files leave every other user
    their turn. The reader checks the owner again on the file it opens.
    ``junk`` (if given) gets the names passed over, for the daemon to sweep.
    """
    by_uid: dict[int, list[str]] = {}
    try:
        with os.scandir(root) as entries:
            for seen, entry in enumerate(entries):
                if seen >= max_scan:
                    break
                match = _DROP_NAME.fullmatch(entry.name)
                try:
                    if match is None or not entry.is_file(follow_symlinks=False):
                        raise ValueError("not a request")
                    owner = entry.stat(follow_symlinks=False).st_uid
                    if owner != int(match.group(1)):  # named for another user: planted to take their turn
                        raise ValueError("planted")
                except (OSError, ValueError):
                    if junk is not None and not entry.name.startswith("."):
                        junk.append(entry.name)
                    continue
                by_uid.setdefault(owner, []).append(entry.name)
    except OSError:
        return []
    queues = [sorted(names)[:per_user] for _, names in sorted(by_uid.items())]
    out: list[tuple[str, int]] = []
    for turn in range(per_user):
        for queue in queues:
            if turn < len(queue) and len(out) < total:
                out.append((queue[turn], int(queue[turn].split("-", 1)[0])))
    return out
