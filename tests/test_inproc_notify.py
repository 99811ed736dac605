"""Drop-in notification callbacks: SwanLab's constructor arguments, the
channel they record, and delivery from the process when no daemon is alive."""

from __future__ import annotations

import contextlib
import json
import signal
from pathlib import Path
from typing import Callable, Iterator

import pytest

from sentinel.common.rules import InvalidArgument
from sentinel.formats import spool
from tests.daemon_harness import PretendDaemon
from tests.fakes import FakeBark, FakeDingTalk, FakeSlack
from tests.victims.harness import Victim, swanlab_params, swanlab_python

KEY = "AbCdEfGhIjKlMnOpQrStUv"  # 22 characters, like the keys the Bark app makes


def _push_text(push: dict) -> str:
    return " ".join(str(push.get(k, "")) for k in ("title", "subtitle", "body"))


@pytest.fixture
def pretend_daemon() -> Iterator[Callable[[Path], None]]:
    """Makes ``daemon.json`` name a live process that is named as the daemon, until the test ends."""
    with contextlib.ExitStack() as stack:
        yield lambda spool_dir: stack.enter_context(PretendDaemon(spool_dir)) and None


# ------------------------------------------------------------ constructors


def test_bark_records_server_and_key_like_swanlab_0_10() -> None:
    from sentinel import BarkCallback

    callback = BarkCallback(key=KEY, url="https://bark.example.org", bark_level="critical", icon=None)
    assert callback.channel == {"type": "bark", "server": "https://bark.example.org", "key": KEY,
                                "level": "critical", "language": "zh"}  # SwanLab's default language


def test_bark_accepts_the_app_url_with_the_key_like_swanlab_0_7() -> None:
    from sentinel import BarkCallback

    callback = BarkCallback(url=f"https://api.day.app/{KEY}", language="zh", group="ml-runs")
    assert callback.channel == {"type": "bark", "url": f"https://api.day.app/{KEY}", "language": "zh",
                                "group": "ml-runs"}


def test_bark_without_any_key_is_a_clear_error_that_keeps_secrets_out() -> None:
    from sentinel import BarkCallback

    with pytest.raises(ValueError, match="BarkCallback: .*device key"):
        BarkCallback(url="https://api.day.app")


def test_dingtalk_takes_secret_or_secrets() -> None:
    from sentinel import DingTalkCallback

    url = "https://oapi.dingtalk.com/robot/send?access_token=abc"
    expected = {"type": "dingtalk", "webhook_url": url, "secret": "SECone", "language": "zh"}
    assert DingTalkCallback(url, "SECone").channel == expected
    assert DingTalkCallback(webhook_url=url, secrets="SECtwo").channel["secret"] == "SECtwo"
    assert "secret" not in DingTalkCallback(webhook_url=url).channel
    with pytest.raises(ValueError, match="webhook_url") as info:
        DingTalkCallback(webhook_url="not a url", secret="SECthree")
    assert "SECthree" not in str(info.value)


def test_slack_takes_webhook_url_and_language() -> None:
    from sentinel import SlackCallback

    url = "https://hooks.slack.com/services/T0/B0/x"
    assert SlackCallback(url, "en").channel == {"type": "slack", "webhook_url": url, "language": "en"}
    assert SlackCallback(webhook_url=url).channel == {"type": "slack", "webhook_url": url, "language": "zh"}
    assert SlackCallback(url, None, "en").channel == {"type": "slack", "webhook_url": url, "language": "en"}


def test_dropins_are_callbacks_of_the_installed_swanlab() -> None:
    from sentinel import BarkCallback, SentinelCallback
    from sentinel.training.swanlab_adapter import CallbackBase

    callback = BarkCallback(key=KEY)
    assert isinstance(callback, SentinelCallback) and isinstance(callback, CallbackBase)
    assert callback.name != SentinelCallback().name  # SwanLab keeps both when given both


# ------------------------------------------------------------ in real runs


