"""DingTalk custom robot: signed markdown requests against a fake robot that
checks the signature, the timestamp window, keywords and 20/min."""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import quote_plus

import pytest

from sentinel.channels import build_channel
from sentinel.channels.base import DeliveryError
from sentinel.channels.dingtalk import (
    DingTalkChannel,
    render_digest_markdown,
    render_markdown,
    sign,
    signed_url,
)
from sentinel.model.alerts import AlertKind
from tests.fakes import FakeDingTalk
from tests.fakes.samples import FakeClock, sample_alert


@pytest.fixture
def robot():
    with FakeDingTalk() as fake:
        yield fake


def channel_for(robot, **extra):
    return build_channel(
        "team", {"type": "dingtalk", "webhook_url": robot.webhook_url, "secret": robot.secret, **extra}
    )


def test_markdown_payload_signed_and_accepted(robot):
    alert = sample_alert(AlertKind.KILLED)
    answer = channel_for(robot).send(alert)

    assert answer == "DingTalk: errcode 0 ok"
    (request,) = robot.received()
    title, text = render_markdown(alert, "en")
    assert request.json() == {"msgtype": "markdown", "markdown": {"title": title, "text": text}}
    assert title == "☠️ Killed by the OOM killer: resnet50-lr3e-4"
    assert set(request.query) == {"access_token", "timestamp", "sign"}
    assert request.query["sign"] == robot.expected_sign(request.query["timestamp"])


def test_signature_matches_the_documented_recipe():
    secret, timestamp = "SEC0123456789abcdef", 1700000000123
    expected = base64.b64encode(
        hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256).digest()
    )
    assert sign(secret, timestamp) == quote_plus(expected)
    hook = "https://oapi.dingtalk.com/robot/send?access_token=abc"
    url = signed_url(hook, secret, timestamp / 1000)
    assert url == f"{hook}&timestamp={timestamp}&sign={sign(secret, timestamp)}"
    assert (
        signed_url("https://x/robot/send?access_token=abc", None, 1.0)
        == "https://x/robot/send?access_token=abc"
    )


def test_signature_is_fresh_for_every_request(robot):
    channel = channel_for(robot)
    clock = FakeClock(1_750_000_000.0)
    robot.clock = clock
    channel.clock = clock
    channel.send(sample_alert(n=1))
    clock.advance(1.5)
    channel.send(sample_alert(n=2))
    first, second = robot.received()
    assert first.query["timestamp"] != second.query["timestamp"]
    assert first.query["sign"] != second.query["sign"]
    assert [r.json()["msgtype"] for r in robot.received()] == ["markdown", "markdown"]
    assert len(robot.messages) == 2


def test_at_mobiles_are_named_in_the_text_too(robot):
    channel = channel_for(robot, at_mobiles=["13800000000", 13900000000])
    channel.send(sample_alert())
    body = robot.received()[0].json()
    assert body["at"] == {"atMobiles": ["13800000000", "13900000000"], "isAtAll": False}
    assert body["markdown"]["text"].endswith("\n\n@13800000000 @13900000000")
    channel_for(robot, at_all=True).send(sample_alert())
    assert robot.received()[1].json()["at"] == {"atMobiles": [], "isAtAll": True}


def test_wrong_secret_is_permanent_and_names_the_setting(robot):
    channel = build_channel(
        "team", {"type": "dingtalk", "webhook_url": robot.webhook_url, "secret": "SECnot-the-right-one"}
    )
    with pytest.raises(DeliveryError) as err:
        channel.send(sample_alert())
    assert err.value.permanent
    assert "errcode 310000 sign not match" in str(err.value)
    assert "`secret` must be the robot's 加签 secret" in str(err.value)


