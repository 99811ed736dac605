"""healthchecks.io as a dead-man's switch, against a strict fake of its APIs.

The pinger's ``step()`` is driven with a test clock: no waiting for periods.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Iterator

import pytest

from sentinel.fleet.healthchecks import Healthchecks, run_rid
from sentinel.fleet.keys import HealthchecksConfig
from sentinel.model.alerts import Alert, AlertKind
from sentinel.model.run_states import RunState
from tests.fakes.healthchecks import FakeHealthchecks

KEY = "hc-test-key-0123456789"


class Clock:
    def __init__(self) -> None:
        self.now = 1_750_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def hc(clock: Clock) -> Iterator[FakeHealthchecks]:
    with FakeHealthchecks(api_key=KEY, clock=clock) as fake:
        yield fake  # type: ignore[misc]


def pinger(hc: FakeHealthchecks, clock: Clock, **settings: object) -> Healthchecks:
    config = HealthchecksConfig(api_key=settings.pop("api_key", KEY), url=hc.url, **settings)  # type: ignore[arg-type]
    return Healthchecks(config, "node-a", loop_slack=60.0, clock=clock)


def run(run_id: str = "20250101T000000-1-abcdef", name: str = "resnet") -> SimpleNamespace:
    return SimpleNamespace(run_id=run_id, state=RunState.RUNNING,
                           record=SimpleNamespace(name=name, labels={}))


def test_creates_the_node_check_and_pings_while_the_loop_runs(hc: FakeHealthchecks, clock: Clock) -> None:
    p = pinger(hc, clock, period=60.0, grace=180.0)
    p.step()
    check = hc.by_name("node-a")
    assert check is not None and (check.timeout, check.grace) == (60, 180)
    assert check.pings == []  # no loop pass yet: nothing proves the daemon works
    p.loop_pass(clock.now)
    p.step()
    assert [ping["kind"] for ping in check.pings] == ["success"]
    # A second daemon start updates the same check (unique by name) instead of adding one.
    again = pinger(hc, clock, period=120.0, grace=300.0)
    again.step()
    assert len(hc.checks) == 1 and (check.timeout, check.grace) == (120, 300)


def test_a_stuck_loop_stops_the_pings(hc: FakeHealthchecks, clock: Clock,
                                      caplog: pytest.LogCaptureFixture) -> None:
    p = pinger(hc, clock)
    p.loop_pass(clock.now)
    p.step()
    check = hc.by_name("node-a")
    assert check is not None and len(check.pings) == 1
    for _ in range(20):  # 10 minutes without a loop pass
        clock.now += 30
        p.step()
    # Pinged while the last pass was within the slack (60 s: at +30 s and +60 s), then never.
    assert len(check.pings) == 3
    assert "the main loop has not run" in caplog.text
    p.loop_pass(clock.now)
    p.step()
    assert check.pings[-1]["kind"] == "success"


def test_pings_respect_the_rate_limit(hc: FakeHealthchecks, clock: Clock) -> None:
    p = pinger(hc, clock)
    for _ in range(600):  # ten minutes, a step every second, the loop always fresh
        p.loop_pass(clock.now)
        p.step()
        clock.now += 1
    check = hc.by_name("node-a")
    assert check is not None
    assert 35 <= len(check.pings) <= 41  # every 15 s
    assert hc.dropped == 0


def test_per_run_checks_signal_start_and_ending_with_rid(hc: FakeHealthchecks, clock: Clock) -> None:
    p = pinger(hc, clock, per_run=True)
    first, second = run("r-1", "train"), run("r-2", "train")
    p.run_tracked(first, False)
    crashed = Alert(alert_id="a", kind=AlertKind.CRASHED, created=clock.now, run_id="r-1", run_name="train",
                    exit_code=3, error="Traceback\nValueError: bad")
    p.run_changed(first, crashed)
    p.run_tracked(second, False)
    killed = Alert(alert_id="b", kind=AlertKind.KILLED, created=clock.now, run_id="r-2", run_name="train")
    p.run_changed(second, killed)
    for _ in range(100):
        p.step()
        clock.now += 1
    check = hc.by_name("node-a train")
    assert check is not None and check.timeout == 31_536_000  # a long run is never "late"
    assert [(ping["kind"], ping["rid"]) for ping in check.pings] == [
        ("start", run_rid("r-1")), ("3", run_rid("r-1")), ("start", run_rid("r-2")), ("fail", run_rid("r-2"))]
    assert "ValueError: bad" in check.pings[1]["body"]
    assert hc.dropped == 0


def test_a_wrong_key_is_reported_without_the_key(hc: FakeHealthchecks, clock: Clock,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    wrong = "wrong-key-987654321"
    p = pinger(hc, clock, api_key=wrong)
    with caplog.at_level(logging.ERROR):
        wait = p.step()
    assert hc.checks == {}
    assert "the API key is missing or wrong" in caplog.text
    assert wrong not in caplog.text
    assert wait == 300.0  # tried again later, not hammered


def test_api_rate_limit_is_retried_with_backoff(clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    with FakeHealthchecks(api_key=KEY, api_limit=1, clock=clock) as hc:
        pinger(hc, clock).step()  # uses up the fake's one call a minute
        p = pinger(hc, clock)
        first = p.step()
        assert "HTTP 429" in caplog.text and 0 < first <= 10
        clock.now += first
        second = p.step()
        assert second > first  # backing off
