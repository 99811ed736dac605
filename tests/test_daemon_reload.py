"""SIGHUP / systemctl reload: a real daemon re-reads its config, refuses a bad one, keeps its state."""

from __future__ import annotations

import json
import os
import pwd
import signal
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from tests.daemon_harness import DaemonProcess
from tests.fakes import FakeBark
from tests.victims.harness import Victim
from tests.waiting import wait_for


@pytest.fixture
def barks() -> Iterator[tuple[FakeBark, FakeBark]]:
    with FakeBark() as first, FakeBark() as second:
        yield first, second


def killed(daemon: DaemonProcess, name: str) -> None:
    with Victim.watch(daemon.tmp, "sleep-forever", "--name", name, "--heartbeat", "0.1",
                      spool_dir=daemon.spool).start() as v:
        v.ready()
        v.expect("RUNNING")
        v.kill()
        v.wait()


def wait_for_kill_push(bark: FakeBark, name: str) -> None:
    """The kill alert for ``name`` at ``bark`` (headline with or without the kernel's signal name)."""
    wait_for(lambda: [p for p in bark.pushes if p.get("title", "").startswith("☠️ Killed")
                      and p["title"].endswith(f": {name}")], what=f"the kill push for {name}")


def rewrite(daemon: DaemonProcess, **changes: object) -> None:
    config = yaml.safe_load(daemon.config_path.read_text())
    config.update(changes)
    daemon.config_path.write_text(yaml.safe_dump(config))


def hup(daemon: DaemonProcess, expect: str) -> None:
    count = daemon.log().count(expect)
    assert daemon.proc is not None
    os.kill(daemon.proc.pid, signal.SIGHUP)
    wait_for(lambda: daemon.log().count(expect) > count, what=f"{expect!r} after SIGHUP")


def test_sighup_reloads_refuses_a_bad_config_and_keeps_state(tmp_path: Path,
                                                             barks: tuple[FakeBark, FakeBark]) -> None:
    first, second = barks
    with DaemonProcess(tmp_path, {"phone": {"type": "bark", "url": first.key_url}}) as daemon:
        assert daemon.notify is not None
        wait_for(lambda: any(s.startswith("STATUS=watching 0 run(s); 0 alert(s) pending")
                             for s in daemon.notify.states), what="a STATUS= line for systemctl status")
        killed(daemon, "before")
        wait_for_kill_push(first, "before")

        rewrite(daemon, channels={"phone": {"type": "bark", "url": second.key_url}})
        hup(daemon, "config reloaded")
        killed(daemon, "after")
        wait_for_kill_push(second, "after")
        assert not [p for p in first.pushes if "after" in p.get("title", "")]

        good = daemon.config_path.read_text()
        rewrite(daemon, stall_timeout="later", languag="en")
        hup(daemon, "reload refused")
        log = daemon.log()
        assert "stall_timeout" in log and "languag" in log  # every problem, by its key
        assert daemon.alive()
        killed(daemon, "still")  # the old config goes on
        wait_for_kill_push(second, "still")
        daemon.config_path.write_text(good)
        assert daemon.stop() == 0
    # Nothing was decided twice across the reloads.
    assert [p["title"].endswith(": before") for p in first.pushes + second.pushes].count(True) == 1


def test_sighup_applies_new_message_limits(tmp_path: Path, barks: tuple[FakeBark, FakeBark]) -> None:
    """The message limits come from the reloaded config, not the one the daemon started with."""
    phone, _ = barks
    with DaemonProcess(tmp_path, {"phone": {"type": "bark", "url": phone.key_url}}) as daemon:
        rewrite(daemon, message_limits={"per_run_per_minute": 2})
        hup(daemon, "config reloaded")
        sent = [arg for n in range(5) for arg in ("--send", f"note {n}")]
        with Victim.watch(daemon.tmp, "sleep-forever", "--name", "chatty", "--steps", "1", *sent,
                          spool_dir=daemon.spool).start() as v:
            run_id = v.ready()
            v.expect("RUNNING")  # all five sent
            daemon.wait_log(f"run {run_id}: messages dropped from now on")
            v.kill()
            v.wait()
        wait_for_kill_push(phone, "chatty")
        daemon.wait_log(f"run {run_id}: 3 message(s) dropped in all")
        assert daemon.stop() == 0
    assert [p["body"] for p in phone.pushes if p["body"].startswith("note ")] == ["note 0", "note 1"]


def test_sighup_applies_new_channel_access_rules(tmp_path: Path, barks: tuple[FakeBark, FakeBark]) -> None:
    """A channel opened to the run's user by a reload is used from then on."""
    everyone, team = barks
    me = pwd.getpwuid(os.getuid()).pw_name
    others = [user.pw_name for user in pwd.getpwall() if user.pw_uid != os.getuid()]
    if not others:
        pytest.skip("no other user on this host to open the channel to")
    channels = {"open": {"type": "bark", "url": everyone.key_url},
                "team": {"type": "bark", "url": team.key_url, "users": others[:1]}}

    def killed_on_team(name: str) -> None:
        with Victim.watch(daemon.tmp, "sleep-forever", "--name", name, "--heartbeat", "0.1",
                          "--channel", json.dumps("team"), spool_dir=daemon.spool).start() as v:
            v.ready()
            v.expect("RUNNING")
            v.kill()
            v.wait()

    with DaemonProcess(tmp_path, channels, default_channels=["open"]) as daemon:
        killed_on_team("refused")
        wait_for_kill_push(everyone, "refused")  # not open to this user: the default channel instead

        channels["team"]["users"] = [me]
        rewrite(daemon, channels=channels)
        hup(daemon, "config reloaded")
        killed_on_team("allowed")
        wait_for_kill_push(team, "allowed")
        assert daemon.stop() == 0
    assert not [p for p in team.pushes if p["title"].endswith(": refused")]
    assert not [p for p in everyone.pushes if p["title"].endswith(": allowed")]
