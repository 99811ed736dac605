"""Mutes and per-run alert_on: a real daemon, real victims, `sentinel mute` as users type it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sentinel.formats import mutes
from sentinel.model.alerts import AlertKind, check_alert_on
from tests.cli_helpers import run_sentinel, sentinel_env
from tests.daemon_harness import DaemonProcess, bark_title, titles, wait_for_push
from tests.fakes import FakeBark
from tests.victims.harness import Victim
from tests.waiting import wait_for

K = AlertKind


def stalled_then_killed(daemon: DaemonProcess, name: str) -> str:
    """A run that stalls (the daemon decides so), then is SIGKILLed; its run id."""
    with Victim.watch(daemon.tmp, "stall", "--name", name, "--heartbeat", "0.1", "--stall-timeout", "0.5",
                      spool_dir=daemon.spool).start() as v:
        run_id = v.ready()
        v.expect("STALLED")
        daemon.wait_log(f"run {run_id} (pid {v.pid}): running -> stalled")
        v.kill()
        daemon.wait_log(f"run {run_id} (pid {v.pid}): stalled -> killed")
    return run_id


def mute(daemon: DaemonProcess, *args: str) -> None:
    done = run_sentinel(["mute", *args, "--spool", str(daemon.spool)], sentinel_env(daemon.spool))
    assert done.returncode == 0, done.stderr


def test_a_muted_runs_stall_sends_nothing_but_its_kill_does(daemon: DaemonProcess, bark: FakeBark) -> None:
    mute(daemon, "hushed", "--for", "1h", "--ahead")
    shown = run_sentinel(["status", "--spool", str(daemon.spool)], sentinel_env(daemon.spool))
    assert f"muted: stall alerts of run 'hushed' for 60m more (by uid {os.geteuid()})" in shown.stdout
    run_id = stalled_then_killed(daemon, "hushed")
    wait_for_push(bark, K.KILLED, "hushed", signal="SIGKILL")
    assert bark_title(K.STALLED, "hushed") not in titles(bark)
    daemon.stop()
    assert [a.kind for a in daemon.journal(run_id)] == [K.STALLED, K.KILLED]  # still journalled


def test_muted_for_all_sends_not_even_the_kill(daemon: DaemonProcess, bark: FakeBark) -> None:
    mute(daemon, "--channel", "phone", "--all")
    quiet = stalled_then_killed(daemon, "quiet")
    run_sentinel(["unmute", "--channel", "phone", "--spool", str(daemon.spool)], sentinel_env(daemon.spool))
    loud = stalled_then_killed(daemon, "loud")  # unmuted: both alerts again
    wait_for_push(bark, K.KILLED, "loud", signal="SIGKILL")
    wait_for_push(bark, K.STALLED, "loud")
    assert not [t for t in titles(bark) if "quiet" in t]
    daemon.stop()
    assert [a.kind for a in daemon.journal(quiet)] == [K.STALLED, K.KILLED]
    assert [a.kind for a in daemon.journal(loud)] == [K.STALLED, K.KILLED]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to own a file as another user")
def test_another_users_mute_does_not_silence_my_run(daemon: DaemonProcess, bark: FakeBark) -> None:
    mute(daemon, "mine", "--all", "--ahead")
    # The same file, owned by someone else: the daemon goes by the owner, not the content.
    for path, _ in mutes.read_mutes(daemon.spool):
        os.chown(path, 4242, 4242)
    stalled_then_killed(daemon, "mine")
    wait_for_push(bark, K.STALLED, "mine")
    wait_for_push(bark, K.KILLED, "mine", signal="SIGKILL")


def test_an_expired_mute_is_no_mute(daemon: DaemonProcess, bark: FakeBark) -> None:
    now = time.time()
    mutes.write_mute(daemon.spool, mutes.Mute("run", "late", "all", now - 7200, now - 3600))
    stalled_then_killed(daemon, "late")
    wait_for_push(bark, K.KILLED, "late", signal="SIGKILL")
    wait_for_push(bark, K.STALLED, "late")


def test_per_run_alert_on_only_failures(daemon: DaemonProcess, bark: FakeBark, tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(
        "import sentinel\n"
        "with sentinel.watch(name='picky', alert_on=['crashed', 'killed']) as run:\n"
        "    run.beat(step=1)\n"
        "with sentinel.watch(name='picky-crash', alert_on=['crashed', 'killed']) as run:\n"
        "    raise SystemExit(3)\n")
    env = sentinel_env(daemon.spool)
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 3, done.stderr
    wait_for_push(bark, K.CRASHED, "picky-crash")
    daemon.stop()
    assert bark_title(K.FINISHED, "picky") not in titles(bark)


def test_alert_on_names_an_unknown_state_at_the_call() -> None:
    with pytest.raises(ValueError, match="unknown state 'crash'; states are: finished, crashed"):
        check_alert_on(["crash"])
    with pytest.raises(ValueError, match="must be a list"):
        check_alert_on("crashed")
    assert check_alert_on({"killed", "crashed"}) == ["crashed", "killed"]


def test_mute_usage_errors(tmp_path: Path) -> None:
    env = sentinel_env(tmp_path / "spool")
    both = run_sentinel(["mute", "r", "--project", "p", "--spool", str(tmp_path / "spool")], env)
    assert both.returncode == 2 and "exactly one" in both.stderr
    bad = run_sentinel(["mute", "r", "--for", "soon", "--spool", str(tmp_path / "spool")], env)
    assert bad.returncode == 2 and "not a duration" in bad.stderr
    none = run_sentinel(["unmute", "r", "--spool", str(tmp_path / "spool")], env)
    assert none.returncode == 1 and "no mute" in none.stderr


def history(daemon: DaemonProcess, *args: str) -> subprocess.CompletedProcess:
    done = run_sentinel(["history", *args, "--config", str(daemon.config_path)], sentinel_env(daemon.spool))
    assert done.returncode == 0, done.stderr
    return done


def test_history_says_delivered_muted_and_dead_lettered(daemon: DaemonProcess, bark: FakeBark) -> None:
    mute(daemon, "hushed", "--ahead")
    stalled_then_killed(daemon, "hushed")
    wait_for_push(bark, K.KILLED, "hushed", signal="SIGKILL")
    bark.fail("4xx")
    with Victim.watch(daemon.tmp, "finish", "--name", "doomed", spool_dir=daemon.spool).start() as v:
        v.ready()
        v.wait()
    wait_for(lambda: list((daemon.state / "outbox" / "dead").glob("*.json")), 30, what="a dead letter")
    rows = json.loads(history(daemon, "--json").stdout)  # beside the running daemon
    seen = [(r["run_name"], r["kind"], r["channel"], r["state"]) for r in rows]
    assert seen == [("hushed", "stalled", None, "none"), ("hushed", "killed", "phone", "delivered"),
                    ("doomed", "finished", "phone", "dead")]
    assert rows[2]["error"]  # why it is dead
    table = history(daemon, "hushed").stdout.splitlines()
    assert table[0].split() == ["WHEN", "RUN", "ENDING", "CHANNEL", "DELIVERY", "ALERT", "ID"]
    assert len(table) == 3 and "no channel (muted)" in table[1]
    # On a terminal 100 columns wide the table fits it; piped without $COLUMNS it is whole.
    narrow = run_sentinel(["history", "hushed", "--config", str(daemon.config_path)],
                          sentinel_env(daemon.spool, COLUMNS="100"))
    assert narrow.returncode == 0 and max(map(len, narrow.stdout.splitlines())) <= 100
    assert max(map(len, table)) > 100 and "…" in narrow.stdout
    assert "delivered" in table[2] and "doomed" not in "\n".join(table)


def test_history_says_which_reason_kept_an_alert_from_every_channel() -> None:
    from sentinel.cli.history import Delivery, describe
    from sentinel.daemon.tracking import silenced_because

    assert silenced_because(False, False, False, True) == "not in alert_on"
    assert silenced_because(False, True, True, True) == "muted"
    assert silenced_because(True, True, False, True) == "part of its job's alert"
    row = Delivery("a", 0.0, "r", "n", "finished", None, "none", silenced="not in alert_on")
    assert describe(row, 0.0) == "no channel (not in alert_on)"
