"""Generic webhook: the versioned JSON schema, the HMAC signature header,
custom headers, strict JSON (no NaN), the HTTP rules."""

from __future__ import annotations

import hashlib
import hmac
import math

import pytest

from sentinel.channels import build_channel
from sentinel.channels.base import DeliveryError
from sentinel.channels.webhook import SIGNATURE_HEADER, WebhookChannel
from sentinel.model.alerts import AlertKind
from tests.fakes.samples import RUN_ID, sample_alert
from tests.fakes.webhook import FakeWebhook

SECRET = "shared-secret-for-hmac"


@pytest.fixture
def receiver():
    with FakeWebhook(secret=SECRET, require_headers={"Authorization": "Bearer abc123xyz"}) as fake:
        yield fake


def channel_for(receiver, **extra):
    options = {
        "type": "webhook",
        "url": receiver.webhook_url,
        "secret": SECRET,
        "headers": {"Authorization": "Bearer abc123xyz"},
    }
    return build_channel("hook", {**options, **extra})


def test_document_is_signed_and_versioned(receiver):
    assert channel_for(receiver).send(sample_alert()) == "webhook: HTTP 200"
    (request,) = receiver.received()
    expected = "sha256=" + hmac.new(SECRET.encode(), request.body, hashlib.sha256).hexdigest()
    assert request.headers[SIGNATURE_HEADER] == expected
    (doc,) = receiver.messages
    assert (doc["schema"], doc["version"], doc["language"]) == ("run-sentinel.alert", 1, "en")
    assert doc["title"] == "💥 Crashed: resnet50-lr3e-4"
    alert = doc["alert"]
    assert alert["id"] == f"{RUN_ID}.001.crashed" and alert["kind"] == "crashed"
    assert alert["created"] == "2025-06-15T15:06:40Z" and alert["exit_code"] == 1
    assert alert["run"]["name"] == "resnet50-lr3e-4" and alert["run"]["step"] == 12345
    assert alert["error"].endswith("an illegal memory access was encountered")


def test_nan_metrics_become_null_and_json_stays_strict(receiver):
    channel_for(receiver).send(
        sample_alert(AlertKind.FINISHED, scalars={"loss": math.nan, "acc": math.inf, "lr": 0.1})
    )
    assert receiver.messages[0]["alert"]["run"]["scalars"] == {"loss": None, "acc": None, "lr": 0.1}


def test_wrong_secret_is_a_permanent_refusal(receiver):
    with pytest.raises(DeliveryError) as err:
        channel_for(receiver, secret="not-the-shared-one").send(sample_alert())
    assert err.value.permanent and "401" in str(err.value)


@pytest.mark.parametrize(
    "status, headers, permanent, retry_after",
    [
        (429, {"Retry-After": "7"}, False, 7.0),
        (503, {}, False, None),
        (410, {}, True, None),
    ],
)
def test_http_rules(receiver, status, headers, permanent, retry_after):
    receiver.fail(status=status, body="no", headers=headers)
    with pytest.raises(DeliveryError) as err:
        channel_for(receiver).send(sample_alert())
    assert err.value.permanent is permanent and err.value.retry_after == retry_after


def test_check_options_refuses_header_injection():
    url = "https://example.org/hook"
    assert WebhookChannel.check_options({"url": url, "headers": {"X-Team": "ml"}}) == []
    problems = WebhookChannel.check_options(
        {"url": url, "headers": {"X-Evil": "a\r\nHost: other", "Content-Type": "text/plain", "bad name": "x"}}
    )
    assert {k for k, _ in problems} == {"headers.X-Evil", "headers.Content-Type", "headers"}
    channel = build_channel(
        "h",
        {
            "type": "webhook",
            "url": url,
            "secret": "s3cret-value",
            "headers": {"Authorization": "Bearer tok-123"},
        },
    )
    assert {"s3cret-value", "Bearer tok-123"} <= set(channel.secrets())