@pytest.mark.parametrize("env_var", swanlab_params())
def test_without_a_daemon_the_process_sends_messages_and_the_end(env_var: str, tmp_path: Path) -> None:
    python = swanlab_python(env_var)
    with FakeBark(keys=[KEY]) as bark, Victim.swanlab(
        python, tmp_path, "finish", "--heartbeat", "0.05", "--send", "accuracy above 0.95",
        "--dropin", "bark", "--dropin-args", json.dumps({"key": KEY, "url": bark.url}),
    ).start() as victim:
        victim.ready()
        assert victim.wait() == 0, victim.output()
        # Exit waited for the sender: everything has arrived by now.
        pushes = bark.pushes
        assert len(pushes) == 2, (pushes, victim.output())
        assert "accuracy above 0.95" in _push_text(pushes[0])
        assert all(p["device_key"] == KEY for p in pushes)
        assert "accuracy above 0.95" not in _push_text(pushes[1])  # the run's end
        warnings = [line for line in victim.stderr if "no sentinel daemon is watching" in line]
        assert len(warnings) == 1 and "kill" in warnings[0]
        record = victim.record()
        assert record.channels == [{"type": "bark", "server": bark.url, "key": KEY, "language": "zh"}]
        assert victim.messages() == []  # sent from here, so not queued for a daemon too
        assert victim.final().state == "finished"


def test_without_a_daemon_sigterm_is_still_sent_before_dying(tmp_path: Path) -> None:
    with FakeSlack(min_interval=0.0) as slack, Victim.swanlab(
        swanlab_python(None), tmp_path, "sleep-forever", "--heartbeat", "0.05",
        "--dropin", "slack", "--dropin-args", json.dumps({"webhook_url": slack.webhook_url}),
    ).start() as victim:
        victim.ready()
        victim.expect("RUNNING")
        victim.signal(signal.SIGTERM)
        assert victim.wait() == -signal.SIGTERM, victim.output()
        assert len(slack.messages) == 1, victim.output()
        assert victim.final().state == "terminated"


def test_without_a_daemon_a_signed_dingtalk_message_arrives(tmp_path: Path) -> None:
    with FakeDingTalk() as ding, Victim.swanlab(
        swanlab_python(None), tmp_path, "exception", "--heartbeat", "0.05", "--send", "epoch 3 done",
        "--dropin", "dingtalk", "--dropin-args",
        json.dumps({"webhook_url": ding.webhook_url, "secrets": ding.secret}),
    ).start() as victim:
        victim.ready()
        assert victim.wait() == 1, victim.output()
        messages = [json.dumps(m, ensure_ascii=False) for m in ding.messages]
        assert len(messages) == 2, (ding.received(), victim.output())
        assert "epoch 3 done" in messages[0]
        assert "boom from victim" in messages[1]


@pytest.mark.parametrize("env_var", swanlab_params())
def test_with_a_daemon_alive_everything_goes_through_the_spool(
        env_var: str, tmp_path: Path,
        pretend_daemon: Callable[[Path], None]) -> None:
    python = swanlab_python(env_var)
    spool_dir = tmp_path / "spool"
    pretend_daemon(spool_dir)
    with FakeBark(keys=[KEY]) as bark, Victim.swanlab(
        python, tmp_path, "finish", "--heartbeat", "0.05", "--send", "queued, not sent",
        "--dropin", "bark", "--dropin-args", json.dumps({"url": f"{bark.url}/{KEY}"}),
        spool_dir=spool_dir,
    ).start() as victim:
        victim.ready()
        assert victim.wait() == 0, victim.output()
        assert bark.received() == []  # the process is gone: it never sent anything
        assert [m.text for m in victim.messages()] == ["queued, not sent"]
        assert victim.record().channels == [{"type": "bark", "url": f"{bark.url}/{KEY}", "language": "zh"}]
        assert not any("no sentinel daemon" in line for line in victim.stderr)


