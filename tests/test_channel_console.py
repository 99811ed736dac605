"""The console channel (the embedded default), the registry and build_channel."""

from __future__ import annotations

import pytest

from sentinel.channels import REGISTRY, build_channel, check_channel
from sentinel.channels.console import ConsoleChannel
from sentinel.common.redact import redact
from sentinel.model.alerts import AlertKind
from tests.fakes.samples import sample_alert


def test_console_prints_a_readable_alert(capsys):
    channel = build_channel("console", {})
    assert channel.send(sample_alert(AlertKind.CRASHED)) == "printed to stdout"
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "💥 Crashed: resnet50-lr3e-4"
    assert lines[1] == "  RuntimeError: CUDA error: an illegal memory access was encountered"
    assert "  Host            alice@gpu-box-3" in lines
    assert "  SwanLab: https://swanlab.cn/@alice/cifar10/runs/x1y2z3" in lines


def test_console_stream_and_language(capsys):
    build_channel("console", {"stream": "stderr", "language": "zh"}).send(sample_alert(AlertKind.LOST))
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("❓ 运行丢失: resnet50-lr3e-4\n  主机在运行结束前重启或断电")


def test_console_options():
    assert ConsoleChannel.check_options({"stream": "stdout", "language": "en"}) == []
    problems = ConsoleChannel.check_options({"stream": "tty", "language": "de"})
    assert {k for k, _ in problems} == {"stream", "language"}


def test_registry_names_the_config_types():
    assert sorted(REGISTRY) == ["alertmanager", "apprise", "bark", "console", "dingtalk", "discord", "email",
                                "feishu", "lark", "ntfy", "slack", "telegram", "webhook", "wecom"]
    assert all(cls.type_name == name for name, cls in REGISTRY.items())


def test_build_channel_lists_every_problem_without_secrets():
    with pytest.raises(ValueError) as err:
        build_channel(
            "team",
            {"type": "dingtalk", "webhook_url": "ftp://secret-token-123", "secret": 42, "at_all": "yes"},
        )
    message = str(err.value)
    assert "webhook_url:" in message and "secret:" in message and "at_all:" in message
    assert "secret-token-123" not in message
    with pytest.raises(ValueError, match="unknown channel type 'pager'"):
        build_channel("x", {"type": "pager"})


def test_check_channel_for_inline_dicts():
    assert check_channel({"type": "slack", "webhook_url": "https://hooks.slack.com/services/T/B/x"}) == []
    assert check_channel({"webhook_url": "https://x"}) == [
        ("type", "required (one of alertmanager, apprise, bark, console, dingtalk, discord, email, feishu, "
                 "lark, ntfy, slack, telegram, webhook, wecom)")]
    assert check_channel("slack") == [("", "must be a mapping of options")]


def test_built_channels_register_their_secrets_for_redaction():
    build_channel("p", {"type": "bark", "key": "Zq9RegisteredKey77"})
    assert redact("log line with Zq9RegisteredKey77 inside") == "log line with *** inside"


def test_language_rule():
    zh_run = sample_alert(language="zh")
    follows = build_channel("i", {"type": "console"}, None)
    fixed = build_channel("c", {"type": "console"}, "en")
    own = build_channel("o", {"type": "console", "language": "zh"}, "en")
    assert follows.language_for(zh_run) == "zh"  # no language of its own: the run's
    assert fixed.language_for(zh_run) == "en"  # configured (or config default) wins
    assert own.language_for(sample_alert(language="en")) == "zh"
