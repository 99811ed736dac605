"""A channel of one's own: a class in a module named by ``channel_modules``, nothing else.

``HookChannel`` below stands for a user's channel. It is not registered when
this module is imported (the test process keeps the built-in registry); a
small module written to ``tmp_path`` registers it in the daemon's process,
exactly as a user's ``/etc/sentinel/my_channel.py`` would.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Any, ClassVar, Mapping

import pytest

from sentinel.channels import REGISTRY, http, register
from sentinel.channels.base import Channel
from sentinel.channels.options import check_language, check_url, unknown_keys
from sentinel.daemon.config import ConfigError, parse_config
from sentinel.model.alerts import Alert
from sentinel.model.render import summary, title
from tests.daemon_harness import DaemonProcess
from tests.fakes.server import FakeService, RecordedRequest, Reply
from tests.victims.harness import Victim, wait_for


class HookChannel(Channel):
    """POST {"text": ...} to ``url``; any 2xx is success."""

    type_name: ClassVar[str] = "test-hook"
    OPTIONS = ("url", "language")

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> list[tuple[str, str]]:
        return unknown_keys(options, cls.OPTIONS) + check_url(options, "url", required=True) \
            + check_language(options)

    def send(self, alert: Alert) -> str:
        lang = self.language_for(alert)
        text = f"{title(alert, lang)}\n{summary(alert, lang)}"
        answer = http.post_json(self.options["url"], {"text": text}, what="hook")
        http.raise_for_status(answer, what="hook")
        return f"hook: {answer.status}"


class FakeHook(FakeService):
    """The service behind ``HookChannel``: 204 for a JSON object with a text."""

    def handle(self, request: RecordedRequest) -> Reply:
        try:
            ok = isinstance(request.json().get("text"), str)
        except (ValueError, AttributeError):
            ok = False
        return Reply(204) if ok else Reply.text(400, "bad payload")

    def failure(self, mode: str, request: RecordedRequest) -> Reply:
        return Reply.text(500, "down")


def write_module(tmp_path: Path, text: str, name: str = "my_channel.py", mode: int = 0o644) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    os.chmod(path, mode)
    return path


def test_a_channel_from_channel_modules_delivers_a_real_daemons_alert(tmp_path: Path) -> None:
    module = write_module(tmp_path, f"""
        from sentinel.channels import register
        from {__name__} import HookChannel

        register(HookChannel)
    """)
    with FakeHook() as hook, DaemonProcess(
        tmp_path, {"mine": {"type": "test-hook", "url": hook.url + "/alerts"}}, channel_modules=[str(module)]
    ) as daemon:
        with Victim.watch(tmp_path, "finish", "--name", "own-channel", "--heartbeat", "0.1",
                          spool_dir=daemon.spool).start() as v:
            run_id = v.ready()
            assert v.wait() == 0
        wait_for(lambda: any(r.status == 204 for r in hook.received()), 30, what="the hook's delivery")
        daemon.wait_log(f"delivered {run_id}.001.finished to mine: hook: 204")
        daemon.stop()
    [request] = [r for r in hook.received() if r.status == 204]
    assert request.path == "/alerts"
    assert request.json()["text"].startswith("✅ Finished: own-channel\n")
    assert "test-hook" not in REGISTRY  # the test process itself never registered it


def test_channel_modules_problems_are_reported_with_their_key_path(tmp_path: Path) -> None:
    broken = write_module(tmp_path, "raise RuntimeError('half-written module')\n", "broken.py")
    writable = write_module(tmp_path, "x = 1\n", "writable.py", mode=0o666)
    text = textwrap.dedent(f"""\
        channel_modules: [relative.py, {tmp_path / 'missing.py'}, {broken}, {writable}]
        channels:
          mine: {{type: test-hook, url: "http://127.0.0.1:9/"}}
    """)
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    problems = info.value.problems
    assert any(p.startswith("channel_modules[0] ") and "absolute path" in p for p in problems), problems
    assert any(p.startswith("channel_modules[1] ") and "cannot read the file" in p
               for p in problems), problems
    assert any(p.startswith("channel_modules[2] ") and "RuntimeError: half-written module" in p
               for p in problems), problems
    assert any(p.startswith("channel_modules[3] ") and "writable by group or others" in p
               for p in problems), problems
    assert any(p.startswith("channels.mine.type ") and "unknown channel type 'test-hook'" in p
               for p in problems), problems
    with pytest.raises(ConfigError) as info:
        parse_config("channel_modules: /etc/x.py\n")
    assert info.value.problems == ["channel_modules (line 1): must be a list of paths to Python files, "
                                   "not a string"]


def test_a_type_name_belongs_to_one_class() -> None:
    class Impostor(HookChannel):
        type_name: ClassVar[str] = "bark"

    with pytest.raises(ValueError, match="taken"):
        register(Impostor)
    assert REGISTRY["bark"].__name__ == "BarkChannel"
    assert HookChannel("h", {"url": "http://x/"}).digest_size([]) == 1  # base defaults hold
    assert HookChannel("h", {"url": "http://x/"}).pace_key() == "channel:h"
    assert not HookChannel.supports_digest and HookChannel.rate_limit is None
