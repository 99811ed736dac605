"""Discord webhook: ?wait=true, embed limits, 429 with retry_after, 404 gone."""

from __future__ import annotations

import pytest

from sentinel.channels import build_channel
from sentinel.channels.base import DeliveryError
from sentinel.channels.discord import DiscordChannel, embed_size
from sentinel.model.alerts import AlertKind
from tests.fakes.discord import MAX_CONTENT, MAX_EMBEDS_TOTAL, FakeDiscord
from tests.fakes.samples import sample_alert


@pytest.fixture
def hook():
    with FakeDiscord() as fake:
        yield fake


def channel_for(hook, **extra):
    return build_channel("ops", {"type": "discord", "webhook_url": hook.webhook_url, **extra})


def test_alert_is_saved_with_wait_true(hook):
    answer = channel_for(hook).send(sample_alert())
    assert answer.startswith("Discord: 200 message ")
    (request,) = hook.received()
    assert request.query == {"wait": "true"}
    (message,) = hook.messages
    assert message["allowed_mentions"] == {"parse": []}
    embed = message["embeds"][0]
    assert embed["title"] == "💥 Crashed: resnet50-lr3e-4"
    assert "RuntimeError: CUDA error: an illegal memory access was encountered" in embed["description"]
    assert embed["url"] == "https://swanlab.cn/@alice/cifar10/runs/x1y2z3"


def test_without_wait_a_refused_message_is_silence_at_the_fake(hook):
    # The trap the channel avoids: the same refused payload without wait=true gets a 204.
    import urllib3

    reply = urllib3.request("POST", hook.webhook_url, json={"content": "x" * 3000}, timeout=5)
    assert reply.status == 204 and hook.messages == []


def test_mentions_in_a_run_name_cannot_ping(hook):
    channel_for(hook).send(sample_alert(run_name="@everyone look"))
    content = hook.messages[0]["content"]
    assert "@everyone" not in content and "@\u200beveryone" in content


def test_huge_error_fits_6000_and_keeps_the_last_line(hook):
    error = "Traceback (most recent call last):\n" + "\n".join(f"  frame {i} " + "x" * 80 for i in range(400))
    error += "\nMemoryError: the end"
    channel_for(hook).send(sample_alert(error=error, run_name="r" * 3000))
    (message,) = hook.messages
    embed = message["embeds"][0]
    assert embed_size(embed) <= MAX_EMBEDS_TOTAL and len(message["content"]) <= MAX_CONTENT
    assert "MemoryError: the end" in embed["description"] and "frame 0 " not in embed["description"]


def test_rate_limit_429_is_transient_with_retry_after():
    with FakeDiscord(bucket=1, bucket_window=30.0) as hook:
        channel_for(hook).send(sample_alert(n=1))
        with pytest.raises(DeliveryError) as err:
            channel_for(hook).send(sample_alert(n=2))
    assert not err.value.permanent
    assert err.value.retry_after is not None and 25.0 < err.value.retry_after <= 30.0


def test_deleted_webhook_is_permanent_and_masked(hook):
    url = hook.webhook_url.replace(hook.token, "another-token-abcdefgh")
    with pytest.raises(DeliveryError) as err:
        build_channel("ops", {"type": "discord", "webhook_url": url}).send(sample_alert())
    assert err.value.permanent and "deleted" in str(err.value) and "another-token" not in str(err.value)


@pytest.mark.parametrize("mode, permanent", [("5xx", False), ("down", False)])
def test_http_failures(hook, mode, permanent):
    hook.fail(mode)
    with pytest.raises(DeliveryError) as err:
        channel_for(hook).send(sample_alert())
    assert err.value.permanent is permanent


def test_digest_of_fifty(hook):
    alerts = [sample_alert(AlertKind.KILLED, n=i, run_name=f"run-{i:03d}") for i in range(50)]
    channel = channel_for(hook)
    count = channel.digest_size(alerts)
    assert count > 1
    channel.send_digest(alerts[:count])
    description = hook.messages[0]["embeds"][0]["description"]
    assert all(f"run-{i:03d}" in description for i in range(count))


def test_check_options():
    good = "https://discord.com/api/webhooks/123/tok"
    assert DiscordChannel.check_options({"webhook_url": good}) == []
    assert [
        k for k, _ in DiscordChannel.check_options({"webhook_url": "https://discord.com/channels/1"})
    ] == ["webhook_url"]
    assert [k for k, _ in DiscordChannel.check_options({"webhook_url": good, "username": ""})] == ["username"]
    channel = build_channel(
        "d", {"type": "discord", "webhook_url": "https://discord.com/api/webhooks/1/the-token"}
    )
    assert "the-token" in channel.secrets()
