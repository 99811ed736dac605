"""Fixtures shared by the test modules."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from tests.victims.harness import wait_for


@pytest.fixture
def child() -> Iterator[subprocess.Popen[bytes]]:
    """A live process that waits (on stdin) until the test is over."""
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    yield proc
    proc.kill()
    proc.wait()


@pytest.fixture
def memory_cgroup() -> Iterator[Path]:
    """A cgroup limited to 96 MiB (v1 memory controller), or skip."""
    root = Path("/sys/fs/cgroup/memory")
    if os.geteuid() != 0 or not (root / "memory.limit_in_bytes").exists():
        pytest.skip("needs root and a cgroup v1 memory controller to cage an OOM victim")
    cage = root / f"sentinel-test-{os.getpid()}"
    try:
        cage.mkdir()
        (cage / "memory.limit_in_bytes").write_text(str(96 * 1024 * 1024))
    except OSError as exc:
        pytest.skip(f"cannot create a memory cgroup: {exc}")
    yield cage
    for _ in range(100):  # the dead victim leaves the group asynchronously
        try:
            cage.rmdir()
            break
        except OSError:
            wait_for(lambda: not (cage / "cgroup.procs").read_text().strip(), 10, what="an empty cgroup")
