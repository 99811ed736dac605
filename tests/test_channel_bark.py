"""Bark: exact payloads against a fake bark-server, both config styles, and
the classification of every answer."""

from __future__ import annotations

import pytest

from sentinel.channels import build_channel, check_channel
from sentinel.channels.bark import BarkChannel, endpoint, render_bark, split_key_url
from sentinel.channels.base import DeliveryError
from sentinel.model.alerts import AlertKind
from tests.fakes.samples import sample_alert


def test_push_payload_is_exactly_what_bark_expects(bark):
    channel = build_channel(
        "phone",
        {
            "type": "bark",
            "server": bark.url,
            "key": bark.key,
            "group": "training",
            "icon": "https://example.org/i.png",
            "sound": "alarm",
        },
    )
    alert = sample_alert(AlertKind.CRASHED)
    answer = channel.send(alert)

    assert answer == "Bark: code 200 success"
    (request,) = bark.received()
    assert request.method == "POST" and request.path == "/push"
    assert request.headers["Content-Type"] == "application/json; charset=utf-8"
    text = render_bark(alert, "en")
    assert request.json() == {
        "device_key": bark.key,
        "title": text.title,
        "subtitle": text.subtitle,
        "body": text.body,
        "level": "timeSensitive",
        "group": "training",
        "icon": "https://example.org/i.png",
        "sound": "alarm",
        "url": "https://swanlab.cn/@alice/cifar10/runs/x1y2z3",
    }
    assert text.title.endswith("Crashed: resnet50-lr3e-4")


def test_key_embedded_url_as_the_app_shows_it(bark):
    app_url = f"{bark.url}/{bark.key}/这里改成你自己的推送内容"
    channel = build_channel("phone", {"type": "bark", "url": app_url})
    channel.send(sample_alert(AlertKind.FINISHED, labels={}))
    (push,) = bark.pushes
    assert push["device_key"] == bark.key
    assert "url" not in push  # no SwanLab link: nothing to open
    assert push["group"] == "run-sentinel" and push["level"] == "active"


@pytest.mark.parametrize(
    "url, server, key",
    [
        ("https://api.day.app/AbCdEfGhIjKlMnOpQrStUv", "https://api.day.app", "AbCdEfGhIjKlMnOpQrStUv"),
        ("https://api.day.app/AbCdEfGhIjKlMnOpQrStUv/", "https://api.day.app", "AbCdEfGhIjKlMnOpQrStUv"),
        ("https://api.day.app/AbCdEfGhIjKlMnOpQrStUv/hello", "https://api.day.app", "AbCdEfGhIjKlMnOpQrStUv"),
        (
            "https://push.example.org/bark/AbCdEfGhIjKlMnOpQrStUv",
            "https://push.example.org/bark",
            "AbCdEfGhIjKlMnOpQrStUv",
        ),
        ("http://127.0.0.1:8080/mykey", "http://127.0.0.1:8080", "mykey"),
    ],
)
def test_split_key_url(url, server, key):
    assert split_key_url(url) == (server, key)


def test_server_with_key_in_path_counts_as_embedded():
    assert endpoint({"server": "https://api.day.app/AbCdEfGhIjKlMnOpQrStUv"}) == (
        "https://api.day.app/push",
        "AbCdEfGhIjKlMnOpQrStUv",
    )
    assert endpoint({"key": "k3y-value"}) == ("https://api.day.app/push", "k3y-value")


def test_level_per_alert_state(bark):
    channel = build_channel(
        "phone", {"type": "bark", "url": bark.key_url, "level": {"killed": "critical", "finished": "passive"}}
    )
    for kind in (AlertKind.KILLED, AlertKind.FINISHED, AlertKind.CRASHED, AlertKind.RECOVERED):
        channel.send(sample_alert(kind))
    assert [p["level"] for p in bark.pushes] == ["critical", "passive", "timeSensitive", "passive"]
    one_level = build_channel("p", {"type": "bark", "key": "abcd", "level": "critical"})
    assert one_level.level_for(AlertKind.FINISHED) == "critical"


def test_check_options_reports_every_problem_with_its_key():
    problems = BarkChannel.check_options(
        {
            "server": "ftp://x",
            "colour": "red",
            "icon": 3,
            "language": "fr",
            "level": {"killed": "loud", "exploded": "active"},
        }
    )
    keys = {key for key, _ in problems}
    assert keys == {"server", "level.killed", "level.exploded", "colour", "icon", "language"}
    assert check_channel({"type": "bark"}) == [
        ("key", "required: the device key from the Bark app (or set url: to the URL the app shows)")
    ]
    assert [k for k, _ in BarkChannel.check_options({"url": "https://api.day.app/"})] == ["url"]
    assert BarkChannel.check_options({"url": "https://api.day.app/AbCdEfGhIjKlMnOpQrStUv"}) == []


def test_unknown_key_is_permanent_and_says_what_to_check(bark):
    channel = build_channel("phone", {"type": "bark", "server": bark.url, "key": "WrongKey123456"})
    with pytest.raises(DeliveryError) as err:
        channel.send(sample_alert())
    assert err.value.permanent
    assert "copy it again from the Bark app" in str(err.value)
    assert "WrongKey123456" not in str(err.value)  # the key is a secret even when wrong


@pytest.mark.parametrize("mode, says", [("5xx", "push failed"), ("down", "connect")])
def test_push_failed_and_server_down_are_transient_and_say_so(bark, mode, says):
    bark.fail(mode)
    with pytest.raises(DeliveryError) as err:
        build_channel("phone", {"type": "bark", "url": bark.key_url}).send(sample_alert())
    assert not err.value.permanent and says in str(err.value)


@pytest.mark.parametrize(
    "status, body, headers, permanent, retry_after",
    [
        (502, "<html>bad gateway</html>", {}, False, None),  # a proxy in front of bark-server
        (429, "slow down", {"Retry-After": "7"}, False, 7.0),
        (404, "Cannot POST /push", {}, True, None),  # wrong server path
        (200, "<html>login portal</html>", {}, True, None),  # not a Bark server at all
    ],
)
def test_answers_that_are_not_bark_json(bark, status, body, headers, permanent, retry_after):
    bark.fail(status=status, body=body, headers=headers)
    with pytest.raises(DeliveryError) as err:
        build_channel("phone", {"type": "bark", "url": bark.key_url}).send(sample_alert())
    assert err.value.permanent is permanent
    assert err.value.retry_after == retry_after


def test_code_in_json_decides_not_http_status(bark):
    bark.fail(status=200, body='{"code": 400, "message": "device key is empty", "timestamp": 1}')
    with pytest.raises(DeliveryError) as err:
        build_channel("phone", {"type": "bark", "url": bark.key_url}).send(sample_alert())
    assert err.value.permanent and "device key is empty" in str(err.value)


def test_secrets_are_the_key_and_url():
    channel = build_channel("phone", {"type": "bark", "url": "https://api.day.app/AbCdEfGhIjKlMnOpQrStUv"})
    assert "AbCdEfGhIjKlMnOpQrStUv" in channel.secrets()
