"""Fake Bark, DingTalk and Slack services on 127.0.0.1 for tests and benchmarks.

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
from tests.fakes.server import FakeService, RecordedRequest, Reply, wait_for
from tests.fakes.slack import FakeSlack

__all__ = ["FakeBark", "FakeDingTalk", "FakeSlack", "FakeService", "RecordedRequest", "Reply", "wait_for"]
