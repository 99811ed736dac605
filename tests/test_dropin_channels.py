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
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import pytest

from sentinel.model.alerts import Alert, AlertKind
from sentinel.model.render import headline
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
GENERATIONS = [
    pytest.param(None, id="swanlab-latest"),
    pytest.param("SENTINEL_TEST_PY_SWANLAB_0720", id="swanlab-0.7.20"),
]


@dataclass
class Setup:
    name: str
    texts: Callable[[], list[str]]  # every accepted message, as the service shows it
    attach: Any  # (drop-in kind, its arguments) or an inline channel's options
    language: str  # what the alerts speak (a drop-in: SwanLab's default, zh)


def _email_text(message: Any) -> str:
    return f"{message['Subject']}\n{message.get_body(('plain',)).get_content()}"


@contextlib.contextmanager
def all_channels(generation: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[list[Setup], list[str]]]:
    """Every new channel's fake, and the victim arguments attaching all of them
    to one run: the drop-ins as SwanLab scripts build them (on 0.7.20 WeCom
    as ``WXWorkCallback(url, None, "en")``, positionally), ntfy, the webhook
    and Apprise inline beside them."""
    ca = TestCA()
    monkeypatch.setenv("SSL_CERT_FILE", str(ca.ca_file))  # the daemon and the victims trust the test CA
    with contextlib.ExitStack() as stack:
        lark, wecom, discord, telegram, ntfy, hook = (
            stack.enter_context(fake)
            for fake in (
                FakeLark(),
                FakeWeCom(),
                FakeDiscord(),
                FakeTelegram(),
                FakeNtfy(),
                FakeWebhook(secret="hook-secret-123"),
            )
        )
        smtp = stack.enter_context(FakeSMTP(ca))
        if generation == "old":
            wecom_args: Any = ("wxwork", [wecom.webhook_url, None, "en"])
        else:
            wecom_args = ("wecom", {"webhook_url": wecom.webhook_url})

        def discord_texts() -> list[str]:
            return [
                m["content"]
                + "\n"
                + "\n".join(e.get("title", "") + "\n" + e.get("description", "") for e in m.get("embeds", []))
                for m in discord.messages
            ]

        setups = [
            Setup(
                "lark",
                lambda: [message_text(m) for m in lark.messages],
                ("lark", {"webhook_url": lark.webhook_url, "secret": lark.secret}),
                "zh",
            ),
            Setup(
                "wecom",
                lambda: [m[m["msgtype"]]["content"] for m in wecom.messages],
                wecom_args,
                "en" if generation == "old" else "zh",
            ),
            Setup("discord", discord_texts, ("discord", {"webhook_url": discord.webhook_url}), "zh"),
            Setup(
                "telegram",
                lambda: [m["text"] for m in telegram.messages],
                (
                    "telegram",
                    {"bot_token": telegram.token, "chat_id": telegram.chat_id, "api_url": telegram.api_url},
                ),
                "zh",
            ),
            Setup(
                "email",
                lambda: [_email_text(m) for m in list(smtp.messages)],
                (
                    "email",
                    {
                        "sender_email": smtp.user,
                        "receiver_email": "bob@example.org",
                        "password": smtp.password,
                        "smtp_server": "127.0.0.1",
                        "port": smtp.port,
                        "language": "zh",
                    },
                ),
                "zh",
            ),
            Setup(
                "ntfy",
                lambda: [f"{n.get('title', '')}\n{n['message']}" for n in ntfy.messages],
                {"type": "ntfy", "url": ntfy.topic_url},
                "en",
            ),
            Setup(
                "webhook",
                lambda: [f"{d['title']}\n{d['text']}" for d in hook.messages],
                {"type": "webhook", "url": hook.webhook_url, "secret": "hook-secret-123"},
                "en",
            ),
        ]
        try:
            if generation == "old":  # that venv holds SwanLab 0.7.20 alone, without the apprise extra
                raise ImportError
            import apprise  # noqa: F401

            receiver = stack.enter_context(FakeAppriseJSON())
            setups.append(
                Setup(
                    "apprise",
                    lambda: [f"{n['title']}\n{n['message']}" for n in receiver.messages],
                    {"type": "apprise", "url": receiver.apprise_url},
                    "en",
                )
            )
        except ImportError:
            if os.environ.get("CI") == "true" and generation != "old":
                raise
        args: list[str] = []
        for setup in setups:
            if isinstance(setup.attach, tuple):
                args += ["--dropin", setup.attach[0], "--dropin-args", json.dumps(setup.attach[1])]
            else:
                args += ["--channel", json.dumps(setup.attach)]
        yield setups, args


