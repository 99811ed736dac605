"""The new channels end to end, in real SwanLab runs (offline; latest and 0.7.20).

Each drop-in (LarkCallback, WeComCallback / WXWorkCallback, DiscordCallback,
TelegramCallback, EmailCallback) and each config-only channel (ntfy, generic
webhook, Apprise; given inline to a SentinelCallback) against its strict
fake: with a daemon, ``send_msg`` arrives, ``kill -9`` gives exactly one
valid alert, a crash arrives with the traceback's last line, a finish
arrives; with no daemon, the process sends the message and its crash itself.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import pytest

from sentinel.alerts import Alert, AlertKind
from sentinel.render import headline
from tests.daemon_harness import DaemonProcess
from tests.fakes.discord import FakeDiscord
from tests.fakes.lark import FakeLark, message_text
from tests.fakes.ntfy import FakeNtfy
from tests.fakes.smtp import FakeSMTP, TestCA
from tests.fakes.telegram import FakeTelegram
from tests.fakes.webhook import FakeAppriseJSON, FakeWebhook
from tests.fakes.wecom import FakeWeCom
from tests.victims.harness import Victim, swanlab_python, wait_for

HEARTBEAT = "0.05"
GENERATIONS = [pytest.param(None, id="swanlab-latest"),
               pytest.param("SENTINEL_TEST_PY_SWANLAB_0720", id="swanlab-0.7.20")]


@dataclass
class Setup:
    fake: Any
    texts: Callable[[], list[str]]  # every accepted message, as the service shows it
    args: list[str]  # victim arguments that attach the channel
    language: str  # what the alerts speak (a drop-in: SwanLab's default, zh)


def _email_text(message: Any) -> str:
    return f"{message['Subject']}\n{message.get_body(('plain',)).get_content()}"


@contextlib.contextmanager
def channel_setup(name: str, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Setup]:
    def dropin(kind: str, arguments: Any) -> list[str]:
        return ["--dropin", kind, "--dropin-args", json.dumps(arguments)]

    def inline(options: dict[str, Any]) -> list[str]:
        return ["--channel", json.dumps(options)]

    if name == "lark":
        with FakeLark() as lark:
            yield Setup(lark, lambda: [message_text(m) for m in lark.messages],
                        dropin("lark", {"webhook_url": lark.webhook_url, "secret": lark.secret}), "zh")
    elif name == "wxwork-0.7-positional":
        with FakeWeCom() as wecom:
            yield Setup(wecom, lambda: [m[m["msgtype"]]["content"] for m in wecom.messages],
                        dropin("wxwork", [wecom.webhook_url, None, "en"]), "en")
    elif name == "wecom":
        with FakeWeCom() as wecom:
            yield Setup(wecom, lambda: [m[m["msgtype"]]["content"] for m in wecom.messages],
                        dropin("wecom", {"webhook_url": wecom.webhook_url}), "zh")
    elif name == "discord":
        with FakeDiscord() as discord:
            def discord_texts() -> list[str]:
                return [m["content"] + "\n" + "\n".join(e.get("title", "") + "\n" + e.get("description", "")
                                                       for e in m.get("embeds", [])) for m in discord.messages]
            yield Setup(discord, discord_texts, dropin("discord", {"webhook_url": discord.webhook_url}), "zh")
    elif name == "telegram":
        with FakeTelegram() as telegram:
            yield Setup(telegram, lambda: [m["text"] for m in telegram.messages],
                        dropin("telegram", {"bot_token": telegram.token, "chat_id": telegram.chat_id,
                                            "api_url": telegram.api_url}), "zh")
    elif name == "email":
        ca = TestCA()
        monkeypatch.setenv("SSL_CERT_FILE", str(ca.ca_file))  # the daemon and the victim trust the test CA
        with FakeSMTP(ca) as smtp:
            yield Setup(smtp, lambda: [_email_text(m) for m in list(smtp.messages)],
                        dropin("email", {"sender_email": smtp.user, "receiver_email": "bob@example.org",
                                         "password": smtp.password, "smtp_server": "127.0.0.1",
                                         "port": smtp.port, "language": "zh"}), "zh")
    elif name == "ntfy":
        with FakeNtfy() as ntfy:
            yield Setup(ntfy, lambda: [f"{n.get('title', '')}\n{n['message']}" for n in ntfy.messages],
                        inline({"type": "ntfy", "url": ntfy.topic_url}), "en")
    elif name == "webhook":
        with FakeWebhook(secret="hook-secret-123") as hook:
            yield Setup(hook, lambda: [f"{d['title']}\n{d['text']}" for d in hook.messages],
                        inline({"type": "webhook", "url": hook.webhook_url, "secret": "hook-secret-123"}), "en")
    elif name == "apprise":
        pytest.importorskip("apprise")
        with FakeAppriseJSON() as receiver:
            yield Setup(receiver, lambda: [f"{n['title']}\n{n['message']}" for n in receiver.messages],
                        inline({"type": "apprise", "url": receiver.apprise_url}), "en")
    else:
        raise AssertionError(name)


CHANNELS = ["lark", "wecom", "wxwork-0.7-positional", "discord", "telegram", "email", "ntfy", "webhook",
            "apprise"]


def _headline(kind: AlertKind, run_name: str, lang: str) -> str:
    return headline(Alert(alert_id="x", kind=kind, created=0.0, run_name=run_name), lang)


def _wait_text(setup: Setup, needle: str, what: str) -> str:
    found = wait_for(lambda: next((t for t in setup.texts() if needle in t), None), 60,
                     what=f"{what} at the fake (got {setup.texts()!r:.500})")
    return str(found)


def _victim(python: str, tmp: Path, mode: str, setup: Setup, *args: str, spool_dir: Optional[Path] = None) -> Victim:
    # The run is SwanLab's experiment "exp-<mode>": alerts name it so.
    return Victim.swanlab(python, tmp, mode, "--heartbeat", HEARTBEAT, *setup.args, *args, spool_dir=spool_dir)


@pytest.mark.parametrize("env_var", GENERATIONS)
@pytest.mark.parametrize("name", CHANNELS)
def test_with_a_daemon(name: str, env_var: Optional[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if name == "wxwork-0.7-positional" and env_var is None:
        pytest.skip("0.5-0.7's positional shape: tested on 0.7.20")
    python = swanlab_python(env_var)
    with channel_setup(name, tmp_path, monkeypatch) as setup, \
            DaemonProcess(tmp_path / "daemon", {"screen": {"type": "console"}}) as daemon, \
            contextlib.ExitStack() as stack:
        lang = setup.language
        # Three runs at once (one is killed, one crashes, one finishes): what a shared GPU box sees.
        doomed, crashing, finishing = (
            stack.enter_context(_victim(python, daemon.tmp, mode, setup, *extra, spool_dir=daemon.spool).start())
            for mode, extra in (("sleep-forever", ("--send", "hello from swanlab")), ("exception", ()),
                                ("finish", ())))
        for victim in (doomed, crashing, finishing):
            victim.ready()
        doomed.expect("RUNNING")
        _wait_text(setup, "hello from swanlab", "send_msg's message")
        doomed.kill()
        killed = _headline(AlertKind.KILLED, "exp-sleep-forever", lang)
        _wait_text(setup, killed, "the kill -9 alert")
        assert crashing.wait() == 1, crashing.output()
        crash = _wait_text(setup, _headline(AlertKind.CRASHED, "exp-exception", lang), "the crash")
        assert "RuntimeError: boom from victim" in crash  # the traceback's last line
        assert finishing.wait() == 0, finishing.output()
        _wait_text(setup, _headline(AlertKind.FINISHED, "exp-finish", lang), "the finish")
        daemon.stop()
    assert sum(killed in text for text in setup.texts()) == 1, setup.texts()
    assert "unexpected" not in daemon.log(), daemon.log()  # no channel failed in an unplanned way


@pytest.mark.parametrize("env_var", GENERATIONS)
@pytest.mark.parametrize("name", ["lark", "wecom", "discord", "telegram", "email", "ntfy", "webhook"])
def test_without_a_daemon_the_process_sends(name: str, env_var: Optional[str], tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    python = swanlab_python(env_var)
    with channel_setup(name, tmp_path, monkeypatch) as setup, \
            _victim(python, tmp_path, "exception", setup, "--send", "epoch 3 done").start() as victim:
        victim.ready()
        assert victim.wait() == 1, victim.output()
        # Exit waited for the sender: everything has arrived by now.
        texts = setup.texts()
        assert len(texts) == 2, (texts, victim.output())
        assert "epoch 3 done" in texts[0]
        assert _headline(AlertKind.CRASHED, "exp-exception", setup.language) in texts[1]
        assert "RuntimeError: boom from victim" in texts[1]
