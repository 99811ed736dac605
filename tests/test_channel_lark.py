"""Lark / Feishu custom bot: signed ``post`` messages against a fake bot that
checks the signature, the timestamp window, keywords, 20 KB and 5/s + 100/min."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from sentinel.channels import build_channel
from sentinel.channels.base import DeliveryError
from sentinel.channels.lark import LarkChannel, render_post, sign
from sentinel.model.alerts import AlertKind
from tests.fakes.lark import MAX_BODY_BYTES, FakeLark, message_text
from tests.fakes.samples import FakeClock, sample_alert


@pytest.fixture
def bot():
    with FakeLark() as fake:
        yield fake


def channel_for(bot, **extra):
    return build_channel(
        "team", {"type": "lark", "webhook_url": bot.webhook_url, "secret": bot.secret, **extra}
    )


def test_signed_post_is_accepted(bot):
    alert = sample_alert(AlertKind.CRASHED)
    assert channel_for(bot).send(alert) == "Lark: code 0 success"
    (request,) = bot.received()
    body = request.json()
    assert body["msg_type"] == "post"
    assert body["sign"] == sign(bot.secret, int(body["timestamp"]))
    post = body["content"]["post"]["en_us"]
    assert post["title"] == "💥 Crashed: resnet50-lr3e-4"
    text = message_text(body)
    assert "RuntimeError: CUDA error: an illegal memory access was encountered" in text
    assert "run-sentinel" in text
    assert [e for line in post["content"] for e in line if e["tag"] == "a"][0]["href"] == alert.url


def test_signature_is_the_documented_recipe():
    secret, timestamp = "abc123", 1599360473
    key = f"{timestamp}\n{secret}".encode()
    assert sign(secret, timestamp) == base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()


def test_zh_channel_writes_a_zh_cn_post(bot):
    channel_for(bot, language="zh").send(sample_alert(AlertKind.KILLED))
    post = bot.messages[0]["content"]["post"]
    assert list(post) == ["zh_cn"] and post["zh_cn"]["title"].startswith("☠️ 被 OOM killer 杀死")


@pytest.mark.parametrize("offset, accepted", [(-7200.0, False), (3500.0, True), (7200.0, False)])
def test_clock_off_by_more_than_an_hour_is_permanent(bot, offset, accepted):
    channel = channel_for(bot)
    channel.clock = FakeClock(bot.clock() + offset)
    if accepted:
        assert channel.send(sample_alert()).startswith("Lark: code 0")
        return
    with pytest.raises(DeliveryError) as err:
        channel.send(sample_alert())
    assert err.value.permanent and "19021" in str(err.value) and "clock" in str(err.value)


def test_wrong_secret_and_unsigned_requests_are_refused(bot):
    for options in ({"secret": "not-the-secret"}, {}):
        channel = build_channel("team", {"type": "lark", "webhook_url": bot.webhook_url, **options})
        with pytest.raises(DeliveryError) as err:
            channel.send(sample_alert())
        assert err.value.permanent and "19021" in str(err.value)
        assert bot.secret not in str(err.value) and bot.token not in str(err.value)


def test_keyword_and_unknown_token(bot):
    bot.keywords = ["sentinel"]
    channel_for(bot).send(sample_alert())
    bot.keywords = ["deploy"]
    with pytest.raises(DeliveryError) as err:
        channel_for(bot).send(sample_alert())
    assert err.value.permanent and "自定义关键词" in str(err.value)
    other = build_channel("x", {"type": "feishu", "webhook_url": bot.url + "/open-apis/bot/v2/hook/nope"})
    with pytest.raises(DeliveryError) as err:
        other.send(sample_alert())
    assert err.value.permanent and "19001" in str(err.value)


def test_throttled_is_transient_and_http_200_proves_nothing():
    with FakeLark(per_second=100, per_minute=2) as bot:
        channel = channel_for(bot)
        channel.send(sample_alert(n=1))
        channel.send(sample_alert(n=2))
        with pytest.raises(DeliveryError) as err:
            channel.send(sample_alert(n=3))
    assert not err.value.permanent and err.value.retry_after == 60.0 and "11232" in str(err.value)
    assert [r.status for r in bot.received()] == [200, 200, 200]


@pytest.mark.parametrize("mode, permanent", [("5xx", False), ("down", False), ("4xx", True)])
def test_http_failures(bot, mode, permanent):
    bot.fail(mode)
    with pytest.raises(DeliveryError) as err:
        channel_for(bot).send(sample_alert())
    assert err.value.permanent is permanent


def test_huge_traceback_fits_20kb_and_keeps_its_last_line(bot):
    frames = "\n".join(
        f'  File "layer_{i}.py", line {i}, in forward\n    x = 错误 * {i}' for i in range(3000)
    )
    error = f"Traceback (most recent call last):\n{frames}\nValueError: the last line survives"
    alert = sample_alert(error=error, run_name="名" * 5000)
    channel_for(bot, language="zh").send(alert)
    (request,) = bot.received()
    assert len(request.body) <= MAX_BODY_BYTES
    text = message_text(bot.messages[0])
    assert "ValueError: the last line survives" in text
    assert "layer_0.py" not in text  # the start of the traceback went first
    assert bot.messages[0]["content"]["post"]["zh_cn"]["title"].startswith("💥 训练崩溃")


def test_digest_fits_and_is_accepted(bot):
    alerts = [sample_alert(AlertKind.KILLED, n=i, run_name=f"run-{i:03d}-" + "x" * 100) for i in range(50)]
    channel = channel_for(bot)
    count = channel.digest_size(alerts)
    assert 1 < count <= 50
    channel.send_digest(alerts[:count])
    text = message_text(bot.messages[0])
    assert all(f"run-{i:03d}-" in text for i in range(count))
    assert len(bot.received()[0].body) <= MAX_BODY_BYTES


def test_check_options_and_secrets():
    hook = "https://open.feishu.cn/open-apis/bot/v2/hook/"
    assert LarkChannel.check_options({"webhook_url": hook + "abc-123"}) == []
    assert [k for k, _ in LarkChannel.check_options({"webhook_url": hook})] == ["webhook_url"]
    assert [k for k, _ in LarkChannel.check_options({"webhook_url": "https://open.larksuite.com/x"})] == [
        "webhook_url"
    ]
    problems = LarkChannel.check_options({"webhook_url": hook + "t", "secret": 5, "langauge": "zh"})
    assert {k for k, _ in problems} == {"secret", "langauge"}
    channel = build_channel("t", {"type": "lark", "webhook_url": hook + "tok-secret-123", "secret": "s3cr3t"})
    assert {"tok-secret-123", "s3cr3t"} <= set(channel.secrets())


def test_render_post_is_pure_and_small():
    body = render_post(sample_alert(AlertKind.FINISHED), "en")
    assert body["content"]["post"]["en_us"]["title"] == "✅ Finished: resnet50-lr3e-4"


def test_a_misspelt_option_in_the_config_is_named_with_its_key_path(tmp_path, monkeypatch):
    from sentinel.daemon.config import ConfigError, load_config

    monkeypatch.setenv("LARK_HOOK", "https://open.feishu.cn/open-apis/bot/v2/hook/abc-123")
    path = tmp_path / "daemon.yaml"
    path.write_text("channels:\n  team:\n    type: lark\n    webhook_url: ${LARK_HOOK}\n    secrte: x\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "channels.team.secrte (line 5): unknown option (did you mean 'secret'?)" in str(err.value)
    assert "abc-123" not in str(err.value)


def test_lark_and_feishu_entries_for_one_bot_share_pacing(bot):
    a = channel_for(bot)
    b = build_channel("other", {"type": "feishu", "webhook_url": bot.webhook_url})
    assert a.pace_key() == b.pace_key() and bot.token not in a.pace_key()
