"""A daemon object in the test process, and the run records its tests write by hand.

    from tests.in_process_daemon import in_process_daemon  # noqa: F401  (fixture "daemon")
    def test_x(daemon: Daemon) -> None: ...

    d = open_daemon(plain_config(tmp_path, budgets=...), tmp_path)   # another config; d.close()

The object is the real ``sentinel.daemon.loop.Daemon`` with a real outbox,
its spool and state directory under ``tmp_path``, no channels and no kernel
log (a path that does not exist): the test drives its loop (``rescan``,
``poll_once``) with real processes and reads the verdicts from the outbox.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, Iterator

import pytest

from sentinel.daemon.config import Config
from sentinel.daemon.loop import Daemon
from sentinel.delivery.outbox import Outbox
from sentinel.formats import safe_json, spool
from sentinel.host.procid import ProcessIdentity

NOW = 1_750_000_000.0  # the tests' wall clock: the loop is handed it, never time.time()


def plain_config(tmp_path: Path, **settings: Any) -> Config:
    """Spool and state directory under ``tmp_path``, no default channels, ``settings`` over it."""
    return Config(spool=tmp_path / "spool", state_dir=tmp_path / "state", default_channels=[], **settings)


def open_daemon(config: Config, tmp_path: Path) -> Daemon:
    """The daemon object for ``config``, its spool and state directory made (0700) if missing."""
    safe_json.make_private_dir(config.spool_path())
    safe_json.make_private_dir(config.state_path())
    return Daemon(config, Outbox(config.state_path() / "outbox"), kmsg_path=str(tmp_path / "no-kmsg"))


@pytest.fixture(name="daemon")
def in_process_daemon(tmp_path: Path) -> Iterator[Daemon]:
    """``open_daemon`` of ``plain_config``, closed when the test ends."""
    d = open_daemon(plain_config(tmp_path), tmp_path)
    yield d
    d.close()


def write_run(spool_path: Path, ident: ProcessIdentity, name: str, *, at: float = NOW,
              **fields: Any) -> spool.RunPaths:
    """The run record ``sentinel run`` would write for live process ``ident`` (its run id
    made at ``at``), ``fields`` over it, written into a new run directory; its paths."""
    run_id = spool.new_run_id(ident.pid, at)
    record = spool.RunRecord(
        run_id=run_id, pid=ident.pid, start_ticks=ident.start_ticks, boot_id=ident.boot_id,
        hostname=socket.gethostname(), uid=os.getuid(), user="tester", cmdline=["python"], cwd="/",
        started=NOW, heartbeat_interval=10.0, stall_timeout=86400.0, name=name, source="run", **fields)
    paths = spool.RunPaths(spool_path, run_id)
    safe_json.make_private_dir(paths.dir)
    safe_json.write_json(paths.run, record.to_dict())
    return paths
