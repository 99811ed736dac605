"""Throw-away local users and shared directories, for attacks by another user (root only).

    with throwaway_user() as uid:                     # or the ``other_uid`` fixture
        subprocess.run([...], preexec_fn=become(uid)) # the child acts as that user

    def test_x(shared: Path, other_uid: int) -> None:
        spool_path = shared_spool(shared)             # sticky 1777, as /var/lib/sentinel/spool
        as_user(other_uid, "mkdir", str(spool_path / "x"))

A user is created with ``useradd`` (no home) and removed afterwards; a test
not running as root, or without useradd, is skipped.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import pytest

# An interpreter every user may run (the test venv's may sit in root's home).
USER_PYTHON = "/usr/bin/python3"


@contextmanager
def throwaway_user() -> Iterator[int]:
    """A new local user's uid, removed on exit."""
    if os.geteuid() != 0:
        pytest.skip("creating a user needs root")
    name = f"sn{uuid.uuid4().hex[:10]}"
    result = subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"useradd failed: {result.stderr.strip()}")
    try:
        yield pwd.getpwnam(name).pw_uid
    finally:
        subprocess.run(["userdel", name], check=False, capture_output=True)


@pytest.fixture
def other_uid() -> Iterator[int]:
    """A throw-away local user (root only), removed afterwards."""
    with throwaway_user() as uid:
        yield uid


# Two more, for tests of one user's attack on another's alerts.
mallory = other_uid
alice = other_uid


def user_name(uid: int) -> str:
    return pwd.getpwuid(uid).pw_name


def become(uid: int) -> Callable[[], None]:
    """A ``preexec_fn``: the child drops root for ``uid`` (its group, no others)."""
    gid = pwd.getpwuid(uid).pw_gid

    def drop() -> None:
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)

    return drop


def as_user(uid: int, *argv: str) -> None:
    subprocess.run(list(argv), check=True, preexec_fn=become(uid))


def user_python() -> str:
    if not os.access(USER_PYTHON, os.X_OK):
        pytest.skip(f"no {USER_PYTHON} for another user to run")
    return USER_PYTHON


@contextmanager
def shared_dir() -> Iterator[Path]:
    """A directory other users can reach (pytest's own tmp is root's, 0700)."""
    path = Path(tempfile.mkdtemp(prefix="sn-shared-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def shared() -> Iterator[Path]:
    with shared_dir() as path:
        yield path


@pytest.fixture(name="shared")
def shared_for_user_python() -> Iterator[Path]:
    """``shared``, for tests that run ``USER_PYTHON`` as another user: skipped where there is none."""
    user_python()
    with shared_dir() as path:
        yield path


def make_shared_spool(parent: Path) -> Path:
    path = parent / "spool"
    path.mkdir()
    path.chmod(0o1777)  # every user writes here, as in /var/lib/sentinel/spool
    return path


shared_spool = make_shared_spool


def home_for(parent: Path, uid: int) -> Path:
    """A working directory ``uid`` owns under ``parent``."""
    path = parent / f"home-{uid}"
    (path / "home").mkdir(parents=True)
    for directory in (path, path / "home"):
        os.chown(directory, uid, pwd.getpwuid(uid).pw_gid)
    return path
