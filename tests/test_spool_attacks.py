"""Attacks on the root daemon by a local user of a shared spool, reproduced
with real processes: a user's symlinks never lead the daemon outside the
spool, a user's directories cannot use up the daemon's inotify watches, and
a run whose record was deleted is not reported as killed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

import pytest

from sentinel.formats import safe_json, spool
from sentinel.model.alerts import AlertKind
from tests.daemon_harness import DaemonProcess, titles
from tests.fakes import FakeBark
from tests.users import become, shared_spool, user_python
from tests.victims.harness import ROOT, Victim
from tests.waiting import wait_for

HOSTILE = ROOT / "tests" / "daemon_victims" / "hostile_run.py"
K = AlertKind


class Hostile:
    """``hostile_run.py`` as a process of ``uid`` (None: this user)."""

    def __init__(self, spool_dir: Path, mode: str, *args: str, uid: Optional[int] = None) -> None:
        python = user_python() if uid is not None else sys.executable
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(ROOT),
               "PYTHONDONTWRITEBYTECODE": "1", "HOME": "/nonexistent"}
        self.proc = subprocess.Popen([python, str(HOSTILE), mode, str(spool_dir), *args], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     preexec_fn=become(uid) if uid is not None else None)
        self.run_id = self._line("READY").split()[1]

    def _line(self, word: str) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.startswith(word), f"expected {word!r}, got {line!r} (exit {self.proc.poll()})"
        return line

    def done(self) -> None:
        self._line("DONE")

    def end(self) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        return self.proc.wait(60)

    def __enter__(self) -> Hostile:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


def bark_daemon(tmp_path: Path, bark: FakeBark, spool_dir: Path, **settings: Any) -> DaemonProcess:
    return DaemonProcess(tmp_path / "d", {"phone": {"type": "bark", "url": bark.key_url}}, spool=spool_dir,
                         **settings)


def message_texts(bark: FakeBark) -> set[str]:
    return {push.get("body", "").split("\n", 1)[0] for push in bark.pushes
            if "Message" in push.get("title", "")}


def victim_files(directory: Path, count: int) -> dict[str, bytes]:
    """Files outside the spool named as a run's messages are (root's, valid messages)."""
    directory.mkdir(mode=0o755)
    files = {}
    for seq in range(1, count + 1):
        data = json.dumps(spool.Message(seq=seq, time=1.0, text=f"victim {seq}").to_dict()).encode()
        (directory / f"{seq:08d}.json").write_bytes(data)
        files[f"{seq:08d}.json"] = data
    return files


def assert_untouched(directory: Path, files: dict[str, bytes]) -> None:
    assert {p.name: p.read_bytes() for p in directory.iterdir()} == files


# ---------------------------------------------------------------- symlinks


def test_messages_swapped_for_a_symlink_never_make_root_delete_outside_the_spool(
        tmp_path: Path, shared: Path, other_uid: int, bark: FakeBark) -> None:
    spool_path = shared_spool(shared)
    count = 150
    victim = shared / "victim"
    files = victim_files(victim, count)
    # Every message counts here: the per-run message limit (tests/test_shared_host_attacks.py) is lifted.
    limits = {"per_run_per_minute": 10 * count, "per_user_per_minute": 10 * count,
              "max_pending_per_user": 10 * count}
    with bark_daemon(tmp_path, bark, spool_path, message_limits=limits) as daemon, \
            Hostile(spool_path, "swap-msg", str(victim), str(count), uid=other_uid) as user:
        user.done()
        # Every message is delivered (those met while msg/ was a symlink at the next look) ...
        wanted = {f"m{seq}" for seq in range(1, count + 1)}
        wait_for(lambda: wanted <= message_texts(bark), 60, what="every message delivered")
        wait_for(lambda: not list((spool_path / user.run_id / "msg").iterdir()), 30,
                 what="every delivered message file removed")
        assert user.end() == 0
        wait_for(lambda: any(t.startswith("✅") for t in titles(bark)), 30, what="the finished alert")
        daemon.stop()
    # ... and every file of the same name outside the spool is still there, unchanged.
    assert_untouched(victim, files)
    assert not any("victim" in push.get("body", "") for push in bark.pushes)


STAGE_TRAPS = """
import os, sys
from sentinel.formats import safe_json, spool
planted, swapped, elsewhere = sys.argv[1:]
# msg/ planted as a symlink to a directory of (the user's own, valid) messages outside the spool.
outside = os.path.join(elsewhere, "msgs")
os.mkdir(outside)
for seq in (1, 2):
    safe_json.write_json(os.path.join(outside, f"{seq:08d}.json"),
                     spool.Message(seq=seq, time=1.0, text="forged message").to_dict())
