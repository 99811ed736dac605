"""Delivery workers: FIFO, pacing, retries on the outbox's schedule, dead
letters, the DingTalk digest, inline channels, and no secret in any log."""

from __future__ import annotations

import json
import logging
import threading

import pytest

from sentinel.channels import build_channel
from sentinel.channels.base import Channel
from sentinel.daemon.config import ChannelConfig, Config
from sentinel.delivery.outbox import Outbox, RetryPolicy
from sentinel.delivery.workers import ChannelSet, Delivery, RateLimiter
from sentinel.model.alerts import AlertKind
from tests.fakes import FakeDingTalk, FakeSlack
from tests.fakes.samples import NOW, FakeClock, sample_alert
from tests.waiting import wait_for

POLICY = RetryPolicy(base=10.0, cap=1800.0, jitter=0.25, retry_for=48 * 3600.0)


# ---------------------------------------------------------------- pacing (pure)


def test_rate_limiter_min_interval():
    limiter = RateLimiter(min_interval=1.0)
    assert limiter.next_allowed(100.0) == 100.0
    limiter.record(100.0)
    assert limiter.next_allowed(100.2) == 101.0
    assert limiter.next_allowed(101.5) == 101.5
    assert limiter.remaining(100.0) is None


def test_rate_limiter_window():
    limiter = RateLimiter(min_interval=1.0, max_count=3, window=60.0)
    for t in (0.0, 1.0, 2.0):
        assert limiter.next_allowed(t) == t
        limiter.record(t)
    assert limiter.remaining(2.0) == 0
    assert limiter.next_allowed(3.0) == 60.0  # the oldest send leaves the window
    assert limiter.remaining(60.0) == 1
    assert limiter.remaining(62.5) == 3


def test_rate_limiter_counts_a_request_from_its_answer():
    """The service sees a request arrive somewhere between send and answer:
    pacing from the answer keeps the next one from arriving too early."""
    limiter = RateLimiter(min_interval=1.0)
    limiter.record(100.0)
    limiter.finished(100.0, 100.4)
    assert limiter.next_allowed(100.5) == pytest.approx(101.4)
    limiter.finished(99.0, 200.0)  # not a request it knows: no change
    assert limiter.next_allowed(100.5) == pytest.approx(101.4)


# ---------------------------------------------------------------- one step at a time, on a fake clock


@pytest.fixture
def outbox(tmp_path):
    return Outbox(tmp_path / "outbox", policy=POLICY)


@pytest.fixture
def slack():
    with FakeSlack(min_interval=0.0) as fake:
        yield fake


def slack_delivery(outbox, slack, clock):
    channel = build_channel("ops", {"type": "slack", "webhook_url": slack.webhook_url})
    return Delivery(outbox, ChannelSet({"ops": channel}), clock, rand=lambda: 0.0)


def message_texts(fake):
    """The texts of the run messages Slack got; each is quoted as the run's words."""
    texts = [m["blocks"][1]["text"]["text"] for m in fake.messages]
    assert all(text.startswith("> ") for text in texts), texts
    return [text[2:] for text in texts]


def test_fifo_and_one_per_second_per_webhook(outbox, slack):
    clock = FakeClock()
    delivery = slack_delivery(outbox, slack, clock)
    for n in range(3):
        outbox.enqueue(sample_alert(AlertKind.MESSAGE, n=n, text=f"msg {n}"), ["ops"])
    assert delivery.step("ops") is None  # sent the oldest
    assert delivery.step("ops") == pytest.approx(1.0)  # Slack pacing: wait a second
    clock.advance(1.0)
    assert delivery.step("ops") is None
    clock.advance(1.0)
    assert delivery.step("ops") is None
    assert delivery.step("ops") == delivery.idle_wait  # nothing left
    assert message_texts(slack) == ["msg 0", "msg 1", "msg 2"]
    assert outbox.pending_count() == 0


