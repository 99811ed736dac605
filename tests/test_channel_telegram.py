"""Telegram Bot API sendMessage: HTML escaping, 4,096 UTF-16 units, 429
with parameters.retry_after, ok:false bodies, a self-hosted api_url."""

from __future__ import annotations

import logging

import pytest

from sentinel.channels import build_channel
from sentinel.channels.base import DeliveryError
from sentinel.channels.telegram import TelegramChannel
from sentinel.model.alerts import AlertKind
from tests.fakes.samples import sample_alert
from tests.fakes.telegram import MAX_TEXT_UTF16, FakeTelegram, utf16_length


@pytest.fixture
def bot():
    with FakeTelegram() as fake:
        yield fake


def channel_for(bot, **extra):
    options = {"type": "telegram", "bot_token": bot.token, "chat_id": bot.chat_id, "api_url": bot.api_url}
    return build_channel("me", {**options, **extra})


def test_html_message_arrives(bot):
    assert channel_for(bot).send(sample_alert()) == "Telegram: ok, message 1"
    (message,) = bot.messages
    assert message["request"]["parse_mode"] == "HTML"
    assert message["text"].startswith("💥 Crashed: resnet50-lr3e-4\nRuntimeError: CUDA error")
    assert "Open in SwanLab" in message["text"]


def test_a_traceback_full_of_markup_is_escaped(bot):
    error = 'Traceback (most recent call last):\n  File "<module>", line 1\nTypeError: a < b & "c" > d'
    channel_for(bot).send(sample_alert(error=error, run_name="<b>bold</b> & co"))
    text = bot.messages[0]["text"]
    assert 'TypeError: a < b & "c" > d' in text and "<b>bold</b> & co" in text


def test_long_text_fits_4096_utf16_units_and_keeps_the_end(bot):
    error = "\n".join(f"  第 {i} 帧 🔥 " + "错" * 50 for i in range(400)) + "\nValueError: 最后一行"
    channel_for(bot, language="zh").send(sample_alert(error=error))
    text = bot.messages[0]["text"]
    assert utf16_length(text) <= MAX_TEXT_UTF16
    assert "ValueError: 最后一行" in text and "第 0 帧" not in text and text.startswith("💥 训练崩溃")


def test_flood_control_honours_retry_after(bot):
    channel_for(bot).send(sample_alert(n=1))
    with pytest.raises(DeliveryError) as err:
        channel_for(bot).send(sample_alert(n=2))  # within a second: 429
    assert not err.value.permanent and err.value.retry_after == 1.0
    assert "429 Too Many Requests" in str(err.value)


def test_wrong_token_and_chat_are_permanent_and_masked(bot, caplog):
    fake_token = "1234567890:" + "A" * 35
    with pytest.raises(DeliveryError) as err:
        channel_for(bot, bot_token=fake_token).send(sample_alert())
    assert err.value.permanent and "401" in str(err.value) and "@BotFather" in str(err.value)
    with pytest.raises(DeliveryError) as err:
        channel_for(bot, chat_id="42").send(sample_alert())
    assert err.value.permanent and "chat not found" in str(err.value)
    bot.fail("down")
    with caplog.at_level(logging.DEBUG), pytest.raises(DeliveryError) as err:
        channel_for(bot).send(sample_alert())
    assert not err.value.permanent
    assert bot.token not in str(err.value) and bot.token not in caplog.text  # it sits in the URL path


def test_group_upgraded_to_supergroup_names_the_new_id(bot):
    bot.fail(
        status=400,
        body='{"ok":false,"error_code":400,"description":"Bad Request: group chat was '
        'upgraded to a supergroup chat","parameters":{"migrate_to_chat_id":-1001234}}',
    )
    with pytest.raises(DeliveryError) as err:
        channel_for(bot).send(sample_alert())
    assert err.value.permanent and "set chat_id to -1001234" in str(err.value)


def test_digest(bot):
    alerts = [sample_alert(AlertKind.KILLED, n=i, run_name=f"run<{i:03d}>") for i in range(50)]
    channel = channel_for(bot)
    count = channel.digest_size(alerts)
    assert 1 < count <= 50
    channel.send_digest(alerts[:count])
    assert all(f"run<{i:03d}>" in bot.messages[0]["text"] for i in range(count))


def test_check_options():
    token = "123456:" + "b" * 35
    assert TelegramChannel.check_options({"bot_token": token, "chat_id": -1001}) == []
    assert TelegramChannel.check_options({"bot_token": token, "chat_id": "@my_channel"}) == []
    problems = TelegramChannel.check_options({"bot_token": "nope", "chat_id": "a b", "api_url": "x"})
    assert {k for k, _ in problems} == {"bot_token", "chat_id", "api_url"}
    assert {k for k, _ in TelegramChannel.check_options({})} == {"bot_token", "chat_id"}
    assert "nope" not in str(problems)
