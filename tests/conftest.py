"""Fixtures shared by the test modules."""

from __future__ import annotations

import subprocess
import sys
from typing import Iterator

import pytest


@pytest.fixture
def child() -> Iterator[subprocess.Popen[bytes]]:
    """A live process that waits (on stdin) until the test is over."""
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    yield proc
    proc.kill()
    proc.wait()