def test_webhook_down_then_up_is_delivered(outbox, slack):
    clock = FakeClock()
    delivery = slack_delivery(outbox, slack, clock)
    outbox.enqueue(sample_alert(n=1), ["ops"])
    outbox.enqueue(sample_alert(n=2), ["ops"])
    slack.fail("down")
    assert delivery.step("ops") is None  # attempt 1 failed
    assert delivery.step("ops") == pytest.approx(10.0)  # backoff; the second alert waits behind the first
    clock.advance(10.0)
    assert delivery.step("ops") is None  # attempt 2 failed
    assert delivery.step("ops") == pytest.approx(20.0)
    slack.recover()
    clock.advance(20.0)
    delivery.step("ops")
    clock.advance(1.0)
    delivery.step("ops")
    assert outbox.pending_count() == 0
    assert [r.status for r in slack.received()] == [0, 0, 200, 200]
    assert len(slack.messages) == 2


def test_429_retry_after_is_honoured(outbox):
    clock = FakeClock()
    with FakeSlack(min_interval=30.0) as slack:
        delivery = slack_delivery(outbox, slack, clock)
        outbox.enqueue(sample_alert(n=1), ["ops"])
        outbox.enqueue(sample_alert(n=2), ["ops"])
        delivery.step("ops")
        clock.advance(1.0)
        delivery.step("ops")  # the fake wants 30 s between messages: 429 Retry-After 30
        (pending,) = outbox.pending("ops")
    assert pending.next_attempt == NOW + 1.0 + 30.0
    assert "429" in pending.last_error


def test_permanent_4xx_is_dead_lettered(outbox, slack, caplog):
    clock = FakeClock()
    delivery = slack_delivery(outbox, slack, clock)
    alert = sample_alert()
    outbox.enqueue(alert, ["ops"])
    slack.fail(status=410, body="channel_is_archived")
    with caplog.at_level(logging.INFO):
        assert delivery.step("ops") is None
    assert outbox.pending_count() == 0
    (letter,) = outbox.dead_letters()
    assert letter.alert_id == alert.alert_id and "channel_is_archived" in letter.reason
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and alert.alert_id in errors[0].getMessage()


def test_unknown_channel_is_dead_lettered(outbox):
    delivery = Delivery(outbox, ChannelSet({}), FakeClock())
    outbox.enqueue(sample_alert(), ["gone"])
    delivery.step("gone")
    assert [d.reason for d in outbox.dead_letters()] == ["channel 'gone' is not configured"]


class Exploding(Channel):
    type_name = "exploding"

    @classmethod
    def check_options(cls, options):
        return []

    def send(self, alert):
        raise KeyError("bug")


def test_a_channel_bug_keeps_the_alert(outbox, caplog):
    delivery = Delivery(outbox, ChannelSet({"x": Exploding("x", {})}), FakeClock())
    outbox.enqueue(sample_alert(), ["x"])
    with caplog.at_level(logging.ERROR):
        delivery.step("x")
    (pending,) = outbox.pending("x")
    assert pending.attempts == 1 and "unexpected KeyError" in pending.last_error
    assert "KeyError" in caplog.text


class SlowChannel(Channel):
    """Answers after ``delay`` seconds of the test's clock."""

    type_name = "slow"
    min_interval = 1.0

    def __init__(self, clock, delay):
        super().__init__("slow", {})
        self.clock, self.delay, self.sent = clock, delay, []

    @classmethod
    def check_options(cls, options):
        return []

    def send(self, alert):
        self.clock.advance(self.delay)
        self.sent.append(alert.alert_id)
        return "ok"


def test_pacing_counts_from_the_answer_not_the_send(outbox):
    clock = FakeClock()
    channel = SlowChannel(clock, delay=0.4)
    delivery = Delivery(outbox, ChannelSet({"slow": channel}), clock)
    for n in range(2):
        outbox.enqueue(sample_alert(n=n), ["slow"])
    assert delivery.step("slow") is None
    assert delivery.step("slow") == pytest.approx(1.0)  # a full second after the answer
    clock.advance(1.0)
    assert delivery.step("slow") is None
    assert len(channel.sent) == 2