def test_a_dropin_next_to_a_sentinel_callback_makes_one_run(tmp_path: Path,
                                                           pretend_daemon: Callable[[Path], None]) -> None:
    spool_dir = tmp_path / "spool"
    pretend_daemon(spool_dir)
    with Victim.swanlab(
        swanlab_python(None), tmp_path, "finish", "--heartbeat", "0.05", "--channel", '"ops"',
        "--dropin", "bark", "--dropin-args", json.dumps({"key": KEY}), "--also-plain", spool_dir=spool_dir,
    ).start() as victim:
        victim.ready()
        assert victim.wait() == 0, victim.output()
        assert spool.list_run_ids(spool_dir) == [victim.run_id]
        bark = {"type": "bark", "server": "https://api.day.app", "key": KEY, "language": "zh"}
        assert victim.record().channels == [bark, "ops"]
        assert victim.final().state == "finished"


def test_an_ending_sent_from_the_process_is_not_sent_again_by_a_later_daemon(tmp_path: Path) -> None:
    from sentinel.delivery.outbox import Outbox
    from tests.daemon_harness import DaemonProcess

    with FakeBark(keys=[KEY]) as bark:
        with Victim.swanlab(
            swanlab_python(None), tmp_path, "finish", "--heartbeat", "0.05",
            "--dropin", "bark", "--dropin-args", json.dumps({"key": KEY, "url": bark.url}),
        ).start() as victim:
            victim.ready()
            assert victim.wait() == 0, victim.output()
        assert len(bark.pushes) == 1  # the end, sent by the process itself
        assert victim.final().delivered_inline

        daemon = DaemonProcess(tmp_path / "daemon", {"screen": {"type": "console"}}, spool=victim.spool)
        with daemon:  # READY: the spool is reconciled, this run included
            daemon.stop()
        assert [a.kind.value for a in daemon.journal(victim.run_id)] == ["finished"]
        assert Outbox(daemon.state / "outbox").pending_count() == 0
        assert len(bark.pushes) == 1, bark.pushes


# ------------------------------------------------------------ the other SwanLab plugins

LARK = "https://open.feishu.cn/open-apis/bot/v2/hook/0123-abcd"
WECOM = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=robot-key"
DISCORD = "https://discord.com/api/webhooks/123/token-abc"
BOT_TOKEN = "123456:" + "A" * 35


def test_lark_takes_swanlab_s_arguments() -> None:
    from sentinel import LarkCallback

    assert LarkCallback(LARK, "sign-secret").channel == {"type": "lark", "webhook_url": LARK,
                                                          "secret": "sign-secret", "language": "zh"}
    assert LarkCallback(webhook_url=LARK, language="en").channel == {"type": "lark", "webhook_url": LARK,
                                                                     "language": "en"}


@pytest.mark.parametrize("args, kwargs, language", [
    ((WECOM,), {}, "zh"),                          # 0.8+, SwanLab's default
    ((WECOM, "en"), {}, "en"),                     # 0.8+: (webhook_url, language)
    ((WECOM, None, "en"), {}, "en"),               # 0.5-0.7: (webhook_url, secret, language)
    ((WECOM, "unused-secret"), {}, "zh"),          # 0.5-0.7: (webhook_url, secret)
    ((WECOM,), {"secret": "s", "language": "en"}, "en"),
])
def test_wecom_wxwork_discord_accept_both_generations(args, kwargs, language) -> None:
    from sentinel import DiscordCallback, WeComCallback, WXWorkCallback

    assert WXWorkCallback is WeComCallback
    expected = {"type": "wecom", "webhook_url": WECOM, "language": language}
    assert WeComCallback(*args, **kwargs).channel == expected
    discord_args = (DISCORD, *args[1:])
    assert DiscordCallback(*discord_args, **kwargs).channel == {"type": "discord", "webhook_url": DISCORD,
                                                                "language": language}


