"""Apprise (optional extra): a real Apprise posting ``json://`` to a loopback fake."""

from __future__ import annotations

import pytest

from sentinel.channels import build_channel
from sentinel.channels.apprise_bridge import AppriseChannel
from sentinel.channels.base import DeliveryError
from sentinel.model.alerts import AlertKind
from tests.fakes.samples import sample_alert
from tests.fakes.webhook import FakeAppriseJSON

pytest.importorskip("apprise", reason="the apprise extra is not installed (tests/run.py installs it)")


@pytest.fixture
def receiver():
    with FakeAppriseJSON() as fake:
        yield fake


def channel_for(receiver, **extra):
    return build_channel("tail", {"type": "apprise", "url": receiver.apprise_url, **extra})


def test_alert_goes_through_apprise(receiver):
    assert channel_for(receiver).send(sample_alert()) == "apprise: sent"
    (note,) = receiver.messages
    assert note["title"] == "💥 Crashed: resnet50-lr3e-4" and note["type"] == "failure"
    assert "RuntimeError: CUDA error: an illegal memory access was encountered" in note["message"]


def test_kinds_map_to_apprise_types(receiver):
    channel = channel_for(receiver, language="zh")
    channel.send(sample_alert(AlertKind.FINISHED))
    channel.send(sample_alert(AlertKind.STALLED))
    assert [n["type"] for n in receiver.messages] == ["success", "warning"]
    assert receiver.messages[0]["title"].startswith("✅ 训练完成")


def test_a_failure_is_retried_by_us_with_apprise_s_reason(receiver):
    receiver.fail("5xx")
    with pytest.raises(DeliveryError) as err:
        channel_for(receiver).send(sample_alert())
    assert not err.value.permanent and "503" in str(err.value)


def test_digest(receiver):
    alerts = [sample_alert(AlertKind.KILLED, n=i, run_name=f"run-{i:03d}") for i in range(30)]
    channel = channel_for(receiver)
    count = channel.digest_size(alerts)
    channel.send_digest(alerts[:count])
    assert receiver.messages[0]["title"] == f"run-sentinel: {count} alerts"
    assert all(f"run-{i:03d}" in receiver.messages[0]["message"] for i in range(count))


def test_check_options_and_secrets():
    assert AppriseChannel.check_options({"url": "json://example.org/x"}) == []
    assert [k for k, _ in AppriseChannel.check_options({"url": "nosuchscheme://x"})] == ["url"]
    assert [k for k, _ in AppriseChannel.check_options({})] == ["url"]
    channel = build_channel("t", {"type": "apprise", "url": "pover://userkey1234@apptoken5678"})
    assert "pover://userkey1234@apptoken5678" in channel.secrets() and "userkey1234" in channel.secrets()