def test_slack_burst_becomes_digests_within_block_kit_limits(outbox, slack):
    clock = FakeClock()
    delivery = slack_delivery(outbox, slack, clock)
    for n in range(60):
        outbox.enqueue(sample_alert(AlertKind.KILLED, n=n, run_name=f"run-{n:02d}"), ["ops"])
    assert delivery.step("ops") is None
    clock.advance(1.0)
    assert delivery.step("ops") is None  # the 12 left would still take 11 s one by one
    assert outbox.pending_count() == 0
    first, second = slack.messages
    assert first["blocks"][0]["text"]["text"] == "run-sentinel: 48 alerts"
    assert second["blocks"][0]["text"]["text"] == "run-sentinel: 12 alerts"
    for message in (first, second):
        assert len(message["blocks"]) <= 50 and len(message["text"]) <= 3000
    items = [b["text"]["text"] for m in (first, second) for b in m["blocks"] if b["type"] == "section"]
    assert [f"run-{n:02d}" in item for n, item in enumerate(items)] == [True] * 60  # in order
    assert all(r.status == 200 for r in slack.received())


def test_slack_backlog_that_drains_quickly_is_sent_one_by_one(outbox, slack):
    clock = FakeClock()
    delivery = slack_delivery(outbox, slack, clock)
    for n in range(5):
        outbox.enqueue(sample_alert(AlertKind.MESSAGE, n=n, text=f"msg {n}"), ["ops"])
    for _ in range(5):
        wait = delivery.step("ops")
        if wait is not None:
            clock.advance(wait)
            assert delivery.step("ops") is None
    assert message_texts(slack) == [f"msg {n}" for n in range(5)]


# ---------------------------------------------------------------- DingTalk: 20/min and the digest


@pytest.fixture
def robot():
    with FakeDingTalk() as fake:
        yield fake


def ding_delivery(outbox, robot, clock):
    channel = build_channel("team", {"type": "dingtalk", "webhook_url": robot.webhook_url,
                                     "secret": robot.secret})
    return Delivery(outbox, ChannelSet({"team": channel}), clock, rand=lambda: 0.0)


def test_burst_beyond_the_limit_becomes_one_digest(outbox, robot):
    clock = FakeClock()
    delivery = ding_delivery(outbox, robot, clock)
    for n in range(25):
        outbox.enqueue(sample_alert(AlertKind.CRASHED, n=n, run_name=f"run-{n:02d}"), ["team"])
    assert delivery.step("team") is None
    (message,) = robot.messages
    assert message["markdown"]["title"] == "run-sentinel: 25 alerts"
    text = message["markdown"]["text"]
    assert [f"run-{n:02d}" in text for n in range(25)] == [True] * 25
    assert text.index("run-00") < text.index("run-24")  # oldest first
    assert outbox.pending_count() == 0


def test_small_backlog_is_sent_one_by_one_and_paced(outbox, robot):
    clock = FakeClock()
    delivery = ding_delivery(outbox, robot, clock)
    for n in range(3):
        outbox.enqueue(sample_alert(n=n, run_name=f"run-{n}"), ["team"])
    waits = []
    for _ in range(3):
        wait = delivery.step("team")
        while wait is not None:
            waits.append(wait)
            clock.advance(wait)
            wait = delivery.step("team")
    assert [m["markdown"]["title"] for m in robot.messages] == [
        "💥 Crashed: run-0", "💥 Crashed: run-1", "💥 Crashed: run-2"]
    assert waits == [pytest.approx(1.0), pytest.approx(1.0)]


def test_never_more_than_19_per_minute(outbox, robot):
    """Alerts trickling in one at a time: the 20th inside a minute waits for the window."""
    clock = FakeClock()
    delivery = ding_delivery(outbox, robot, clock)
    for n in range(19):
        outbox.enqueue(sample_alert(n=n), ["team"])
        assert delivery.step("team") is None
        clock.advance(1.0)
    outbox.enqueue(sample_alert(n=19), ["team"])
    assert delivery.step("team") == pytest.approx(60.0 - 19.0)
    clock.advance(60.0 - 19.0)
    assert delivery.step("team") is None
    assert len(robot.messages) == 20
    assert all(r.status == 200 and json.loads(r.answer)["errcode"] == 0 for r in robot.received())


