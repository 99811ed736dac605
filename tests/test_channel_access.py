"""The access rules, pure: config keys, host patterns, inline refusals,
per-user channels, message limits, the outbox's sending order and the
links an alert may carry."""

from __future__ import annotations

import logging
import os
import pwd

import pytest

from sentinel.channels.bark import BarkChannel
from sentinel.daemon.channel_access import ChannelAccess, host_allowed, inline_refusal
from sentinel.daemon.config import ConfigError, InlineChannelPolicy, MessageLimits, parse_config
from sentinel.daemon.message_limits import MessageGate
from sentinel.delivery.outbox import Outbox
from sentinel.model.alerts import AlertKind, http_link
from tests.fakes.samples import sample_alert

ME = pwd.getpwuid(os.getuid()).pw_name


# ---------------------------------------------------------------- config


def test_access_keys_parse() -> None:
    config = parse_config(f"""
channels:
  mine: {{type: console, users: [{ME}]}}
  team: {{type: console}}
inline_channels: {{allow: true, hosts: [api.day.app, "*.slack.com"], types: [bark], max_per_run: 2}}
message_limits: {{per_run_per_minute: 5, max_pending_per_user: 7}}
""")
    assert config.channels["mine"].users == frozenset({ME}) and "users" not in config.channels["mine"].options
    assert config.channels["team"].users is None and not config.channels["team"].restricted
    assert config.inline_channels == InlineChannelPolicy(True, frozenset({"api.day.app", "*.slack.com"}),
                                                         frozenset({"bark"}), 2)
    assert config.message_limits == MessageLimits(5, 120, 7)


def test_access_key_errors_name_their_paths_all_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("""
channels:
  a: {type: console, users: [no-such-user-here], groups: [no-such-group-here]}
inline_channels: {allow: yes please, hosts: ["https://x.example/"], types: [barkk], max_per_rn: 2}
message_limits: {per_run_per_minute: -1, per_usr_per_minute: 3}
""")
    text = str(caught.value)
    for expected in ("channels.a.users[0] (line 3): no user 'no-such-user-here'",
                     "channels.a.groups[0] (line 3): no group 'no-such-group-here'",
                     "inline_channels.allow (line 4): must be true or false",
                     "inline_channels.hosts[0] (line 4): must be a host name",
                     "inline_channels.types[0] (line 4): unknown channel type 'barkk'; did you mean 'bark'?",
                     "inline_channels.max_per_rn (line 4): unknown key; did you mean 'max_per_run'?",
                     "message_limits.per_run_per_minute (line 5): must be a whole number (0 or more), not -1",
                     "message_limits.per_usr_per_minute (line 5): unknown key; did you mean"):
        assert expected in text, text


def test_allowing_inline_channels_needs_hosts() -> None:
    with pytest.raises(ConfigError, match=r"inline_channels.hosts \(line 1\): required when allow is true"):
        parse_config("inline_channels: {allow: true}")


def test_the_spool_decides_when_inline_channels_are_not_configured() -> None:
    config = parse_config("{}")
    assert not config.inline_policy(shared_spool=True).allow
    assert config.inline_policy(shared_spool=False).allow
    configured = parse_config("inline_channels: {allow: false}")
    assert not configured.inline_policy(shared_spool=False).allow


# ---------------------------------------------------------------- inline channels


@pytest.mark.parametrize("host, allowed", [
    ("api.day.app", True), ("API.Day.App.", True), ("hooks.slack.com", True), ("slack.com", False),
    ("evilslack.com", False), ("127.0.0.1", False), ("api.day.app.evil.com", False), ("", False),
])
def test_host_patterns(host: str, allowed: bool) -> None:
    assert host_allowed(host, ["api.day.app", "*.slack.com"]) is allowed
    assert host_allowed(host or "x", ["*"])


def test_inline_refusals_name_the_rule_never_a_secret() -> None:
    policy = InlineChannelPolicy(True, frozenset({"api.day.app"}), frozenset({"bark", "slack"}))
    assert inline_refusal(policy, {"type": "bark", "key": "abcd1234secretkey"}) is None  # default server
    internal = inline_refusal(policy, {"type": "bark", "url": "http://127.0.0.1:8080/abcd1234secretkey/"})
    assert internal == "host '127.0.0.1' is not allowed (config inline_channels.hosts)"
    assert "type 'dingtalk' is not allowed" in str(inline_refusal(policy, {
        "type": "dingtalk", "webhook_url": "https://oapi.dingtalk.com/robot/send?access_token=t0k3n"}))
    assert "not allowed here" in str(inline_refusal(InlineChannelPolicy(), {"type": "bark", "key": "k" * 22}))
    assert BarkChannel.destination_hosts({"url": "https://bark.example.com/abcdefghijklmnopqrstuv/"}) == \
        ["bark.example.com"]


def test_refused_and_capped_entries_fall_back_to_the_defaults() -> None:
    config = parse_config(f"""
channels:
  mine: {{type: console, users: [{ME}]}}
  rootonly: {{type: console, users: [root], groups: [root]}}
  team: {{type: console}}
default_channels: [team]
inline_channels: {{allow: true, hosts: [api.day.app], max_per_run: 1}}
""")
    registered: list[dict] = []

    def register(options: dict) -> str:
        registered.append(options)
        return f"inline-{len(registered)}"

    reports: list[str] = []
    access = ChannelAccess(config, True, register)
    entries = ["mine", "rootonly", {"type": "bark", "key": "a" * 22}, {"type": "bark", "key": "b" * 22},
               {"type": "bark", "key": "c" * 22}]
    names = access.resolve(entries, os.getuid(), reports.append)
    if os.getuid() == 0:
        assert names == ["mine", "rootonly", "inline-1", "team"]
    else:
        assert names == ["mine", "team", "inline-1"]
        assert any("channel 'rootonly' refused: not open to user" in r for r in reports)
    assert len(registered) == 1  # the capped ones are never built
    assert [r for r in reports if "max_per_run" in r] == [
        "inline channel #4 and any later ones refused: at most 1 per run (inline_channels.max_per_run); "
        "using the default channels"]