@pytest.mark.parametrize(
    "offset, accepted", [(-7200.0, False), (3590.0, True), (-3590.0, True), (7200.0, False)]
)
def test_timestamp_window_is_one_hour(robot, offset, accepted):
    channel = channel_for(robot)
    channel.clock = FakeClock(robot.clock() + offset)  # this machine's clock is off by `offset`
    if accepted:
        assert channel.send(sample_alert()) == "DingTalk: errcode 0 ok"
    else:
        with pytest.raises(DeliveryError) as err:
            channel.send(sample_alert())
        assert err.value.permanent and "check this machine's clock" in str(err.value)


def test_keyword_rule(robot):
    robot.keywords = ["sentinel"]  # every alert names run-sentinel
    channel_for(robot).send(sample_alert())
    robot.keywords = ["deploy"]
    with pytest.raises(DeliveryError) as err:
        channel_for(robot).send(sample_alert())
    assert err.value.permanent and "自定义关键词" in str(err.value)


def test_send_too_fast_is_transient_for_ten_minutes():
    with FakeDingTalk(limit=2) as robot:
        channel = channel_for(robot)
        channel.send(sample_alert(n=1))
        channel.send(sample_alert(n=2))
        with pytest.raises(DeliveryError) as err:
            channel.send(sample_alert(n=3))
    assert not err.value.permanent
    assert err.value.retry_after == 600.0
    assert "130101" in str(err.value)
    assert [r.status for r in robot.received()] == [200, 200, 200]  # HTTP 200 proves nothing


def test_unknown_token_is_permanent(robot):
    channel = build_channel(
        "team",
        {
            "type": "dingtalk",
            "secret": robot.secret,
            "webhook_url": robot.url + "/robot/send?access_token=nope",
        },
    )
    with pytest.raises(DeliveryError) as err:
        channel.send(sample_alert())
    assert err.value.permanent and "300001" in str(err.value) and "access_token" in str(err.value)


def test_service_busy_is_transient(robot):
    robot.fail(status=200, body='{"errcode": -1, "errmsg": "系统繁忙"}')
    with pytest.raises(DeliveryError) as err:
        channel_for(robot).send(sample_alert())
    assert not err.value.permanent


def test_huge_alert_stays_under_20000_bytes(robot):
    tail = "\n".join(f"  第 {i} 行：错误信息 " + "错" * 300 for i in range(40))
    alert = sample_alert(error=tail, run_name="名" * 900, labels={"project": "项目" * 400})
    channel_for(robot).send(alert)
    (request,) = robot.received()
    assert len(request.json()["markdown"]["text"].encode("utf-8")) < 20000
    assert robot.messages  # accepted


def test_digest_of_fifty_alerts_fits_and_is_accepted(robot):
    alerts = [sample_alert(AlertKind.CRASHED, n=i, run_name="运行" * 60) for i in range(50)]
    channel = channel_for(robot, language="zh")
    count = channel.digest_size(alerts)
    assert 1 <= count <= 50
    channel.send_digest(alerts[:count])
    body = robot.received()[0].json()
    title, text = render_digest_markdown(alerts[:count], "zh")
    assert body["markdown"] == {"title": title, "text": text}
    assert title == f"run-sentinel: {count} 条告警"
    assert len(text.encode("utf-8")) < 20000
    assert text.count("训练崩溃") == count


def test_check_options():
    hook = "https://oapi.dingtalk.com/robot/send"
    assert DingTalkChannel.check_options({"webhook_url": hook + "?access_token=x"}) == []
    problems = DingTalkChannel.check_options({"webhook_url": hook, "at_mobiles": "138", "at_all": "yes"})
    assert {k for k, _ in problems} == {"at_mobiles", "at_all"}
    assert [k for k, _ in DingTalkChannel.check_options({"webhook_url": hook})] == ["webhook_url"]
    assert [k for k, _ in DingTalkChannel.check_options({})] == ["webhook_url"]


def test_robots_share_pacing_by_webhook(robot):
    a = channel_for(robot)
    b = build_channel("other-name", {"type": "dingtalk", "webhook_url": robot.webhook_url})
    assert a.pace_key() == b.pace_key()
    assert robot.access_token not in a.pace_key()