# ---------------------------------------------------------------- threads


def test_workers_deliver_in_order_and_stop(outbox, slack):
    channel = build_channel("ops", {"type": "slack", "webhook_url": slack.webhook_url})
    channel.min_interval = 0.0
    delivery = Delivery(outbox, ChannelSet({"ops": channel}))
    delivery.start()
    try:
        for n in range(10):
            outbox.enqueue(sample_alert(AlertKind.MESSAGE, n=n, text=f"msg {n}"), ["ops"])
            delivery.wake()
        wait_for(lambda: outbox.pending_count() == 0, 30, what="an empty outbox")
    finally:
        assert delivery.stop(10)
    assert message_texts(slack) == [f"msg {n}" for n in range(10)]


def test_workers_retry_until_the_webhook_is_back(tmp_path, slack):
    outbox = Outbox(tmp_path / "outbox", policy=RetryPolicy(base=0.02, cap=0.05))  # tiny real delays
    channel = build_channel("ops", {"type": "slack", "webhook_url": slack.webhook_url})
    channel.min_interval = 0.0
    delivery = Delivery(outbox, ChannelSet({"ops": channel}))
    slack.fail("5xx")
    delivery.start()
    try:
        outbox.enqueue(sample_alert(), ["ops"])
        delivery.wake()
        wait_for(lambda: len(slack.received()) >= 3, 30, what="three attempts while Slack is down")
        slack.recover()
        wait_for(lambda: outbox.pending_count() == 0, 30, what="an empty outbox")
    finally:
        assert delivery.stop(10)
    assert len(slack.messages) == 1
    assert outbox.dead_letters() == []


# ---------------------------------------------------------------- secrets


def test_no_secret_in_logs_or_output_for_failing_deliveries(tmp_path, caplog, capsys):
    with FakeDingTalk() as robot, FakeSlack(min_interval=0.0) as slack:
        ding_secret, token = "SECsuper-secret-signing-key-0042", robot.access_token
        slack_token = slack.hook_path.rsplit("/", 1)[1]
        channels = ChannelSet({
            "team": build_channel("team", {"type": "dingtalk", "webhook_url": robot.webhook_url,
                                           "secret": ding_secret}),  # not the robot's: 310000
            "ops": build_channel("ops", {"type": "slack", "webhook_url": slack.webhook_url}),
        })
        outbox = Outbox(tmp_path / "outbox", policy=POLICY)
        delivery = Delivery(outbox, channels, FakeClock(), rand=lambda: 0.0)
        outbox.enqueue(sample_alert(n=1), ["team", "ops"])
        slack.fail("down")
        caplog.set_level(logging.DEBUG)  # urllib3 logs request lines at debug level
        delivery.step("team")
        delivery.step("ops")
        slack.fail(status=404, body="no_service")
        delivery.clock.advance(3600)
        delivery.step("ops")
        assert len(robot.received()) == 1 and len(slack.received()) == 2

    secrets = [ding_secret, token, slack_token, slack.hook_path]
    captured = capsys.readouterr()
    logged = caplog.text + "".join(str(r.__dict__) for r in caplog.records)
    stored = "".join(p.read_text() for p in (tmp_path / "outbox").rglob("*.json"))
    assert "sign not match" in caplog.text and "no_service" in caplog.text  # the failures were logged
    assert any("127.0.0.1" in r.getMessage() for r in caplog.records if r.name.startswith("urllib3"))
    for secret in secrets:
        assert secret not in logged
        assert secret not in captured.out + captured.err
        assert secret not in stored
    assert len(outbox.dead_letters()) == 2


# ---------------------------------------------------------------- channel set


