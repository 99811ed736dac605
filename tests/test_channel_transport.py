"""What every HTTP channel shares, against each fake service: how a failed
request is classified, and that a channel works again once its service does."""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterator

import pytest

from sentinel.channels import build_channel
from sentinel.channels.base import Channel, DeliveryError
from tests.fakes import FakeBark, FakeDingTalk, FakeService, FakeSlack
from tests.fakes.samples import sample_alert

SERVICES: dict[str, tuple[Callable[[], FakeService], Callable[[Any], dict[str, Any]], str]] = {
    "bark": (FakeBark, lambda fake: {"type": "bark", "url": fake.key_url}, "Bark: code 200 success"),
    "dingtalk": (FakeDingTalk, lambda fake: {"type": "dingtalk", "webhook_url": fake.webhook_url,
                                             "secret": fake.secret}, "DingTalk: errcode 0 ok"),
    "slack": (lambda: FakeSlack(min_interval=0.0),
              lambda fake: {"type": "slack", "webhook_url": fake.webhook_url}, "Slack: 200 ok"),
}


@pytest.fixture(params=sorted(SERVICES))
def service(request: pytest.FixtureRequest) -> Iterator[tuple[FakeService, Channel, str]]:
    make_fake, options, ok = SERVICES[request.param]
    with make_fake() as fake:
        yield fake, build_channel(request.param, options(fake)), ok


@pytest.mark.parametrize("mode, permanent",
                         [("5xx", False), ("down", False), ("reset", False), ("4xx", True)])
def test_http_failures(service: tuple[FakeService, Channel, str], mode: str, permanent: bool) -> None:
    fake, channel, _ = service
    fake.fail(mode)
    with pytest.raises(DeliveryError) as err:
        channel.send(sample_alert())
    assert err.value.permanent is permanent


def test_down_then_up(service: tuple[FakeService, Channel, str]) -> None:
    fake, channel, ok = service
    fake.fail("down")
    with pytest.raises(DeliveryError):
        channel.send(sample_alert())
    fake.recover()
    assert channel.send(sample_alert()) == ok


def test_connection_refused_is_transient(service: tuple[FakeService, Channel, str]) -> None:
    fake, channel, _ = service
    fake.stop()
    with pytest.raises(DeliveryError) as err:
        channel.send(sample_alert())
    assert not err.value.permanent


def test_a_retried_connect_is_one_line_of_ours_not_urllib3s(caplog: pytest.LogCaptureFixture) -> None:
    import socket

    from sentinel.channels import http
    from sentinel.channels.base import DeliveryError

    with socket.socket() as probe:  # a port nobody listens on: connection refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    caplog.set_level(logging.DEBUG)
    with pytest.raises(DeliveryError, match="failed to connect"):
        http.post_json(f"http://127.0.0.1:{port}/push", {}, timeout=5, what="Bark")
    messages = [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if m.startswith("Retrying (")], messages
    ours = [m for m in messages if "trying once more" in m]
    assert ours == ["connecting to 127.0.0.1 failed ([Errno 111] Connection refused); trying once more"]
