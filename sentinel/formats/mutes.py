"""Mutes: "no stall alerts for this run / project / channel for a while".

The CLI writes one small file per mute into ``<spool>/.mutes/``; the daemon
reads them before every alert. This module owns that format (version 1)::

    <spool>/.mutes/                      0700 for a private spool; 1777 (sticky) when shared
      <uid>-<scope>-<hash>.json          {"v": 1, "scope": "run" | "project" | "channel",
                                          "target": "...", "what": "stalls" | "all",
                                          "created": t, "until": t | null}

Who may mute what is decided by the daemon, from the file's owner, never by
what a file says: a mute by root (or by the daemon's own user) applies to
every run; anyone else's applies only to runs they own. In a sticky
directory only a mute's owner (or root) can replace or remove it, so
``unmute`` removes the caller's own mutes. "stalls" silences stalled and
recovered alerts; "all" every alert and message of the run. An alert that
is muted is still journalled, with no channel. Stdlib only.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

from sentinel.formats import drop_dirs, safe_json

FORMAT_VERSION = 1
MUTES_DIR = ".mutes"
SCOPES = ("run", "project", "channel")
WHAT = ("stalls", "all")
STALL_KINDS = frozenset({"stalled", "recovered"})
MAX_MUTES = 1000  # files read per change of the directory; the rest are ignored
MAX_MUTES_PER_USER = 100  # so one user's files cannot crowd out everyone else's
TARGET_MAX_CHARS = 1024


@dataclass(frozen=True)
class Mute:
    scope: str
    target: str
    what: str
    created: float
    until: Optional[float]  # None: until unmuted
    uid: int = -1  # the file's owner, filled in by the reader

    def active(self, now: float) -> bool:
        return self.until is None or now < self.until

    def to_dict(self) -> dict[str, Any]:
        return {"v": FORMAT_VERSION, "scope": self.scope, "target": self.target, "what": self.what,
                "created": self.created, "until": self.until}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], uid: int) -> Mute:
        if data.get("v") != FORMAT_VERSION:
            raise safe_json.SpoolFormatError(f"unknown mute format version {data.get('v')!r}")
        scope, target, what = data.get("scope"), data.get("target"), data.get("what")
        created, until = data.get("created"), data.get("until")
        if scope not in SCOPES or what not in WHAT:
            raise safe_json.SpoolFormatError("scope or what is not one of the known values")
        if not isinstance(target, str) or not target or len(target) > TARGET_MAX_CHARS:
            raise safe_json.SpoolFormatError("target must be a non-empty string")
        if not isinstance(created, (int, float)) or not _finite(created) or not (
                until is None or (isinstance(until, (int, float)) and _finite(until))):
            raise safe_json.SpoolFormatError("created and until must be numbers")
        return cls(scope, target, what, float(created), None if until is None else float(until), uid)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def mutes_dir(spool_path: Path) -> Path:
    return Path(spool_path) / MUTES_DIR


def file_name(uid: int, scope: str, target: str) -> str:
    digest = hashlib.sha256(target.encode("utf-8", "surrogatepass")).hexdigest()[:24]
    return f"{uid}-{scope}-{digest}.json"


def ensure_dir(spool_path: Path) -> Path:
    """``.mutes/``: sticky and world-writable in a shared spool (like /tmp), else 0700."""
    return drop_dirs.ensure_drop_dir(spool_path, MUTES_DIR)


def write_mute(spool_path: Path, mute: Mute) -> Path:
    path = ensure_dir(spool_path) / file_name(os.geteuid(), mute.scope, mute.target)
    safe_json.write_json(path, mute.to_dict(), durable=True, mode=0o644)
    return path


def remove_mutes(spool_path: Path, scope: str, target: str) -> list[Path]:
    """Remove the caller's mute of ``target`` (root: everyone's); the paths removed."""
    removed = []
    for path, mute in read_mutes(spool_path):
        if mute.scope == scope and mute.target == target and os.geteuid() in (0, mute.uid):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
                removed.append(path)
    return removed


def read_mutes(spool_path: Path) -> list[tuple[Path, Mute]]:
    """Every well-formed mute file, expired or not; others are skipped."""
    root = mutes_dir(spool_path)
    out = []
    for name, named_uid in drop_dirs.drop_files(root, per_user=MAX_MUTES_PER_USER, total=MAX_MUTES):
        try:
            data, st = safe_json.read_json(root / name, max_bytes=8192)
            if st.st_nlink != 1:
                continue  # a hard link to someone else's file says nothing about its owner's wish
            if st.st_uid != named_uid:
                continue  # named for another user: planted to take their turn
            out.append((root / name, Mute.from_dict(data, st.st_uid)))
        except (OSError, safe_json.SpoolFormatError):
            continue
    return out


class MuteBook:
    """The daemon's view of the mutes, re-read whenever the directory changes."""

    def __init__(self, spool_path: Path) -> None:
        self.spool = Path(spool_path)
        self._stamp: Optional[tuple[int, int]] = None
        self._mutes: list[Mute] = []
        self.privileged = {0, os.geteuid()}

    def mutes(self) -> list[Mute]:
        try:
            st = os.lstat(mutes_dir(self.spool))
            stamp: Optional[tuple[int, int]] = (st.st_mtime_ns, st.st_ino)
            # Someone else's directory (or a symlink) planted in a shared spool is no mute book.
            if not stat.S_ISDIR(st.st_mode) or st.st_uid not in self.privileged:
                stamp = None
        except OSError:
            stamp = None
        if stamp != self._stamp:
            self._stamp = stamp
            self._mutes = [mute for _, mute in read_mutes(self.spool)] if stamp is not None else []
        return self._mutes

    def may_mute(self, mute: Mute, run_owner: int) -> bool:
        return mute.uid in self.privileged or mute.uid == run_owner

    def channels_for(self, kind: str, run_id: str, run_name: str, project: Optional[str], run_owner: int,
                     channels: list[str], now: Optional[float] = None) -> list[str]:
        """``channels`` less those a mute silences for this alert."""
        now = time.time() if now is None else now
        if not channels:
            return channels
        for mute in self.mutes():
            if not mute.active(now) or not self.may_mute(mute, run_owner):
                continue
            if mute.what == "stalls" and kind not in STALL_KINDS:
                continue
            if (mute.scope == "run" and mute.target in (run_id, run_name)) or (
                    mute.scope == "project" and project is not None and mute.target == project):
                return []
            if mute.scope == "channel":
                channels = [c for c in channels if c != mute.target]
        return channels
