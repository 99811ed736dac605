"""Resend requests: "try this dead-lettered alert once more", from the CLI to a running daemon.

The outbox belongs to the daemon while it runs, so ``sentinel history
--resend ID`` never edits it then: it leaves one small file per request in
``<spool>/.resend/`` (made by the daemon like ``.mutes/``: sticky and
world-writable in a shared spool). This module owns that format (version 1)::

    <spool>/.resend/<uid>-<alert id>-<random>.json    {"v": 1, "alert_id": "...", "created": t}

Who may resend is decided by the daemon from the file's owner, never from
what the file says: root and the daemon's own user may resend any alert,
anyone else only alerts about runs they own. The daemon consumes every
request it reads (done or refused, logged either way), so one request is
one resend at most. Stdlib only.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import stat
import time
from pathlib import Path
from typing import Callable, Optional, Protocol

from sentinel.delivery.outbox import ResendRefused
from sentinel.formats import drop_dirs, safe_json

log = logging.getLogger("sentinel.resend")

FORMAT_VERSION = 1
RESEND_DIR = ".resend"
MAX_REQUESTS = 100  # read per pass; the rest wait for the next one
MAX_REQUESTS_PER_USER = 10  # per pass: one user's flood leaves every other user their turn
MAX_REQUEST_BYTES = 4096


def resend_dir(spool_path: Path) -> Path:
    return Path(spool_path) / RESEND_DIR


def ensure_dir(spool_path: Path) -> Path:
    return drop_dirs.ensure_drop_dir(spool_path, RESEND_DIR)


def request(spool_path: Path, alert_id: str, now: Optional[float] = None) -> Path:
    """Leave a request for the daemon to resend ``alert_id``; its path."""
    root = resend_dir(spool_path)
    st = os.lstat(root)  # made by the daemon: a missing one means no daemon made it yet
    if not stat.S_ISDIR(st.st_mode):
        raise NotADirectoryError(f"{root} is not a directory (or is a symlink)")
    # A name nobody can guess: another user cannot plant something under it first.
    path = root / f"{os.geteuid()}-{alert_id}-{secrets.token_hex(8)}.json"
    safe_json.write_json(path, {"v": FORMAT_VERSION, "alert_id": alert_id,
                            "created": time.time() if now is None else now}, durable=True, mode=0o644)
    return path


def _read(path: Path) -> tuple[str, int]:
    """(alert id, the file's owner uid); OSError or SpoolFormatError if it is no request."""
    data, st = safe_json.read_json(path, max_bytes=MAX_REQUEST_BYTES)
    if st.st_nlink != 1:
        raise safe_json.SpoolFormatError("a hard link says nothing about its owner's wish")
    if data.get("v") != FORMAT_VERSION or not isinstance(data.get("alert_id"), str):
        raise safe_json.SpoolFormatError("not a version 1 resend request")
    return data["alert_id"], st.st_uid


class ResendingOutbox(Protocol):
    def run_of(self, alert_id: str) -> Optional[str]: ...

    def resend(self, alert_id: str) -> list[str]: ...


class ResendDesk:
    """The daemon's side: takes the requests in ``.resend/`` whenever the directory changed."""

    def __init__(self, spool_path: Path, outbox: ResendingOutbox, run_owner: Callable[[str], Optional[int]],
                 wake_delivery: Callable[[], None]) -> None:
        self.spool = Path(spool_path)
        self.outbox = outbox
        self.run_owner = run_owner  # run id -> its owner's uid (None: unknown)
        self.wake_delivery = wake_delivery
        self.privileged = {0, os.geteuid()}
        self._stamp: Optional[tuple[int, int]] = None

    def look_again(self) -> None:
        """Read the directory on the next ``poll`` even if its stamp did not change: a
        request renamed in within the clock tick of the last look leaves it as it was."""
        self._stamp = None

    def poll(self) -> int:
        """Consume the requests if the directory changed since the last look; how many resent."""
        root = resend_dir(self.spool)
        try:
            st = os.lstat(root)
        except OSError:
            return 0
        if not stat.S_ISDIR(st.st_mode) or st.st_uid not in self.privileged:
            return 0  # someone else's directory planted in a shared spool is no request desk
        stamp = (st.st_mtime_ns, st.st_ino)
        if stamp == self._stamp:
            return 0
        self._stamp = stamp
        junk: list[str] = []
        taken = drop_dirs.drop_files(root, per_user=MAX_REQUESTS_PER_USER, total=MAX_REQUESTS, junk=junk)
        self._sweep(root, junk)
        if taken:
            self._stamp = None  # consumed: look again next pass, until none is left
        resent = sum(self._take(root / name, named_uid) for name, named_uid in taken)
        if resent:
            self.wake_delivery()
        return resent

    @staticmethod
    def _sweep(root: Path, junk: list[str]) -> None:
        """Remove what is no request (the daemon owns the directory, so it may, sticky or
        not); a directory someone filled stays, and is passed over at every look."""
        swept = 0
        for name in junk:
            try:
                os.unlink(root / name)  # never follows: a symlink itself goes
                swept += 1
            except IsADirectoryError:
                with contextlib.suppress(OSError):
                    os.rmdir(root / name)
                    swept += 1
            except OSError:
                continue
        if swept:
            log.warning("%s: %d entr%s that were no resend request removed", root, swept,
                        "y" if swept == 1 else "ies")

    def _take(self, path: Path, named_uid: int) -> bool:
        try:
            alert_id, uid = _read(path)
            if uid != named_uid:
                raise safe_json.SpoolFormatError(f"named for uid {named_uid}, owned by uid {uid}")
        except (OSError, safe_json.SpoolFormatError) as exc:
            log.warning("resend request %r ignored and removed: %s", path.name, exc)
            alert_id = None
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)  # consumed, whatever becomes of it: one request, one resend at most
        if alert_id is None:
            return False
        try:
            if uid not in self.privileged:
                run_id = self.outbox.run_of(alert_id)
                if run_id is None or self.run_owner(run_id) != uid:
                    raise ResendRefused(f"uid {uid} does not own the run of alert {alert_id!r}")
            channels = self.outbox.resend(alert_id)
        except (ResendRefused, OSError, safe_json.SpoolFormatError) as exc:
            log.warning("resend of alert %r (requested by uid %d) refused: %s", alert_id, uid, exc)
            return False
        log.info("resending alert %s to %s, as uid %d asked", alert_id, ", ".join(channels), uid)
        return True
