"""Local accounts: who a uid is, and which groups it belongs to. Stdlib only.

In a shared spool the one fact about a run's author the daemon can trust is
the owner uid of its files; the ``user`` a record names is a claim. Alerts
show the account of the verified uid, and the admin's per-channel
``users``/``groups`` restrictions are judged on it.
"""

from __future__ import annotations

import grp
import os
import pwd
from typing import Optional


def account_name(uid: int) -> Optional[str]:
    """The login name of ``uid``, or None if it has no account here."""
    try:
        return pwd.getpwuid(uid).pw_name
    except (KeyError, OverflowError):
        return None


def verified_user(uid: int, claimed: str = "") -> str:
    """What an alert shows as the run's user: ``uid``'s account name (the
    ``claimed`` name only if it is that account's), else ``uid <n>``."""
    name = account_name(uid)
    if name is None:
        return f"uid {uid}"
    return claimed if claimed == name else name


def group_names(uid: int) -> set[str]:
    """The names of ``uid``'s primary and supplementary groups (empty without an account)."""
    try:
        entry = pwd.getpwuid(uid)
    except (KeyError, OverflowError):
        return set()
    names: set[str] = set()
    try:
        gids = os.getgrouplist(entry.pw_name, entry.pw_gid)  # the primary group among them
    except OSError:
        gids = [entry.pw_gid]
    for gid in gids:
        try:
            names.add(grp.getgrgid(gid).gr_name)
        except KeyError:
            continue
    return names


def user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True
