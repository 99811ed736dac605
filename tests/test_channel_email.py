"""E-mail: a real SMTP server on 127.0.0.1 (aiosmtpd) with STARTTLS or
implicit TLS, AUTH, and a certificate the client must verify."""

from __future__ import annotations

import logging

import pytest

from sentinel.channels import build_channel
from sentinel.channels.base import DeliveryError
from sentinel.channels.mail import EmailChannel
from sentinel.model.alerts import AlertKind
from tests.fakes.samples import sample_alert
from tests.fakes.smtp import FakeSMTP, TestCA

PASSWORD = "app-password-1234"


@pytest.fixture(scope="module")
def ca():
    return TestCA()


@pytest.fixture(params=["starttls", "implicit"])
def smtp(request, ca):
    with FakeSMTP(ca, tls=request.param, password=PASSWORD) as server:
        yield server


def channel_for(server, **extra):
    options = {
        "type": "email",
        "smtp_server": "127.0.0.1",
        "port": server.port,
        "sender": server.user,
        "password": PASSWORD,
        "to": ["bob@example.org", "carol@example.org"],
        "ca_file": str(server.ca.ca_file),
        "tls": server.tls,
    }
    return build_channel("mail", {**options, **extra})


def test_alert_arrives_as_text_and_html(smtp):
    answer = channel_for(smtp).send(sample_alert())
    assert answer.endswith("accepted for 2 recipient(s)")
    (message,) = smtp.wait_for_messages(1)
    assert smtp.envelopes[0]["tls"] and smtp.envelopes[0]["to"] == ["bob@example.org", "carol@example.org"]
    assert message["Subject"] == "💥 Crashed: resnet50-lr3e-4"
    assert message["X-Sentinel-Alert-Id"].endswith(".001.crashed")
    plain = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "RuntimeError: CUDA error: an illegal memory access was encountered" in plain
    assert "Crashed: resnet50-lr3e-4</h2>" in html
    assert smtp.logins == [(smtp.user, True)]


def test_hostile_run_name_cannot_inject_headers(smtp):
    channel_for(smtp, language="zh").send(sample_alert(run_name="x\r\nBcc: eve@example.org"))
    (message,) = smtp.wait_for_messages(1)
    assert message["Bcc"] is None and "eve@example.org" in message["Subject"]
    assert smtp.envelopes[0]["to"] == ["bob@example.org", "carol@example.org"]


def test_wrong_password_is_permanent_and_never_logged(smtp, caplog):
    with caplog.at_level(logging.DEBUG), pytest.raises(DeliveryError) as err:
        channel_for(smtp, password="wrong-password-99").send(sample_alert())
    assert err.value.permanent and "refused the login (535)" in str(err.value)
    assert "wrong-password-99" not in str(err.value) + caplog.text
    assert smtp.messages == []


def test_untrusted_certificate_is_permanent(smtp):
    channel = channel_for(smtp)
    channel.options["ca_file"] = None  # the system's CAs do not know the test CA
    with pytest.raises(DeliveryError) as err:
        channel.send(sample_alert())
    assert err.value.permanent and "ca_file" in str(err.value)


def test_unreachable_server_is_transient(ca):
    with FakeSMTP(ca) as server:
        port = server.port
    channel = build_channel(
        "mail",
        {
            "type": "email",
            "smtp_server": "127.0.0.1",
            "port": port,
            "sender": "a@example.org",
            "to": "b@example.org",
            "password": PASSWORD,
        },
    )
    with pytest.raises(DeliveryError) as err:
        channel.send(sample_alert())
    assert not err.value.permanent and "Connection refused" in str(err.value)


def test_digest_is_one_email(smtp):
    alerts = [sample_alert(AlertKind.KILLED, n=i, run_name=f"run-{i:03d}") for i in range(50)]
    channel = channel_for(smtp)
    assert channel.digest_size(alerts) == 50
    channel.send_digest(alerts)
    (message,) = smtp.wait_for_messages(1)
    assert message["Subject"] == "run-sentinel: 50 alerts"
    assert all(f"run-{i:03d}" in message.get_body(("plain",)).get_content() for i in range(50))


def test_check_options():
    base = {"smtp_server": "smtp.gmail.com", "sender": "a@example.org", "to": "b@example.org"}
    assert EmailChannel.check_options(base) == []
    problems = EmailChannel.check_options(
        {**base, "port": "587", "to": ["not an address"], "timeout": 0, "smtp_server": "smtp.gmail.com:587"}
    )
    assert {k for k, _ in problems} == {"port", "to", "timeout", "smtp_server"}
    assert {k for k, _ in EmailChannel.check_options({})} == {"smtp_server", "sender", "to"}
    assert [k for k, _ in EmailChannel.check_options({**base, "tls": "ssl"})] == ["tls"]
    assert build_channel("m", {"type": "email", **base, "port": 465}).implicit_tls
    assert not build_channel("m", {"type": "email", **base}).implicit_tls


def test_run_text_in_the_plain_body_is_escaped(smtp):
    channel_for(smtp).send(sample_alert(error="Traceback\n  \x1b[2J\x1b]0;owned\x07\nValueError: x"))
    (message,) = smtp.wait_for_messages(1)
    plain = message.get_body(("plain",)).get_content()
    assert "\x1b" not in plain and "\x07" not in plain
    assert "  \\x1b[2J\\x1b]0;owned\\x07\nValueError: x" in plain.replace("\r\n", "\n")
