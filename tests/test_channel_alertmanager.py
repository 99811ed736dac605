"""The alertmanager channel against a strict fake of Alertmanager's v2 API."""

from __future__ import annotations

from datetime import datetime

import pytest

from sentinel.channels import build_channel
from sentinel.channels.base import DeliveryError
from sentinel.model.alerts import Alert, AlertKind
from tests.fakes.alertmanager import FakeAlertmanager, validate_alert


def killed(**changes: object) -> Alert:
    values = dict(alert_id="r1.001.killed", kind=AlertKind.KILLED, created=1_750_000_000.0, run_id="r1",
                  run_name="resnet", hostname="box", pid=42, labels={"project": "cifar", "job": "j7",
                                                                    "rank": "3"},
                  started=1_749_990_000.0, detail="killed (SIGKILL)")
    values.update(changes)
    return Alert(**values)  # type: ignore[arg-type]


def test_posts_one_valid_postable_alert_with_routing_labels() -> None:
    with FakeAlertmanager() as am:
        channel = build_channel("am", {"type": "alertmanager", "url": am.url, "host": "node-a"})
        answer = channel.send(killed())
        assert answer == "Alertmanager: 200"
        [posted] = am.alerts
    assert posted["labels"] == {"alertname": "RunKilled", "severity": "critical", "host": "node-a",
                                "run": "resnet", "run_id": "r1", "source": "run-sentinel",
                                "project": "cifar", "job": "j7", "rank": "3"}
    assert posted["annotations"]["summary"] == "Killed: resnet"
    assert "killed (SIGKILL)" in posted["annotations"]["description"]
    starts = datetime.fromisoformat(posted["startsAt"].replace("Z", "+00:00")).timestamp()
    ends = datetime.fromisoformat(posted["endsAt"].replace("Z", "+00:00")).timestamp()
    assert starts == 1_750_000_000.0
    assert ends - starts >= 3600  # fires once, resolves an hour after it was sent


def test_hostile_run_fields_become_safe_label_values() -> None:
    alert = killed(run_name="x\x1b[31m\nevil" + "n" * 500, labels={"job": "\u202ejob", "rank": ""},
                   hostname="box")
    channel = build_channel("am", {"type": "alertmanager", "url": "http://127.0.0.1:1"})
    [posted] = channel.payload(alert)
    assert validate_alert(posted) is None
    labels = posted["labels"]
    assert "\x1b" not in labels["run"] and "\n" not in labels["run"] and len(labels["run"]) <= 128
    assert labels["job"] == "?job"
    assert "rank" not in labels  # empty means absent to Alertmanager
    assert labels["host"] == "box"  # no daemon host (an inline channel): the record's


def test_alert_names_differ_per_ending() -> None:
    channel = build_channel("am", {"type": "alertmanager", "url": "http://127.0.0.1:1"})
    names = {channel.payload(killed(kind=kind))[0]["labels"]["alertname"] for kind in AlertKind}
    assert len(names) == len(AlertKind)


def test_ha_pair_success_if_any_peer_accepts() -> None:
    with FakeAlertmanager() as up, FakeAlertmanager() as down:
        down.fail("5xx")
        channel = build_channel("am", {"type": "alertmanager", "urls": [down.url, up.url]})
        assert channel.send(killed()) == "Alertmanager: 200 (1/2 peers)"
        assert len(up.alerts) == 1 and len(down.received()) == 1  # posted to both


def test_ha_pair_transient_when_none_accepts_permanent_only_if_all_refuse() -> None:
    with FakeAlertmanager() as a, FakeAlertmanager() as b:
        channel = build_channel("am", {"type": "alertmanager", "urls": [a.url, b.url]})
        a.fail("4xx")
        b.fail("5xx")
        with pytest.raises(DeliveryError) as info:
            channel.send(killed())
        assert not info.value.permanent and "no Alertmanager took the alert" in str(info.value)
        b.fail("4xx")
        with pytest.raises(DeliveryError) as info:
            channel.send(killed())
        assert info.value.permanent


def test_connection_refused_is_transient() -> None:
    with FakeAlertmanager() as am:
        am.fail("down")
        channel = build_channel("am", {"type": "alertmanager", "url": am.url})
        with pytest.raises(DeliveryError) as info:
            channel.send(killed())
        assert not info.value.permanent


def test_password_in_url_is_masked() -> None:
    with FakeAlertmanager() as am:
        url = am.url.replace("http://", "http://ops:s3cretpass@")
        am.fail("4xx")
        channel = build_channel("am", {"type": "alertmanager", "url": url})
        with pytest.raises(DeliveryError) as info:
            channel.send(killed())
        assert "s3cretpass" not in str(info.value)
        assert "s3cretpass" in channel.secrets()


def test_a_job_alert_is_labelled_with_its_job_and_failing_rank_unless_the_run_set_them() -> None:
    channel = build_channel("am", {"type": "alertmanager", "url": "http://127.0.0.1:1"})
    job = {"id": "4242", "launcher": "torchrun", "ranks": "4", "cause_rank": "3"}
    [posted] = channel.payload(killed(labels={"project": "cifar"}, job=job))
    assert (posted["labels"]["job"], posted["labels"]["rank"]) == ("4242", "3")
    [own] = channel.payload(killed(job=job))  # the run's own labels win
    assert (own["labels"]["job"], own["labels"]["rank"]) == ("j7", "3")
