"""Docker's events stream as evidence of `docker stop` (the live stream: tests/test_docker_e2e.py)."""

from __future__ import annotations

import json

import pytest

from sentinel.daemon.docker_events import DockerEvents, parse_event, socket_path

CID = "8699c0aa86b91a6857cfb30f61b6ad4d895045235eeb5fab99665004b61dbc4b"


def event(signum: str, when: float, action: str = "kill", cid: str = CID) -> bytes:
    # The shape Docker 20.10 streams (GET /events), one JSON object a line.
    return json.dumps({"status": action, "id": cid, "from": "sentinel-empty", "Type": "container",
                       "Action": action, "Actor": {"ID": cid, "Attributes": {
                           "image": "sentinel-empty", "name": "box", "signal": signum}},
                       "scope": "local", "time": int(when), "timeNano": int(when * 1e9)}).encode()


def test_a_kill_event_gives_container_time_and_signal() -> None:
    assert parse_event(event("15", 1000.5)) == (CID, 1000.5, 15)


@pytest.mark.parametrize("line", [b"", b"{", b"[]", b'{"Action": "kill"}', event("TERM", 1.0),
                                  event("15", 1.0, action="die"), event("15", 1.0, cid="abc")])
def test_anything_else_is_no_event(line: bytes) -> None:
    assert parse_event(line) is None


def test_a_sigterm_then_a_sigkill_death_is_a_stop_and_a_bare_kill_is_not() -> None:
    events = DockerEvents(connect=False)
    events.record(CID, 100.0, 15)
    reason = events.stop_reason(CID, since=50.0, signum=9, now=110.0)
    assert reason is not None and reason.code == "container_stopped" and reason.args == {"after": 10.0}
    assert events.stop_reason(CID, since=50.0, signum=15, now=110.0) is None  # it died of the SIGTERM
    assert events.stop_reason(CID, since=101.0, signum=9, now=110.0) is None  # a SIGTERM to an earlier run
    assert events.stop_reason("f" * 64, since=50.0, signum=9, now=110.0) is None  # another container


def test_memory_is_bounded() -> None:
    events = DockerEvents(connect=False)
    for n in range(5000):
        events.record(f"{n:064x}", float(n), 15)
    assert events.stop_reason(f"{0:064x}", 0.0, 9, 1e9) is None  # the oldest were forgotten
    assert events.stop_reason(f"{4999:064x}", 0.0, 9, 1e9) is not None


def test_only_a_unix_engine_is_followed() -> None:
    assert socket_path({}) == "/var/run/docker.sock"
    assert socket_path({"DOCKER_HOST": "unix:///tmp/d.sock"}) == "/tmp/d.sock"
    assert socket_path({"DOCKER_HOST": "tcp://10.0.0.1:2375"}) is None
