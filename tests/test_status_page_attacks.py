"""The status page (``/``, ``/status.json``), built by the root daemon and
served on a TCP port any local user can reach, attacked by real throw-away
users: it must show no more than every user may see (no traceback, labels
or metrics read from a user's 0700 run directory), and never follow a run
name planted as a symlink out of the spool, even where the kernel would
(``fs.protected_symlinks=0``, set here and restored)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.daemon_harness import DaemonProcess
from tests.fakes import FakeBark
from tests.fleet_harness import free_port, get
from tests.users import as_user, become, home_for, make_shared_spool, shared_dir, throwaway_user, user_python
from tests.victims.harness import WATCH_VICTIM, Victim
from tests.waiting import wait_for

pytest.importorskip("prometheus_client", reason="pip install 'run-sentinel[prometheus]'")

LABEL_SECRET = "alices-label-secret"
PROTECTED_SYMLINKS = Path("/proc/sys/fs/protected_symlinks")


@pytest.fixture
def unprotected_symlinks() -> Iterator[None]:
    """fs.protected_symlinks=0 for the test (root follows users' links in sticky directories)."""
    if os.geteuid() != 0:
        pytest.skip("setting a sysctl needs root")
    before = PROTECTED_SYMLINKS.read_text().strip()
    try:
        PROTECTED_SYMLINKS.write_text("0\n")
    except OSError as exc:
        pytest.skip(f"cannot set fs.protected_symlinks: {exc}")
    try:
        yield
    finally:
        PROTECTED_SYMLINKS.write_text(before + "\n")


def run_as(uid: int, home: Path, spool: Path, *args: str) -> Victim:
    return Victim(user_python(), WATCH_VICTIM, ["--heartbeat", "0.2", *args], home, spool_dir=spool,
                  preexec_fn=become(uid)).start()


def test_the_status_page_shows_what_every_user_may_see_and_follows_no_link(
        tmp_path: Path, unprotected_symlinks: None) -> None:
    port = free_port()
    with shared_dir() as shared, throwaway_user() as alice, throwaway_user() as mallory, FakeBark() as bark:
        spool = make_shared_spool(shared)
        alice_home = home_for(shared, alice)
        private_spool = alice_home / "home" / "private-spool"  # hers alone, outside the shared spool
        with DaemonProcess(tmp_path, {"phone": {"type": "bark", "url": bark.key_url}}, spool=spool,
                           metrics={"listen": f"127.0.0.1:{port}"}) as daemon, \
                run_as(alice, alice_home, spool, "sleep-forever", "--name", "alices-run",
                       "--label", f"secret={LABEL_SECRET}") as shared_run, \
                run_as(alice, alice_home, private_spool, "sleep-forever", "--name",
                       "alices-private") as hidden:
            shared_run.ready()
            hidden_id = hidden.ready()
            crashed = run_as(alice, alice_home, spool, "exception", "--name", "alices-crash")
            crashed.ready()
            crashed.wait()
            # Mallory's run "directory": a symlink to Alice's private run, named like a run.
            planted = spool / hidden_id
            as_user(mallory, "ln", "-s", str(private_spool / hidden_id), str(planted))
            base = f"http://127.0.0.1:{port}"

            def both_runs() -> Any:
                report = json.loads(get(base + "/status.json"))
                names = {r["name"] for r in report["runs"]}
                return report if {"alices-run", "alices-crash"} <= names else None

            report = wait_for(both_runs, 30, what="the runs on the status page")
            page = get(base + "/").decode()
            for shown in (json.dumps(report), page):
                assert "alices-private" not in shown  # the link was never followed
                assert LABEL_SECRET not in shown and "boom from victim" not in shown
                assert "RuntimeError" not in shown and str(alice_home) not in shown
            assert hidden_id in report["skipped"]  # listed by its name only, not read
            by_name = {r["name"]: r for r in report["runs"]}
            assert by_name["alices-crash"]["state"] == "crashed"  # what everyone may know stays
            assert by_name["alices-run"]["labels"] == {} and by_name["alices-crash"]["error"] is None
            daemon.stop()
