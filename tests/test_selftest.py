"""``sentinel test [CHANNEL]``: a real TEST alert through each channel's send,
with the service's answer printed."""

from __future__ import annotations

import io

from sentinel.channels import http
from sentinel.cli.selftest import run_test
from sentinel.daemon.config import ChannelConfig, Config
from tests.fakes import FakeBark, FakeDingTalk, FakeSlack


def config_for(tmp_path, **channels):
    configured = {name: ChannelConfig(name, kind, options) for name, (kind, options) in channels.items()}
    return Config(spool=tmp_path / "spool", channels=configured)


def test_every_channel_answers(tmp_path, capsys):
    with FakeBark() as bark, FakeDingTalk() as robot, FakeSlack() as slack:
        config = config_for(
            tmp_path,
            phone=("bark", {"url": bark.key_url}),
            team=("dingtalk", {"webhook_url": robot.webhook_url, "secret": robot.secret}),
            ops=("slack", {"webhook_url": slack.webhook_url}),
            console=("console", {}),
        )
        out = io.StringIO()
        assert run_test(config, None, out=out) == 0
        assert [p["title"] for p in bark.pushes] == ["🔔 Test alert: run-sentinel"]
        assert robot.messages[0]["markdown"]["title"] == "🔔 Test alert: run-sentinel"
        assert slack.messages[0]["text"].startswith("🔔 Test alert: run-sentinel")
    assert out.getvalue().splitlines() == [
        "✓ phone (bark): Bark: code 200 success",
        "✓ team (dingtalk): DingTalk: errcode 0 ok",
        "✓ ops (slack): Slack: 200 ok",
        "✓ console (console): printed to stdout",
    ]
    assert capsys.readouterr().out.startswith("🔔 Test alert: run-sentinel")


def test_one_channel_failing_explains_and_hides_secrets(tmp_path):
    with FakeDingTalk() as robot, FakeSlack() as slack:
        config = config_for(
            tmp_path,
            team=("dingtalk", {"webhook_url": robot.webhook_url, "secret": "SECwrong-secret-for-test"}),
            ops=("slack", {"webhook_url": slack.webhook_url}),
        )
        out = io.StringIO()
        assert run_test(config, "team", out=out) == 1
        assert slack.received() == []  # only the named channel
    text = out.getvalue()
    assert text.startswith("✗ team (dingtalk): permanent: DingTalk: errcode 310000 sign not match")
    assert "加签" in text
    assert "SECwrong-secret-for-test" not in text and robot.access_token not in text


def test_transient_failure_says_the_daemon_would_retry(tmp_path):
    with FakeSlack() as slack:
        slack.fail("5xx")
        out = io.StringIO()
        assert run_test(config_for(tmp_path, ops=("slack", {"webhook_url": slack.webhook_url})), "ops",
                        out=out) == 1
    assert out.getvalue().startswith(
        "✗ ops (slack): transient (the daemon would retry): Slack answered HTTP 500")


def test_unknown_channel(tmp_path):
    out = io.StringIO()
    assert run_test(config_for(tmp_path, console=("console", {})), "pager", out=out) == 1
    assert out.getvalue() == "✗ pager: no such channel (configured: console)\n"


def test_every_new_channel_answers_with_secrets_masked(tmp_path):
    from tests.fakes.discord import FakeDiscord
    from tests.fakes.lark import FakeLark
    from tests.fakes.ntfy import FakeNtfy
    from tests.fakes.telegram import FakeTelegram
    from tests.fakes.webhook import FakeWebhook
    from tests.fakes.wecom import FakeWeCom

    with FakeLark() as lark, FakeWeCom() as wecom, FakeDiscord() as discord, FakeTelegram() as telegram, \
            FakeNtfy() as ntfy, FakeWebhook() as hook:
        config = config_for(
            tmp_path,
            lark=("lark", {"webhook_url": lark.webhook_url, "secret": lark.secret}),
            wecom=("wecom", {"webhook_url": wecom.webhook_url}),
            discord=("discord", {"webhook_url": discord.webhook_url}),
            telegram=("telegram", {"bot_token": telegram.token, "chat_id": telegram.chat_id,
                                   "api_url": telegram.api_url}),
            ntfy=("ntfy", {"url": ntfy.topic_url}),
            hook=("webhook", {"url": hook.webhook_url}),
        )
        out = io.StringIO()
        assert run_test(config, None, out=out) == 0
        telegram.fail(status=401, body='{"ok": false, "error_code": 401, "description": "Unauthorized"}')
        failed = io.StringIO()
        assert run_test(config, "telegram", out=failed) == 1
    lines = out.getvalue().splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "✓ lark (lark)", "✓ wecom (wecom)", "✓ discord (discord)", "✓ telegram (telegram)", "✓ ntfy (ntfy)",
        "✓ hook (webhook)"]
    assert failed.getvalue().startswith("✗ telegram (telegram): permanent: Telegram: 401 Unauthorized")
    for secret in (lark.token, lark.secret, wecom.key, discord.token, telegram.token, ntfy.topic):
        assert secret not in out.getvalue() + failed.getvalue()


def test_channels_are_tried_at_once_and_a_silent_server_is_no_answer(tmp_path):
    import socket
    import threading

    held = []
    with socket.socket() as server, FakeBark() as bark:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        port = server.getsockname()[1]

        def accept_and_say_nothing():
            while True:
                try:
                    held.append(server.accept()[0])  # the connection stays open, unanswered
                except OSError:
                    return

        threading.Thread(target=accept_and_say_nothing, daemon=True).start()
        config = config_for(
            tmp_path,
            silent=("bark", {"url": f"http://127.0.0.1:{port}/abcdefgh1234"}),
            phone=("bark", {"url": bark.key_url}),
        )
        out = io.StringIO()
        assert run_test(config, None, out=out, waiting_note_after=0.5) == 1
        # The second channel was sent while the first one was still awaited.
        assert [p["title"] for p in bark.pushes] == ["🔔 Test alert: run-sentinel"]
    for conn in held:
        conn.close()
    lines = out.getvalue().splitlines()
    assert lines[0] == "… waiting on silent"
    assert lines[1].startswith("✗ silent (bark): transient (the daemon would retry): ")
    # The wait that ran out, as long as it was: the read timeout, not connect + read.
    assert f"no answer within {http.DEFAULT_TIMEOUT[1]:g} s" in lines[1]
    assert "failed to connect" not in lines[1]
    assert lines[2] == "✓ phone (bark): Bark: code 200 success"
