"""Slack incoming webhook: text + Block Kit against a fake webhook, and the
classification of every documented answer."""

from __future__ import annotations

import pytest

from sentinel.channels import build_channel
from sentinel.channels.base import DeliveryError
from sentinel.channels.slack import SlackChannel, render_slack
from sentinel.model.alerts import AlertKind
from tests.fakes import FakeSlack
from tests.fakes.samples import sample_alert


@pytest.fixture
def slack():
    with FakeSlack(min_interval=0.0) as fake:
        yield fake


def channel_for(slack, **extra):
    return build_channel("ops", {"type": "slack", "webhook_url": slack.webhook_url, **extra})


def test_payload_is_text_plus_blocks(slack):
    alert = sample_alert(AlertKind.CRASHED)
    assert channel_for(slack).send(alert) == "Slack: 200 ok"
    (request,) = slack.received()
    assert request.path == slack.hook_path
    body = request.json()
    assert body == render_slack(alert, "en")
    assert body["text"].startswith("💥 Crashed: resnet50-lr3e-4 — RuntimeError: CUDA error")
    types = [b["type"] for b in body["blocks"]]
    assert types == ["header", "section", "section", "section", "actions", "context"]
    assert body["blocks"][0]["text"] == {
        "type": "plain_text",
        "text": "💥 Crashed: resnet50-lr3e-4",
        "emoji": True,
    }
    assert body["blocks"][4]["elements"][0]["url"] == "https://swanlab.cn/@alice/cifar10/runs/x1y2z3"
    fields = [f["text"] for f in body["blocks"][2]["fields"]]
    assert "*Project*\ncifar10" in fields and "*Step*\n12,345" in fields


def test_chinese_payload(slack):
    channel_for(slack, language="zh").send(sample_alert(AlertKind.STALLED))
    body = slack.messages[0]
    assert body["blocks"][0]["text"]["text"] == "⏸️ 训练卡住: resnet50-lr3e-4"
    assert body["blocks"][1]["text"]["text"] == "已 12分30秒 无进展"


def test_long_content_respects_block_kit_limits(slack):
    alert = sample_alert(run_name="r" * 500, error="E" * 20000, scalars={f"m{i}": i for i in range(16)})
    channel_for(slack).send(alert)
    assert slack.received()[0].status == 200  # the fake enforces header 150 / section 3000 / 10 fields


def test_rate_limit_429_is_transient_and_honours_retry_after():
    with FakeSlack(min_interval=30.0) as slack:
        channel = channel_for(slack)
        channel.send(sample_alert(n=1))
        with pytest.raises(DeliveryError) as err:
            channel.send(sample_alert(n=2))
    assert not err.value.permanent
    assert err.value.retry_after == 30.0
    assert [r.status for r in slack.received()] == [200, 429]


@pytest.mark.parametrize(
    "status, body, hint",
    [
        (400, "invalid_payload", "run-sentinel bug"),
        (400, "no_text", "run-sentinel bug"),
        (400, "user_not_found", "does not exist"),
        (403, "action_prohibited", "ask a Slack admin"),
        (403, "invalid_token", "create a new incoming webhook"),
        (404, "no_service", "update webhook_url"),
        (404, "channel_not_found", "no longer exists"),
        (410, "channel_is_archived", "archived"),
        (400, "something_new", ""),
    ],
)
def test_documented_4xx_answers_are_permanent(slack, status, body, hint):
    slack.fail(status=status, body=body)
    with pytest.raises(DeliveryError) as err:
        channel_for(slack).send(sample_alert())
    assert err.value.permanent
    assert f"HTTP {status}" in str(err.value) and body in str(err.value) and hint in str(err.value)


def test_a_200_with_an_error_body_is_not_delivered(slack):
    slack.fail("200-error")
    with pytest.raises(DeliveryError) as err:
        channel_for(slack).send(sample_alert())
    assert err.value.permanent  # a documented error: as permanent as with its 4xx
    assert "HTTP 200 invalid_payload" in str(err.value) and "run-sentinel bug" in str(err.value)
    assert slack.messages == []  # the fake did not take it either
    slack.fail(status=200, body="<html>proxy says hello</html>")
    with pytest.raises(DeliveryError) as err:
        channel_for(slack).send(sample_alert())
    assert not err.value.permanent and "not ok" in str(err.value)  # not Slack's answer: retried
    slack.recover()
    assert channel_for(slack).send(sample_alert()) == "Slack: 200 ok"
    assert len(slack.messages) == 1


@pytest.mark.parametrize("status, body", [(500, "rollup_error"), (502, "bad gateway"), (503, "")])
def test_5xx_is_transient(slack, status, body):
    slack.fail(status=status, body=body)
    with pytest.raises(DeliveryError) as err:
        channel_for(slack).send(sample_alert())
    assert not err.value.permanent


def test_unknown_webhook_is_no_service(slack):
    channel = build_channel("ops", {"type": "slack", "webhook_url": slack.url + "/services/T1/B1/nope-nope"})
    with pytest.raises(DeliveryError) as err:
        channel.send(sample_alert())
    assert err.value.permanent and "no_service" in str(err.value)
    assert "nope-nope" not in str(err.value)


def test_check_options_and_secrets(slack):
    assert SlackChannel.check_options({"webhook_url": slack.webhook_url}) == []
    assert [k for k, _ in SlackChannel.check_options({})] == ["webhook_url"]
    assert [k for k, _ in SlackChannel.check_options({"webhook_url": "hooks.slack.com", "x": 1})] == [
        "x",
        "webhook_url",
    ]
    token = slack.hook_path.rsplit("/", 1)[1]
    assert token in channel_for(slack).secrets()
    assert token not in channel_for(slack).pace_key()
