"""Helpers for tests that run the `sentinel` command as users do."""

from __future__ import annotations

import os
import select
import subprocess
import sys
from pathlib import Path
from typing import IO, Any, Mapping, Optional, Sequence

from sentinel.formats import spool
from tests.processes import kill_group  # noqa: F401  (re-exported)
from tests.waiting import wait_for  # noqa: F401  (re-exported for tests that import it from here)

SENTINEL = [sys.executable, "-m", "sentinel"]


def sentinel_env(spool_path: Path, **extra: str) -> dict[str, str]:
    """The environment for a `sentinel` subprocess: its own spool, no config
    from this machine, the repository importable."""
    env = dict(os.environ)
    for name in ("SENTINEL_CONFIG", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM"):
        env.pop(name, None)
    env["SENTINEL_SPOOL"] = str(spool_path)
    env["XDG_CONFIG_HOME"] = str(spool_path.parent / "xdg-config")
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(extra)
    return env


def run_sentinel(args: Sequence[str], env: Mapping[str, str], timeout: float = 120,
                 **kwargs: Any) -> subprocess.CompletedProcess:
    return subprocess.run([*SENTINEL, *args], env=dict(env), capture_output=True, text=True,
                          timeout=timeout, **kwargs)


def read_line(stream: IO[bytes], timeout: float = 30.0) -> bytes:
    """One line from a pipe, failing (not hanging) if none comes."""
    ready, _, _ = select.select([stream], [], [], timeout)
    if not ready:
        raise AssertionError(f"no output within {timeout}s")
    return stream.readline()


def only_run(spool_path: Path) -> spool.RunPaths:
    run_ids = spool.list_run_ids(spool_path)
    assert len(run_ids) == 1, run_ids
    return spool.RunPaths(spool_path, run_ids[0])


def final_of(paths: spool.RunPaths) -> Optional[spool.FinalRecord]:
    try:
        return spool.read_final(paths.final)
    except FileNotFoundError:
        return None

