"""WeCom group robot: markdown (4,096 bytes) and text (2,048 bytes) against a
fake robot that answers errcode in the body and throttles at 20/min."""

from __future__ import annotations

import pytest

from sentinel.channels import build_channel
from sentinel.channels.base import DeliveryError
from sentinel.channels.wecom import WeComChannel
from sentinel.model.alerts import AlertKind
from tests.fakes.samples import sample_alert
from tests.fakes.wecom import MAX_MARKDOWN_BYTES, MAX_TEXT_BYTES, FakeWeCom


@pytest.fixture
def robot():
    with FakeWeCom() as fake:
        yield fake


def channel_for(robot, **extra):
    return build_channel("team", {"type": "wecom", "webhook_url": robot.webhook_url, **extra})


def test_markdown_alert_is_accepted(robot):
    assert channel_for(robot).send(sample_alert()) == "WeCom: errcode 0 ok"
    (message,) = robot.messages
    content = message["markdown"]["content"]
    assert message["msgtype"] == "markdown"
    assert content.startswith('### <font color="warning">💥 Crashed: resnet50-lr3e-4</font>')
    assert "RuntimeError: CUDA error: an illegal memory access was encountered" in content
    assert "[Open in SwanLab](https://swanlab.cn/@alice/cifar10/runs/x1y2z3)" in content


def test_text_format_mentions_people(robot):
    channel = channel_for(robot, format="text", mentioned_mobile_list=["13800000000", "@all"], language="zh")
    channel.send(sample_alert(AlertKind.KILLED))
    (message,) = robot.messages
    assert message["msgtype"] == "text"
    assert message["text"]["mentioned_mobile_list"] == ["13800000000", "@all"]
    assert message["text"]["content"].startswith("☠️ 被 OOM killer 杀死")


@pytest.mark.parametrize("fmt, limit", [("markdown", MAX_MARKDOWN_BYTES), ("text", MAX_TEXT_BYTES)])
def test_long_traceback_fits_and_keeps_its_end(robot, fmt, limit):
    frames = "\n".join(f'  File "模块_{i}.py", line {i}, in f\n    y = <lambda>(x) * {i}' for i in range(500))
    alert = sample_alert(error=f"Traceback (most recent call last):\n{frames}\nKeyError: 'the end'")
    channel_for(robot, format=fmt).send(alert)
    (message,) = robot.messages
    content = message[fmt]["content"]
    assert len(content.encode("utf-8")) <= limit
    assert "KeyError: 'the end'" in content and "模块_0.py" not in content
    assert "Crashed: resnet50-lr3e-4" in content


def test_throttled_is_transient(robot):
    robot.limit = 1
    channel_for(robot).send(sample_alert(n=1))
    with pytest.raises(DeliveryError) as err:
        channel_for(robot).send(sample_alert(n=2))
    assert not err.value.permanent and err.value.retry_after == 60.0 and "45009" in str(err.value)
    assert "hint" not in str(err.value)


def test_unknown_key_is_permanent_and_masked(robot):
    url = robot.webhook_url.replace(robot.key, "deadbeef-0000-1111-2222-333333333333")
    with pytest.raises(DeliveryError) as err:
        build_channel("team", {"type": "wecom", "webhook_url": url}).send(sample_alert())
    assert err.value.permanent and "93000" in str(err.value) and "Webhook URL again" in str(err.value)
    assert "deadbeef-0000" not in str(err.value)


@pytest.mark.parametrize("mode, permanent", [("5xx", False), ("down", False), ("4xx", True)])
def test_http_failures(robot, mode, permanent):
    robot.fail(mode)
    with pytest.raises(DeliveryError) as err:
        channel_for(robot).send(sample_alert())
    assert err.value.permanent is permanent


@pytest.mark.parametrize("fmt", ["markdown", "text"])
def test_digest_fits(robot, fmt):
    alerts = [sample_alert(AlertKind.CRASHED, n=i, run_name=f"训练-{i:03d}") for i in range(50)]
    channel = channel_for(robot, format=fmt, language="zh")
    count = channel.digest_size(alerts)
    assert 1 < count < 50
    channel.send_digest(alerts[:count])
    content = robot.messages[0][fmt]["content"]
    assert all(f"训练-{i:03d}" in content for i in range(count))


def test_check_options():
    hook = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send"
    assert WeComChannel.check_options({"webhook_url": hook + "?key=abc"}) == []
    assert [k for k, _ in WeComChannel.check_options({"webhook_url": hook})] == ["webhook_url"]
    problems = WeComChannel.check_options(
        {"webhook_url": hook + "?key=a", "format": "html", "mentioned_list": "all"}
    )
    assert {k for k, _ in problems} == {"format", "mentioned_list"}
    problems = WeComChannel.check_options({"webhook_url": hook + "?key=a", "mentioned_list": ["@all"]})
    assert [k for k, _ in problems] == ["mentioned_list"]  # markdown cannot mention
    channel = build_channel("t", {"type": "wecom", "webhook_url": hook + "?key=the-robot-key"})
    assert "the-robot-key" in channel.secrets()
