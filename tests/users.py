"""Throw-away local users and a shared spool, for attacks by another user (root only).

    def test_x(shared: Path, other_uid: int) -> None:
        spool_path = shared_spool(shared)             # sticky 1777, as /var/lib/sentinel/spool
        as_user(other_uid, "mkdir", str(spool_path / "x"))

The fixtures skip where they cannot work (not root, no useradd); the user
is removed afterwards.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Callable, Iterator

import pytest

# An interpreter every user may run (the test venv's may sit in root's home).
USER_PYTHON = "/usr/bin/python3"


@pytest.fixture
def other_uid() -> Iterator[int]:
    """A throw-away local user (root only), removed afterwards."""
    if os.geteuid() != 0:
        pytest.skip("creating a user needs root")
    name = f"sn{uuid.uuid4().hex[:10]}"
    result = subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"useradd failed: {result.stderr.strip()}")
    try:
        yield int(subprocess.run(["id", "-u", name], capture_output=True, text=True, check=True).stdout)
    finally:
        subprocess.run(["userdel", name], check=False, capture_output=True)


def become(uid: int) -> Callable[[], None]:
    """A ``preexec_fn`` that makes the child ``uid`` (group and supplementary groups too)."""
    def switch() -> None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    return switch


def as_user(uid: int, *argv: str) -> None:
    subprocess.run(list(argv), check=True, preexec_fn=lambda: os.setuid(uid))


def user_python() -> str:
    if not os.access(USER_PYTHON, os.X_OK):
        pytest.skip(f"no {USER_PYTHON} for another user to run")
    return USER_PYTHON


@pytest.fixture
def shared(tmp_path: Path) -> Iterator[Path]:
    """A directory other users can reach (pytest's own tmp is root's, 0700)."""
    path = Path(tempfile.mkdtemp(prefix="sn-shared-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def shared_spool(shared: Path) -> Path:
    path = shared / "spool"
    path.mkdir()
    path.chmod(0o1777)  # every user writes here, as in /var/lib/sentinel/spool
    return path