def test_inline_channels_have_stable_secret_free_names_and_survive_restarts(tmp_path, slack):
    options = {"type": "slack", "webhook_url": slack.webhook_url}
    first = ChannelSet(inline_dir=tmp_path / "inline")
    name = first.register_inline(options)
    assert name.startswith("inline-") and slack.hook_path.rsplit("/", 1)[1] not in name
    assert first.register_inline(dict(options)) == name
    restarted = ChannelSet(inline_dir=tmp_path / "inline", language="zh")
    channel = restarted.get(name)
    assert channel is not None and channel.webhook_url == slack.webhook_url
    assert channel.language == "zh" and channel.follow_run_language
    assert restarted.get("inline-0000000000000000") is None


def test_invalid_inline_channel_error_has_no_secret():
    with pytest.raises(ValueError) as err:
        ChannelSet().register_inline({"type": "dingtalk", "webhook_url": "ftp://tok3n-value-here",
                                      "secret": "SECdo-not-print"})
    assert "webhook_url" in str(err.value)
    assert "tok3n-value-here" not in str(err.value) and "SECdo-not-print" not in str(err.value)


def test_channel_set_from_config(tmp_path):
    config = Config(spool=tmp_path / "spool", channels={
        "console": ChannelConfig("console", "console", {}),
        "phone": ChannelConfig("phone", "bark", {"key": "AbCdEfGhIjKlMnOpQrStUv"}, "zh"),
    })
    channels = ChannelSet.from_config(config)
    assert sorted(channels.names()) == ["console", "phone"]
    assert channels.get("phone").language == "zh"
    assert channels.get("nope") is None


def test_a_bounded_pool_serves_many_channels_and_idle_workers_end(tmp_path, slack):
    """Twelve webhooks that all hang hold three workers, not twelve; each
    channel still gets its alert once they answer, and then the workers end."""
    outbox = Outbox(tmp_path / "outbox", policy=POLICY)
    names = [f"hook{n}" for n in range(12)]
    channels = {}
    for name in names:
        channels[name] = build_channel(name, {"type": "slack", "webhook_url": f"{slack.webhook_url}?{name}"})
        channels[name].min_interval = 0.0
    delivery = Delivery(outbox, ChannelSet(channels), workers=3, linger=0.05)
    slack.hold_after(0)
    delivery.start()
    try:
        for n, name in enumerate(names):
            outbox.enqueue(sample_alert(AlertKind.MESSAGE, n=n, text=f"to {name}"), [name])
        delivery.wake()
        wait_for(lambda: len(slack.received()) >= 3, 30, what="three requests in flight")
        assert delivery.worker_count() == 3
        slack.release()
        wait_for(lambda: outbox.pending_count() == 0, 30, what="every channel served")
        wait_for(lambda: delivery.worker_count() == 0, 30, what="idle workers ending")
    finally:
        assert delivery.stop(10)
    assert sorted(message_texts(slack)) == sorted(f"to {name}" for name in names)


def _delivery_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("sentinel-deliver-") and t.is_alive()}


def test_a_warm_worker_waits_for_the_next_alert_instead_of_ending(tmp_path, slack):
    """With no linger at all an idle worker ends at once; ``keep_warm`` keeps
    one waiting from the start, and that same thread sends each new alert."""
    outbox = Outbox(tmp_path / "outbox", policy=POLICY)
    channel = build_channel("ops", {"type": "slack", "webhook_url": slack.webhook_url})
    channel.min_interval = 0.0
    before = _delivery_threads()
    delivery = Delivery(outbox, ChannelSet({"ops": channel}), linger=0.0, keep_warm=1)
    delivery.start()
    try:
        warm = _delivery_threads() - before
        assert len(warm) == 1 and delivery.worker_count() == 1
        for n in range(2):
            outbox.enqueue(sample_alert(AlertKind.MESSAGE, n=n, text=f"alert {n}"), ["ops"])
            delivery.wake()
            wait_for(lambda: outbox.pending_count() == 0, 30, what=f"alert {n} delivered")
        assert _delivery_threads() - before == warm  # no thread ended, none was started
    finally:
        assert delivery.stop(10)
    assert message_texts(slack) == ["alert 0", "alert 1"]