# ---------------------------------------------------------------- messages


def test_message_limits_per_run_per_user_and_pending(caplog: pytest.LogCaptureFixture) -> None:
    pending = {"alice": 0}
    gate = MessageGate(MessageLimits(per_run_per_minute=3, per_user_per_minute=4, max_pending_per_user=10),
                       lambda user: pending[user])
    with caplog.at_level(logging.WARNING):
        assert [gate.admit("r1", 1000, "alice", 0.0) for _ in range(5)] == [True, True, True, False, False]
        assert gate.admit("r2", 1000, "alice", 1.0)  # the user's fourth this minute
        assert not gate.admit("r2", 1000, "alice", 2.0)  # the fifth: over the user's limit
        assert gate.admit("r1", 1000, "alice", 61.0)  # a minute later: room again
        pending["alice"] = 10
        assert not gate.admit("r3", 1000, "alice", 200.0)  # too many still undelivered
        gate.forget("r1")
    lines = [r.getMessage() for r in caplog.records]
    assert sum("run r1: messages dropped from now on" in line for line in lines) == 1
    assert "run r1: 2 message(s) dropped in all (config message_limits)" in lines
    assert any("max_pending_per_user" in line for line in lines)


def test_state_alerts_go_first_but_never_before_their_own_runs_messages(tmp_path) -> None:
    outbox = Outbox(tmp_path / "outbox")
    flood = [sample_alert(AlertKind.MESSAGE, n=n, run_id="flood", user="mallory", text=f"m{n}")
             for n in range(3)]
    own = sample_alert(AlertKind.MESSAGE, n=1, run_id="chatty", alert_id="chatty.m1", text="bye")
    for alert in (*flood, own):
        outbox.enqueue(alert, ["phone"])
    killed = sample_alert(AlertKind.KILLED, run_id="victim", alert_id="victim.001.killed")
    finished = sample_alert(AlertKind.FINISHED, run_id="chatty", alert_id="chatty.001.finished")
    outbox.enqueue(killed, ["phone"])
    outbox.enqueue(finished, ["phone"])
    order = [p.alert.alert_id for p in outbox.pending("phone")]
    # Users take turns (Mallory's flood is not sent before another user's messages); within a
    # user, state alerts first, but a run's end right after its own earlier messages.
    assert order == ["victim.001.killed", flood[0].alert_id, "chatty.m1", flood[1].alert_id,
                     "chatty.001.finished", flood[2].alert_id]
    assert outbox.open_messages("mallory") == 3
    outbox.mark_delivered(flood[0].alert_id, "phone", "ok", 1.0)
    assert outbox.open_messages("mallory") == 2
    assert Outbox(tmp_path / "outbox").open_messages("mallory") == 2  # rebuilt at load


# ---------------------------------------------------------------- links


@pytest.mark.parametrize("url, kept", [
    ("https://swanlab.cn/@alice/runs/1", True), ("http://10.0.0.5:5092/run", True),
    ("javascript:alert(1)", False), ("file:///etc/shadow", False), ("bark://settings", False),
    ("https://x.example/a b", False), ("https://x.example/\u202e", False), ("https:///nohost", False),
    ("", False),
])
def test_only_http_links_are_kept(url: str, kept: bool) -> None:
    assert (http_link(url) == url) is kept
    alert = sample_alert(labels={"url": url})
    assert (alert.url is not None) is kept
    bark = BarkChannel("phone", {"key": "abcdefghijklmnopqrstuv"})
    assert ("url" in bark.payload(alert)) is kept


@pytest.mark.parametrize("options, host", [
    ({"type": "lark", "webhook_url": "https://open.feishu.cn/open-apis/bot/v2/hook/abcdef12"},
     "open.feishu.cn"),
    ({"type": "wecom", "webhook_url": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=abcdef12"},
     "qyapi.weixin.qq.com"),
    ({"type": "discord", "webhook_url": "https://discord.com/api/webhooks/123/abcdefgh"}, "discord.com"),
    ({"type": "telegram", "bot_token": "123456:" + "A" * 35, "chat_id": 42}, "api.telegram.org"),
    ({"type": "telegram", "bot_token": "123456:" + "A" * 35, "chat_id": 42,
      "api_url": "http://10.0.0.5:8081"}, "10.0.0.5"),
    ({"type": "email", "smtp_server": "smtp.example.org", "sender": "a@example.org", "password": "pw",
      "to": "b@example.org"}, "smtp.example.org"),
    ({"type": "ntfy", "url": "https://ntfy.sh/topic-abcdef12"}, "ntfy.sh"),
    ({"type": "webhook", "url": "http://127.0.0.1:9000/hook"}, "127.0.0.1"),
])
def test_the_newer_channels_name_the_host_they_connect_to(options: dict, host: str) -> None:
    policy = InlineChannelPolicy(True, frozenset({host}), frozenset({options["type"]}))
    assert inline_refusal(policy, options) is None
    elsewhere = InlineChannelPolicy(True, frozenset({"api.day.app"}), frozenset({options["type"]}))
    refused = inline_refusal(elsewhere, options)
    assert refused == f"host '{host}' is not allowed (config inline_channels.hosts)"