def _headline(kind: AlertKind, run_name: str, lang: str, signal: Optional[str] = None) -> str:
    return headline(Alert(alert_id="x", kind=kind, created=0.0, run_name=run_name, signal=signal), lang)


KILL = "SIGKILL"  # how the kernel names a kill -9


def _wait_text(setup: Setup, needle: str, what: str) -> str:
    found = wait_for(
        lambda: next((t for t in setup.texts() if needle in t), None),
        90,
        what=f"{what} at {setup.name} (got {setup.texts()!r:.500})",
    )
    return str(found)


def _victim(
    python: str, tmp: Path, mode: str, args: list[str], *extra: str, spool_dir: Optional[Path] = None
) -> Victim:
    # The run is SwanLab's experiment "exp-<mode>": alerts name it so.
    return Victim.swanlab(python, tmp, mode, "--heartbeat", HEARTBEAT, *args, *extra, spool_dir=spool_dir)


@pytest.mark.parametrize("env_var", GENERATIONS)
def test_with_a_daemon(env_var: Optional[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    python = swanlab_python(env_var)
    generation = "old" if env_var else "latest"
    with (
        all_channels(generation, monkeypatch) as (setups, args),
        # All eight channels in one run: more inline channels than the default cap (4).
        DaemonProcess(tmp_path / "daemon", {"screen": {"type": "console"}},
                      inline_channels={"allow": True, "hosts": ["*"], "max_per_run": 8}) as daemon,
        contextlib.ExitStack() as stack,
    ):
        # Three runs at once (one is killed, one crashes, one finishes): what a shared GPU box sees.
        doomed, crashing, finishing = (
            stack.enter_context(
                _victim(python, daemon.tmp, mode, args, *extra, spool_dir=daemon.spool).start()
            )
            for mode, extra in (
                ("sleep-forever", ("--send", "hello from swanlab")),
                ("exception", ()),
                ("finish", ()),
            )
        )
        for victim in (doomed, crashing, finishing):
            victim.ready()
        doomed.expect("RUNNING")
        for setup in setups:
            _wait_text(setup, "hello from swanlab", "send_msg's message")
        doomed.kill()
        assert crashing.wait() == 1, crashing.output()
        assert finishing.wait() == 0, finishing.output()
        for setup in setups:
            killed = _headline(AlertKind.KILLED, "exp-sleep-forever", setup.language, KILL)
            _wait_text(setup, killed, "the kill -9 alert")
            crash = _wait_text(
                setup, _headline(AlertKind.CRASHED, "exp-exception", setup.language), "the crash"
            )
            assert "RuntimeError: boom from victim" in crash, setup.name  # the traceback's last line
            _wait_text(setup, _headline(AlertKind.FINISHED, "exp-finish", setup.language), "the finish")
        daemon.stop()
    for setup in setups:
        killed = _headline(AlertKind.KILLED, "exp-sleep-forever", setup.language, KILL)
        assert sum(killed in text for text in setup.texts()) == 1, (setup.name, setup.texts())
    assert "unexpected" not in daemon.log(), daemon.log()  # no channel failed in an unplanned way


@pytest.mark.parametrize("env_var", GENERATIONS)
def test_without_a_daemon_the_process_sends(
    env_var: Optional[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    python = swanlab_python(env_var)
    with (
        all_channels("old" if env_var else "latest", monkeypatch) as (setups, args),
        _victim(python, tmp_path, "exception", args, "--send", "epoch 3 done").start() as victim,
    ):
        victim.ready()
        assert victim.wait() == 1, victim.output()
        # Exit waited for the sender: everything has arrived by now.
        for setup in setups:
            texts = setup.texts()
            assert len(texts) == 2, (setup.name, texts, victim.output())
            assert "epoch 3 done" in texts[0]
            assert _headline(AlertKind.CRASHED, "exp-exception", setup.language) in texts[1], setup.name
            assert "RuntimeError: boom from victim" in texts[1], setup.name
