"""ntfy: title/priority/tags headers (RFC 2047 for non-ASCII), bearer token,
4,096-byte messages, 429 from the visitor bucket."""

from __future__ import annotations

import pytest

from sentinel.channels import build_channel
from sentinel.channels.base import DeliveryError
from sentinel.channels.ntfy import NtfyChannel, header_value
from sentinel.model.alerts import AlertKind
from tests.fakes.ntfy import MAX_MESSAGE_BYTES, FakeNtfy, decode_header
from tests.fakes.samples import sample_alert

TOKEN = "tk_" + "a1b2c3d4e5" * 3


@pytest.fixture
def server():
    with FakeNtfy(token=TOKEN) as fake:
        yield fake


def channel_for(server, **extra):
    return build_channel("phone", {"type": "ntfy", "url": server.topic_url, "token": TOKEN, **extra})


def test_notification_with_emoji_title_priority_tags_and_click(server):
    assert channel_for(server).send(sample_alert()).startswith("ntfy: 200 id ")
    (note,) = server.messages
    assert note["title"] == "💥 Crashed: resnet50-lr3e-4"
    assert note["priority"] == 4 and note["tags"] == ["boom"]
    assert note["click"] == "https://swanlab.cn/@alice/cifar10/runs/x1y2z3"
    assert note["message"].startswith("RuntimeError: CUDA error")
    assert server.received()[0].headers["Authorization"] == f"Bearer {TOKEN}"


def test_priorities_per_state(server):
    channel = channel_for(server, priority={"finished": "low", "killed": "max"})
    channel.send(sample_alert(AlertKind.FINISHED))
    channel.send(sample_alert(AlertKind.KILLED))
    assert [n["priority"] for n in server.messages] == [2, 5]
    assert channel_for(server, priority=1).priority_for(AlertKind.KILLED) == 1


def test_header_values_are_one_line_and_rfc2047():
    assert header_value("plain title") == "plain title"
    encoded = header_value("训练崩溃\r\nX-Evil: 1")
    assert encoded.isascii() and "\n" not in encoded
    assert decode_header(encoded) == "训练崩溃 X-Evil: 1"


def test_long_message_stays_a_notification_and_keeps_the_end(server):
    error = "\n".join(f"  frame {i} " + "字" * 60 for i in range(300)) + "\nOSError: disk full"
    channel_for(server, language="zh").send(sample_alert(error=error))
    (request,) = server.received()
    assert len(request.body) <= MAX_MESSAGE_BYTES
    assert server.messages[0]["message"].rstrip().endswith("https://swanlab.cn/@alice/cifar10/runs/x1y2z3")
    assert "OSError: disk full" in server.messages[0]["message"]


def test_token_errors_are_permanent_and_masked(server):
    with pytest.raises(DeliveryError) as err:
        channel_for(server, token="tk_wrongwrongwrong").send(sample_alert())
    assert err.value.permanent and "401" in str(err.value) and "tk_wrong" not in str(err.value)
    with pytest.raises(DeliveryError) as err:
        build_channel("p", {"type": "ntfy", "url": server.topic_url}).send(sample_alert())
    assert err.value.permanent and "403" in str(err.value)


def test_429_is_transient():
    with FakeNtfy(burst=1, replenish=3600.0) as server:
        channel = build_channel("p", {"type": "ntfy", "url": server.topic_url})
        channel.send(sample_alert(n=1))
        with pytest.raises(DeliveryError) as err:
            channel.send(sample_alert(n=2))
    assert not err.value.permanent and err.value.retry_after == 10.0 and "429" in str(err.value)


def test_digest(server):
    alerts = [sample_alert(AlertKind.KILLED, n=i, run_name=f"run-{i:03d}") for i in range(50)]
    channel = channel_for(server)
    count = channel.digest_size(alerts)
    assert 1 < count <= 50
    channel.send_digest(alerts[:count])
    assert server.messages[0]["title"] == f"run-sentinel: {count} alerts"
    assert all(f"run-{i:03d}" in server.messages[0]["message"] for i in range(count))


def test_check_options():
    assert NtfyChannel.check_options({"url": "https://ntfy.sh/abc"}) == []
    assert [k for k, _ in NtfyChannel.check_options({"url": "https://ntfy.sh/"})] == ["url"]
    problems = NtfyChannel.check_options({"url": "https://ntfy.sh/a", "priority": {"kiled": 5, "stalled": 9}})
    assert [k for k, _ in problems] == ["priority.kiled", "priority.stalled"]
    assert [k for k, _ in NtfyChannel.check_options({"url": "https://ntfy.sh/a", "priority": "loud"})] == [
        "priority"
    ]


def test_run_text_reaches_the_reader_escaped(server):
    hostile = "exp\x1b]0;owned\x07\x1b[2J"
    channel_for(server).send(sample_alert(run_name=hostile, error="Traceback\n  \x1b[31mred\nValueError: x"))
    (note,) = server.messages
    assert "\x1b" not in note["title"] and "\x07" not in note["title"]
    assert "exp\\x1b]0;owned\\x07\\x1b[2J" in note["title"]
    assert "\x1b" not in note["message"] and "\\x1b[31mred" in note["message"]
    assert "\n  \\x1b[31mred\nValueError: x\n" in note["message"]
