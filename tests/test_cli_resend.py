"""``sentinel history --resend ID``: a dead letter goes out once more, through a real daemon."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from sentinel.model.alerts import AlertKind as K
from tests.cli_helpers import run_sentinel, sentinel_env
from tests.daemon_harness import DaemonProcess, wait_for_push
from tests.fakes import FakeBark
from tests.users import USER_PYTHON, become, home_for, make_shared_spool, shared_dir, throwaway_user
from tests.victims.harness import WATCH_VICTIM, Victim
from tests.waiting import wait_for


def history(daemon: DaemonProcess, *args: str) -> Any:
    return run_sentinel(["history", "--config", str(daemon.config_path), *args], sentinel_env(daemon.spool))


def deliveries(daemon: DaemonProcess) -> list[dict[str, Any]]:
    done = history(daemon, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def dead_lettered_finish(daemon: DaemonProcess, bark: FakeBark, name: str) -> str:
    """A finished run whose alert the fake refuses for good; its alert id."""
    bark.fail("4xx")
    with Victim.watch(daemon.tmp, "finish", "--name", name, spool_dir=daemon.spool).start() as v:
        v.ready()
        v.wait()
    wait_for(lambda: [d for d in deliveries(daemon) if d["run_name"] == name and d["state"] == "dead"],
             30, what="a dead letter")
    [dead] = [d for d in deliveries(daemon) if d["run_name"] == name]
    bark.recover()
    return str(dead["alert_id"])


def test_resend_through_a_running_daemon_arrives_once(tmp_path: Path, bark: FakeBark) -> None:
    with DaemonProcess(tmp_path, {"phone": {"type": "bark", "url": bark.key_url}}) as daemon:
        alert_id = dead_lettered_finish(daemon, bark, "doomed")
        assert not bark.pushes

        done = history(daemon, "--resend", alert_id)
        assert done.returncode == 0, done.stderr
        assert "asked the daemon to resend" in done.stdout
        wait_for_push(bark, K.FINISHED, "doomed")
        daemon.wait_log(f"resending alert {alert_id} to phone, as uid 0 asked")
        wait_for(lambda: [d["state"] for d in deliveries(daemon)] == ["delivered"], what="delivered")
        assert not list((daemon.spool / ".resend").iterdir())  # the request was consumed

        again = history(daemon, "--resend", alert_id)
        assert again.returncode == 1
        assert f"alert {alert_id} has no dead letter to resend (delivered for phone)" in again.stderr
        assert daemon.stop() == 0
        assert daemon.dead_letters() == []
    assert len(bark.pushes) == 1


def test_resend_without_a_daemon_shows_retrying_then_goes_out(tmp_path: Path, bark: FakeBark) -> None:
    daemon = DaemonProcess(tmp_path, {"phone": {"type": "bark", "url": bark.key_url}})
    with daemon:
        alert_id = dead_lettered_finish(daemon, bark, "later")
        assert daemon.stop() == 0
    done = history(daemon, "--resend", alert_id)
    assert done.returncode == 0, done.stderr
    assert f"alert {alert_id} is pending again for phone" in done.stdout
    [shown] = deliveries(daemon)
    assert (shown["state"], shown["attempts"], shown["error"]) == ("retrying", 0, None)
    assert "retrying" in history(daemon).stdout
    assert not bark.pushes
    with daemon.start():
        wait_for_push(bark, K.FINISHED, "later")
        wait_for(lambda: [d["state"] for d in deliveries(daemon)] == ["delivered"], what="delivered")
        assert daemon.stop() == 0
    assert len(bark.pushes) == 1


def test_resend_refuses_unknown_and_malformed_ids(tmp_path: Path, bark: FakeBark) -> None:
    with DaemonProcess(tmp_path, {"phone": {"type": "bark", "url": bark.key_url}}) as daemon:
        unknown = history(daemon, "--resend", "no-such-alert")
        assert unknown.returncode == 1
        assert "no alert 'no-such-alert' in the outbox" in unknown.stderr
        malformed = history(daemon, "--resend", "../outbox")
        assert malformed.returncode == 2
        assert "is not an alert id" in malformed.stderr
        assert not list((daemon.spool / ".resend").iterdir())  # nothing was asked of the daemon


def ask_as(spool: Path, uid: int, alert_id: str) -> Path:
    """A resend request that ``uid`` owns, as ``sentinel history --resend`` leaves it."""
    path = spool / ".resend" / f"{uid}-{alert_id}.json"
    path.write_text(json.dumps({"v": 1, "alert_id": alert_id, "created": 1.0}))
    os.chown(path, uid, -1)
    return path


def dead_letter(daemon: DaemonProcess, bark: FakeBark, shared: Path, uid: int) -> dict[str, Any]:
    """The delivery of a finished run of ``uid``'s that Bark refused (dead-lettered);
    Bark takes pushes again afterwards."""
    bark.fail("4xx")
    with Victim(USER_PYTHON, WATCH_VICTIM, ["finish", "--name", "alices"], home_for(shared, uid),
                spool_dir=daemon.spool, preexec_fn=become(uid)).start() as v:
        v.ready()
        v.wait()
    wait_for(lambda: [d for d in deliveries(daemon) if d["state"] == "dead"], 30, what="a dead letter")
    [dead] = deliveries(daemon)
    bark.recover()
    return dead


def test_in_a_shared_spool_only_the_runs_owner_may_resend(tmp_path: Path, bark: FakeBark) -> None:
    """Mallory's request to resend Alice's alert is refused (and consumed); Alice's goes out once."""
    if not os.access(USER_PYTHON, os.X_OK):
        pytest.skip(f"{USER_PYTHON} is needed to run as another user")
    with shared_dir() as shared, throwaway_user() as alice, throwaway_user() as mallory, \
            DaemonProcess(tmp_path, {"phone": {"type": "bark", "url": bark.key_url}},
                          spool=make_shared_spool(shared)) as daemon:
        spool = daemon.spool
        dead = dead_letter(daemon, bark, shared, alice)

        ask_as(spool, mallory, dead["alert_id"])
        daemon.wait_log(f"requested by uid {mallory}) refused: uid {mallory} does not own the run")
        assert not list((spool / ".resend").iterdir())  # consumed all the same
        assert [d["state"] for d in deliveries(daemon)] == ["dead"]

        ask_as(spool, alice, dead["alert_id"])
        wait_for_push(bark, K.FINISHED, "alices")
        assert daemon.stop() == 0
    assert len(bark.pushes) == 1