os.symlink(outside, os.path.join(planted, "msg"))
# The whole run directory swapped for a symlink to a copy holding a forged final record and messages.
forged = os.path.join(elsewhere, "forged-run")
os.mkdir(forged)
os.symlink(outside, os.path.join(forged, "msg"))
safe_json.write_json(os.path.join(forged, "final.json"),
                 spool.FinalRecord(state="finished", ended=1.0, error="forged final").to_dict())
os.rename(swapped, swapped + ".away")
os.symlink(forged, swapped)
"""


def tree(path: Path) -> list[tuple[str, bytes]]:
    return sorted((str(p.relative_to(path)), p.read_bytes() if p.is_file() and not p.is_symlink() else b"")
                  for p in path.rglob("*"))


def test_a_symlinked_msg_dir_or_run_dir_is_never_followed(tmp_path: Path, shared: Path, other_uid: int,
                                                          bark: FakeBark) -> None:
    spool_path = shared_spool(shared)
    elsewhere = shared / "elsewhere"  # the user's own directory, outside the spool
    elsewhere.mkdir()
    os.chown(elsewhere, other_uid, other_uid)
    with bark_daemon(tmp_path, bark, spool_path, log_level="debug") as daemon, \
            Hostile(spool_path, "idle", uid=other_uid) as planted, \
            Hostile(spool_path, "idle", uid=other_uid) as swapped:
        for run in (planted, swapped):
            run.done()
            daemon.wait_log(f"tracking {run.run_id}")
        subprocess.run([user_python(), "-c", STAGE_TRAPS, str(spool_path / planted.run_id),
                        str(spool_path / swapped.run_id), str(elsewhere)],
                       check=True, preexec_fn=become(other_uid), env={"PYTHONPATH": str(ROOT)})
        staged = tree(elsewhere / "msgs")
        assert planted.end() == 0 and swapped.end() == 0
        wait_for(lambda: len(titles(bark)) >= 2, 30, what="an ending alert for each run")
        daemon.stop()
    assert not any("forged" in push.get("body", "") for push in bark.pushes), bark.pushes
    assert [a.kind for a in daemon.journal(planted.run_id)] == [K.FINISHED]
    [alert] = daemon.journal(swapped.run_id)
    assert alert.kind is K.KILLED and alert.reason in ("record_deleted", "record_deleted_exit_known")
    # The messages outside the spool were neither delivered nor removed (the
    # swapped run's own process writes its beats and final record through
    # the symlink, as any process would: those are its files to write).
    assert tree(elsewhere / "msgs") == staged and len(staged) == 2
    assert (elsewhere / "forged-run" / "msg").is_symlink()


# ---------------------------------------------------------------- a deleted run directory


def test_a_run_whose_directory_was_deleted_is_not_reported_killed(tmp_path: Path, bark: FakeBark) -> None:
    resume = tmp_path / "resume"
    with bark_daemon(tmp_path, bark, tmp_path / "spool", log_level="debug") as daemon:
        with Victim.watch(daemon.tmp, "progress-then-stall-then-resume", "--name", "erased",
                          "--heartbeat", "0.1", "--resume-file", str(resume),
                          spool_dir=daemon.spool).start() as v:
            run_id = v.ready()
            v.expect("STALLED")
            daemon.wait_log(f"tracking {run_id}")
            # rm -rf while the process lives on. Moved out of the spool first, in one rename:
            # an rmtree in place races the heartbeat's temporary files (ENOTEMPTY, ENOENT).
            erased = tmp_path / "erased"
            os.rename(daemon.spool / run_id, erased)
            shutil.rmtree(erased)
            resume.touch()
            assert v.wait() == 0  # it ended cleanly, but nothing in the spool can say so
        wait_for(lambda: titles(bark), 30, what="the alert for the erased run")
        daemon.stop()
    [push] = bark.pushes
    [alert] = daemon.journal(run_id)
    assert alert.kind is K.KILLED
    if alert.exit_code is None:  # the kernel did not report the exit status (before Linux 6.15)
        assert alert.reason == "record_deleted"
        assert push["title"] == "☠️ Ended (run record deleted): erased"
        assert "its run record was deleted, so how it ended is unknown" in push["body"]
    else:  # it did: the status is named, and only that
        assert alert.reason == "record_deleted_exit_known" and alert.exit_code == 0
        assert push["title"] == "☠️ Exited with code 0: erased"
        assert "its run record was deleted while it ran" in push["body"]
        assert "os._exit" not in push["body"]
    assert not push["title"].startswith("☠️ Killed")


# ---------------------------------------------------------------- inotify


def inotify_watches(pid: int) -> int:
    """How many inotify watches process ``pid`` holds (from /proc/<pid>/fdinfo)."""
    total = 0
    for info in Path(f"/proc/{pid}/fdinfo").iterdir():
        try:
            total += sum(1 for line in info.read_text().splitlines() if line.startswith("inotify wd:"))
        except OSError:
            continue
    return total


def test_a_users_directories_cost_the_daemon_no_inotify_watches(tmp_path: Path, shared: Path,
                                                                other_uid: int, bark: FakeBark) -> None:
    spool_path = shared_spool(shared)
    with bark_daemon(tmp_path, bark, spool_path, log_level="debug") as daemon, \
            Hostile(spool_path, "live-on", uid=other_uid) as user:
        user.done()
        daemon.wait_log(f"tracking {user.run_id}")
        assert daemon.proc is not None
        before = inotify_watches(daemon.proc.pid)
        script = ("import os, sys\n"
                  "for top in sys.argv[1:]:\n"
                  "    for i in range(2000):\n"
                  "        os.makedirs(os.path.join(top, f'd{i}', 'sub'))\n")
        subprocess.run([user_python(), "-c", script, str(spool_path / user.run_id / "junk"),
                        str(spool_path / user.run_id / "msg" / "junk"), str(spool_path / "not-a-run")],
                       check=True, preexec_fn=become(other_uid))
        with Hostile(spool_path, "live-on", uid=other_uid) as second:
            second.done()
            daemon.wait_log(f"tracking {second.run_id}")
            # The spool, and per run its directory and msg/: nothing for 12,000 directories.
            assert before <= 3 and inotify_watches(daemon.proc.pid) <= 5
            assert second.end() == 0
        assert user.end() == 0
        wait_for(lambda: sum(t.startswith("✅") for t in titles(bark)) >= 2, 30, what="both finishes")
        daemon.stop()


UNSHARE = shutil.which("unshare")


def limited_watches(limit: int) -> list[str]:
    """Run the daemon in its own user namespace whose inotify watch limit is
    ``limit`` (namespaced: nobody else on the machine is affected)."""
    return [str(UNSHARE), "--user", "--map-root-user", "sh", "-c",
            f'echo {limit} > /proc/sys/user/max_inotify_watches && exec "$@"', "sh"]


@pytest.mark.skipif(UNSHARE is None, reason="needs unshare(1)")
def test_with_the_inotify_limit_used_up_finals_and_messages_still_arrive(tmp_path: Path,
                                                                        bark: FakeBark) -> None:
    if os.geteuid() != 0 or subprocess.run([*limited_watches(2), "true"]).returncode != 0:
        pytest.skip("needs root and user namespaces")
    spool_path = tmp_path / "spool"
    safe_json.make_private_dir(spool_path)
    # Two watches: the spool and the first run's directory; the second run gets none.
    daemon = bark_daemon(tmp_path, bark, spool_path, log_level="debug")
    daemon.wrapper = limited_watches(2)
    with daemon, Hostile(spool_path, "live-on") as first:
        first.done()
        daemon.wait_log(f"tracking {first.run_id}")
        with Hostile(spool_path, "live-on") as second:
            second.done()
            # Finished and its message delivered while the process still lives: seen
            # by the periodic rescan alone.
            wait_for(lambda: sum(t.startswith("✅") for t in titles(bark)) >= 2, 30, what="both finishes")
            wait_for(lambda: len(message_texts(bark)) >= 1 and
                     sum("Message" in t for t in titles(bark)) >= 2, 30, what="both messages")
            assert second.proc.poll() is None
            daemon_json = spool_path / spool.DAEMON_FILE
            for _ in range(2):  # two more rescans: the failure is not logged again
                seen = daemon_json.stat().st_mtime_ns
                wait_for(lambda seen=seen: daemon_json.stat().st_mtime_ns != seen, 30, what="a rescan")
            assert second.end() == 0
        assert first.end() == 0
        log = daemon.log()
        daemon.stop()
    assert log.count("cannot add an inotify watch") == 1, log
    assert "fs.inotify.max_user_watches" in log
