"""Fake services on 127.0.0.1 for tests and benchmarks: Bark, DingTalk, Slack,
Lark / Feishu, WeCom, Discord, Telegram, ntfy, a generic webhook receiver and
Apprise's ``json://`` (``tests.fakes.<service>``), and a real SMTP server
(``tests.fakes.smtp``, aiosmtpd: import it only where e-mail is tested).

Each implements its service's real contract (see the module docstrings),
runs in a thread on an ephemeral port, records every request with its
arrival time (``time.monotonic_ns()``) and can be switched to fail::

    with FakeSlack() as slack:
        ...  # configure a channel with slack.webhook_url
        slack.fail("down"); slack.recover()
        slack.wait_for_requests(1)
"""

from tests.fakes.bark import FakeBark
from tests.fakes.dingtalk import FakeDingTalk
from tests.fakes.discord import FakeDiscord
from tests.fakes.lark import FakeLark
from tests.fakes.ntfy import FakeNtfy
from tests.fakes.server import FakeService, RecordedRequest, Reply, wait_for
from tests.fakes.slack import FakeSlack
from tests.fakes.telegram import FakeTelegram
from tests.fakes.webhook import FakeAppriseJSON, FakeWebhook
from tests.fakes.wecom import FakeWeCom

__all__ = ["FakeAppriseJSON", "FakeBark", "FakeDingTalk", "FakeDiscord", "FakeLark", "FakeNtfy", "FakeSlack",
           "FakeTelegram", "FakeWeCom", "FakeWebhook", "FakeService", "RecordedRequest", "Reply", "wait_for"]