def test_ambiguous_or_wrong_arguments_raise_at_construction() -> None:
    from sentinel import DiscordCallback, EmailCallback, TelegramCallback, WeComCallback

    with pytest.raises(TypeError, match="multiple values for argument 'language'"):
        WeComCallback(WECOM, "zh", language="en")
    with pytest.raises(TypeError, match="at most 3 positional"):
        DiscordCallback(DISCORD, None, "en", "extra")
    with pytest.raises(ValueError, match="TelegramCallback: .*bot_token") as info:
        TelegramCallback("not-a-token-but-secret", "42")
    assert "not-a-token-but-secret" not in str(info.value)
    with pytest.raises(InvalidArgument, match=r"^EmailCallback: receiver_email: must be an e-mail address"):
        EmailCallback("alice@example.org", "not an address", "pw")


def test_the_new_dropins_name_every_bad_argument_at_once() -> None:
    from sentinel import DiscordCallback, EmailCallback, LarkCallback, TelegramCallback, WeComCallback

    with pytest.raises(InvalidArgument, match=r"^TelegramCallback: notify_on_start: must be True or False, "
                                              r"not a string; bot_token: .*; language: must be one of "
                                              r"en, zh; stall_timeout: "):
        TelegramCallback("not-a-token", 42, language="fr", notify_on_start="yes", stall_timeout=0)
    with pytest.raises(InvalidArgument, match=r"^EmailCallback: port: .*; sender_email: must be an e-mail "
                                              r"address; receiver_email: [^;]*$"):
        EmailCallback("not-an-address", ["bob@example.org", 3], "pw", port="smtp")
    with pytest.raises(InvalidArgument, match=r"^LarkCallback: webhook_url: .*; secret: "):
        LarkCallback(b"https://open.feishu.cn/open-apis/bot/v2/hook/x", secret=7)
    with pytest.raises(InvalidArgument, match=r"^WeComCallback: secret: must be a string, not a number; "
                                              r"channels: "):
        WeComCallback(WECOM, 5, channels="phone")
    with pytest.raises(InvalidArgument, match=r"^DiscordCallback: takes at most 3 positional arguments "
                                              r"\(4 given\); webhook_url: "):
        DiscordCallback("not a url", None, "en", "extra")


def test_telegram_and_email_take_swanlab_s_arguments() -> None:
    from sentinel import EmailCallback, TelegramCallback
    from sentinel.training.swanlab_adapter import CALLBACK_API

    telegram = TelegramCallback(BOT_TOKEN, 42, "en", True, api_url="https://tg.example.org")
    assert telegram.channel == {"type": "telegram", "bot_token": BOT_TOKEN, "chat_id": 42, "language": "en",
                                "api_url": "https://tg.example.org"}
    mail = EmailCallback("alice@example.org", "bob@example.org", "app-pw", "smtp.example.org", 465)
    assert mail.channel == {"type": "email", "smtp_server": "smtp.example.org", "port": 465,
                            "sender": "alice@example.org", "username": "alice@example.org",
                            "password": "app-pw", "to": "bob@example.org",
                            "language": "zh" if CALLBACK_API == "callback" else "en"}  # as SwanLab's


def test_telegram_notify_on_start_sends_a_start_message(tmp_path: Path) -> None:
    from tests.fakes.telegram import FakeTelegram

    with FakeTelegram(per_chat_interval=0.0) as bot, Victim.swanlab(
        swanlab_python(None), tmp_path, "finish", "--heartbeat", "0.05", "--dropin", "telegram",
        "--dropin-args", json.dumps({"bot_token": bot.token, "chat_id": bot.chat_id, "api_url": bot.api_url,
                                     "notify_on_start": True, "language": "en"}),
    ).start() as victim:
        victim.ready()
        assert victim.wait() == 0, victim.output()
        texts = [m["text"] for m in bot.messages]
        assert len(texts) == 2, (texts, victim.output())
        assert "🚀 Experiment started" in texts[0] and texts[1].startswith("✅ Finished: exp-finish")
