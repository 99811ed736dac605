"""Attacks by local users on a root daemon's shared spool, reproduced with
real users (created here with ``useradd``), their real processes, a real
daemon and fakes on 127.0.0.1: inline channels aimed at internal services
(SSRF) or by the hundred, a forged user name, a restricted channel, a
``javascript:`` link, and a flood of messages burying another user's alert."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from sentinel.delivery.workers import MAX_WORKERS
from sentinel.model.alerts import AlertKind
from tests.daemon_harness import DaemonProcess, bark_title, wait_for_push
from tests.fakes import FakeBark, FakeSlack
from tests.user_victims import forged_run, user_run
from tests.users import (
    home_for,
    make_shared_spool,
    shared_for_user_python,  # noqa: F401  (the fixture "shared")
    user_name,
)
from tests.victims.harness import VICTIMS
from tests.waiting import wait_for

K = AlertKind
KILL = "SIGKILL"  # how the kernel names a kill -9
# The users' own interpreter: the suite's may live where only root can reach.
USER_PYTHON = "/usr/bin/python3"
FORGED_RUN = VICTIMS / "forged_run.py"




def thread_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def inline_bark(service: FakeBark, key: str) -> dict[str, str]:
    return {"type": "bark", "url": f"{service.url}/{key}/"}


# ---------------------------------------------------------------- inline channels


def test_inline_channels_are_off_in_a_shared_spool(tmp_path: Path, shared: Path, mallory: int) -> None:
    """Mallory aims ten inline channels at an internal service: none is ever
    contacted; her run is still watched, alerted to the default channel, and
    the refusal is logged once, with the run and the reason."""
    spool = make_shared_spool(shared)
    with FakeBark() as phone, FakeBark(keys=[f"internal{n:04d}" for n in range(10)]) as internal:
        channels = [json.dumps(inline_bark(internal, key)) for key in internal.keys]
        with DaemonProcess(tmp_path / "d", {"phone": {"type": "bark", "url": phone.key_url}},
                           spool=spool) as daemon:
            run = user_run(shared, spool, mallory, "sleep-forever", "--name", "ssrf",
                           *(arg for c in channels for arg in ("--channel", c)))
            with run:
                run_id = run.ready()
                run.expect("RUNNING")
                daemon.wait_log(f"{run_id}/run.json: refused")
                run.kill()
                wait_for_push(phone, K.KILLED, "ssrf", signal=KILL)
            daemon.stop()
        assert internal.received() == []
        log = daemon.log()
        refusals = [line for line in log.splitlines() if "refused" in line]
        assert len(refusals) == 1, log  # once, with the run and the reason
        assert (f"{run_id}/run.json: refused 10 inline channels (#1…#10): inline channels are "
                "not allowed here (config inline_channels.allow)") in refusals[0]


def test_allowed_inline_channels_are_capped_bounded_and_never_read_back(
        tmp_path: Path, shared: Path, mallory: int) -> None:
    """Allowed for 127.0.0.1 with a cap of 20: of Mallory's 30 channels 20 are
    used (the rest refused in one line), the daemon's threads stay bounded
    while all of them hang, the internal service's answer never reaches the
    log (its status does), and no inline key is logged."""
    spool = make_shared_spool(shared)
    keys = [f"internal{n:04d}xyz" for n in range(30)]
    with FakeBark() as phone, FakeBark(keys=keys) as internal:
        internal.fail(status=200, body=json.dumps({"code": 200, "message": "INTERNAL-PAGE-CONTENT"}))
        internal.hold_after(0)  # every request hangs until released: a worker each
        policy = {"allow": True, "hosts": ["127.0.0.1"], "max_per_run": 20}
        with DaemonProcess(tmp_path / "d", {"phone": {"type": "bark", "url": phone.key_url}},
                           spool=spool, inline_channels=policy) as daemon:
            assert daemon.proc is not None
            before = thread_count(daemon.proc.pid)
            args = [arg for key in keys for arg in ("--channel", json.dumps(inline_bark(internal, key)))]
            with user_run(shared, spool, mallory, "sleep-forever", "--name", "many", *args) as run:
                run_id = run.ready()
                daemon.wait_log(f"{run_id}/run.json: inline channel #21 and any later ones refused")
                run.expect("RUNNING")
                run.kill()
                wait_for(lambda: len(internal.received()) >= MAX_WORKERS, 30, what="every worker busy")
                busiest = thread_count(daemon.proc.pid)
                internal.release()
                wait_for_push(phone, K.KILLED, "many", signal=KILL)
                wait_for(lambda: len({r.json()["device_key"] for r in internal.received()}) == 20, 60,
                         what="the 20 allowed inline channels")
            daemon.stop()
        assert busiest - before <= MAX_WORKERS  # not one thread per channel
        assert {r.json()["device_key"] for r in internal.received()} == set(keys[:20])
        log = daemon.log()
        assert log.count("inline channel #21 and any later ones refused: at most 20 per run") == 1, log
        assert "INTERNAL-PAGE-CONTENT" not in log
        assert "HTTP 200 (answer not shown for inline channels)" in log
        assert not [key for key in keys if key in log]  # secrets stay masked


# ---------------------------------------------------------------- identity and named channels


def test_forged_user_restricted_channel_and_script_link(tmp_path: Path, shared: Path, mallory: int,
                                                        alice: int) -> None:
    """Mallory's hand-written record claims to be root, names Alice's channel
    and carries a javascript: link: the alert names Mallory, goes to the
    defaults, has no button; the refusal is logged once."""
    spool = make_shared_spool(shared)
    with FakeSlack(min_interval=0.0) as team, FakeSlack(min_interval=0.0) as alices:
        channels = {"team": {"type": "slack", "webhook_url": team.webhook_url},
                    "alice-only": {"type": "slack", "webhook_url": alices.webhook_url,
                                   "users": [user_name(alice)]}}
        with DaemonProcess(tmp_path / "d", channels, spool=spool, default_channels=["team"]) as daemon:
            fields = {"user": "root", "channels": ["alice-only"], "name": "forged",
                      "labels": {"url": "javascript:alert(document.cookie)"}}
            with forged_run(home_for(shared, mallory), spool, mallory, fields) as run:
                run_id = run.ready()
                daemon.wait_log(f"{run_id}/run.json: channel 'alice-only' refused")  # admitted
                run.kill()
                wait_for(lambda: team.messages, 30, what="the kill alert on the default channel")
            daemon.stop()
        [message] = team.messages
        assert message["text"].startswith(bark_title(K.KILLED, "forged", signal=KILL))
        shown = json.dumps(message)
        assert f"{user_name(mallory)}@" in shown and "root@" not in shown
        assert "javascript:" not in shown and not [b for b in message["blocks"] if b["type"] == "actions"]
        assert alices.received() == []
        log = daemon.log()
        refusal = f"channel 'alice-only' refused: not open to user {user_name(mallory)}"
        assert log.count(refusal) == 1, log


# ---------------------------------------------------------------- starvation


def test_a_message_flood_does_not_delay_another_users_kill_alert(tmp_path: Path, shared: Path,
                                                                 mallory: int, alice: int) -> None:
    """Mallory's run sends 1,000 messages on the shared channel; Alice's run is
    SIGKILLed meanwhile. At the fake, Alice's kill alert comes before every
    queued message but the one already in flight; only the per-run limit of
    Mallory's messages is taken, the rest dropped and counted."""
    spool = make_shared_spool(shared)
    with FakeBark() as phone:
        phone.hold_after(0)  # the first request hangs: the flood queues up behind it
        with DaemonProcess(tmp_path / "d", {"phone": {"type": "bark", "url": phone.key_url}},
                           spool=spool, message_limits={"per_run_per_minute": 30}) as daemon:
            flood = [arg for n in range(1000) for arg in ("--send", f"flood {n}")]
            with user_run(shared, spool, mallory, "sleep-forever", "--name", "flood", "--steps", "1",
                          *flood) as flooder, \
                    user_run(shared, spool, alice, "sleep-forever", "--name", "victim") as victim:
                flood_id = flooder.ready()
                victim.ready()
                victim.expect("RUNNING")
                flooder.expect("RUNNING")  # all 1,000 sent
                daemon.wait_log(f"run {flood_id}: messages dropped from now on")
                victim.kill()
                daemon.wait_log("running -> killed")
                phone.release()
                wait_for_push(phone, K.KILLED, "victim", signal=KILL)
                wait_for(lambda: sum(p["body"].startswith("flood ") for p in phone.pushes) == 30, 60,
                         what="the 30 messages taken")
                flooder.kill()
                daemon.wait_log(f"run {flood_id}: 970 message(s) dropped in all")
            daemon.stop()
        killed = bark_title(K.KILLED, "victim", signal=KILL)
        bodies = [p["body"] if p["body"].startswith("flood ") else "KILL" for p in phone.pushes
                  if p["body"].startswith("flood ") or p["title"] == killed]
        kill_at = bodies.index("KILL")
        assert kill_at <= 1, bodies[:5]  # only the message already in flight went before it
        assert bodies.count("KILL") == 1 and len(bodies) == 31
        assert [b for b in bodies if b != "KILL"] == [f"flood {n}" for n in range(30)]  # in order
        assert daemon.log().count(f"run {flood_id}: messages dropped from now on") == 1


if sys.platform != "linux":  # pragma: no cover
    pytest.skip("Linux only", allow_module_level=True)
