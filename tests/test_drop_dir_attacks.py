"""The directories users write requests into (``.resend/``, ``.mutes/``), attacked
by a real throw-away user: names that sort first and cannot be removed, files
named for another user, and a directory planted before the daemon made its own.
Another user's request or mute must still be taken."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from sentinel.delivery import resend
from sentinel.formats import mutes
from tests.daemon_harness import DaemonProcess
from tests.fakes import FakeBark
from tests.test_cli_resend import ask_as, dead_letter, deliveries
from tests.users import (
    as_user,
    become,
    make_shared_spool,
    shared_for_user_python,  # noqa: F401  (the fixture "shared")
    throwaway_user,
    user_python,
)
from tests.victims.harness import ROOT
from tests.waiting import wait_for

# Mallory's junk: non-empty directories (nobody but she can empty them) named
# to sort before everyone's requests, and files named as root's.
PLANT = """
import os, sys
root, count = sys.argv[1], int(sys.argv[2])
for n in range(count):
    os.makedirs(f"{root}/0-{n:06d}.json/x")
    with open(f"{root}/0-{n:06d}x.json", "w") as f:
        f.write('{"v": 1}')
"""


def plant(uid: int, root: Path, count: int) -> None:
    as_user(uid, user_python(), "-c", PLANT, str(root), str(count))


def test_resend_requests_cannot_be_starved_by_unremovable_names(tmp_path: Path, shared: Path) -> None:
    with throwaway_user() as alice, throwaway_user() as mallory, FakeBark() as bark, \
            DaemonProcess(tmp_path, {"phone": {"type": "bark", "url": bark.key_url}},
                          spool=make_shared_spool(shared)) as daemon:
        spool = daemon.spool
        dead = dead_letter(daemon, bark, shared, alice)
        plant(mallory, spool / resend.RESEND_DIR, 150)  # more than a pass takes
        ask_as(spool, alice, dead["alert_id"])
        daemon.wait_log(f"resending alert {dead['alert_id']} to phone, as uid {alice} asked")
        wait_for(lambda: [d for d in deliveries(daemon) if d["state"] == "delivered"], 30, what="the resend")
        # Her files named as root's were never taken for requests, and are gone.
        wait_for(lambda: not (spool / resend.RESEND_DIR / "0-000000x.json").exists(), 30, what="the sweep")
        daemon.stop()


def test_mutes_cannot_be_crowded_out_and_a_planted_mutes_dir_is_moved_aside(shared: Path) -> None:
    """Mallory makes ``.mutes`` herself before any daemon did, then, in the
    daemon's own, 1,100 files and directories named to sort first: Alice's
    mute is still read, and none of Mallory's files passes for root's."""
    spool = make_shared_spool(shared)
    with throwaway_user() as alice, throwaway_user() as mallory:
        planted = spool / mutes.MUTES_DIR
        as_user(mallory, "sh", "-c", f"mkdir -m 0777 {planted} && touch {planted}/hers")
        root = mutes.ensure_dir(spool)  # what the daemon does at start
        assert root.stat().st_uid == os.geteuid()
        assert [n for n in os.listdir(spool) if n.startswith(".planted-mutes-")]
        plant(mallory, root, 1100)
        env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": "/nonexistent"}
        write = ("import sys, time; from pathlib import Path; from sentinel.formats import mutes; "
                 "mutes.write_mute(Path(sys.argv[1]), "
                 "mutes.Mute('run', 'alices-run', 'all', time.time(), None))")
        subprocess.run([user_python(), "-c", write, str(spool)], env=env, check=True,
                       preexec_fn=become(alice), cwd="/")
        found = mutes.read_mutes(spool)
        assert [m.uid for _, m in found if m.target == "alices-run"] == [alice]
        assert all(m.uid == mallory for _, m in found if m.target != "alices-run")
        assert not [p for p, _ in found if p.name.startswith("0-")]  # named as root's, owned by her: skipped
