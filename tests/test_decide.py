"""The run state machine: every (state, event) pair, stall timing, journal replay."""

from __future__ import annotations

import itertools

import pytest

from sentinel.formats.spool import FINAL_STATES, FinalRecord, Progress
from sentinel.model.alerts import AlertKind
from sentinel.model.run_states import (
    ENDING_KINDS,
    Event,
    EventKind,
    RunState,
    alert_id,
    exit_event,
    is_stale,
    message_alert_id,
    progress_event,
    replay,
    stall_deadline,
    transition,
)

S, K = RunState, AlertKind
LIVE = (S.RUNNING, S.STALLED, S.FAULTED)
TERMINAL = tuple(s for s in S if s not in LIVE)

# How a job or one of its ranks can end, and the state each ending leaves.
ENDINGS = {
    K.FINISHED: S.FINISHED, K.CRASHED: S.CRASHED, K.ABORTED: S.ABORTED, K.TERMINATED: S.TERMINATED,
    K.KILLED: S.KILLED, K.LOST: S.LOST, K.TIME_LIMIT: S.TIME_LIMIT, K.CANCELLED: S.CANCELLED,
    K.PREEMPTED: S.PREEMPTED, K.NODE_FAILURE: S.NODE_FAILURE,
}
WITH_PAYLOAD = (EventKind.FINAL_SEEN, EventKind.JOB_ENDED, EventKind.FOLDED)
EVENTS = (
    [Event.final(state) for state in FINAL_STATES]
    + [Event.job_ended(kind) for kind in ENDINGS]
    + [Event.folded(kind) for kind in ENDINGS]
    + [Event(kind) for kind in EventKind if kind not in WITH_PAYLOAD]
)

# The whole table for live states: (state, event) -> (new state, alert).
LIVE_TABLE = {
    **{(s, Event.final("finished")): (S.FINISHED, K.FINISHED) for s in LIVE},
    **{(s, Event.final("crashed")): (S.CRASHED, K.CRASHED) for s in LIVE},
    **{(s, Event.final("aborted")): (S.ABORTED, K.ABORTED) for s in LIVE},
    **{(s, Event.final("terminated")): (S.TERMINATED, K.TERMINATED) for s in LIVE},
    # `sentinel run` records a SIGKILLed command's ending for it.
    **{(s, Event.final("killed")): (S.KILLED, K.KILLED) for s in LIVE},
    **{(s, Event(EventKind.EXITED)): (S.KILLED, K.KILLED) for s in LIVE},
    **{(s, Event(EventKind.EXITED_OOM)): (S.KILLED, K.KILLED) for s in LIVE},
    **{(s, Event(EventKind.FOUND_DEAD)): (S.KILLED, K.KILLED) for s in LIVE},
    **{(s, Event(EventKind.OTHER_BOOT)): (S.LOST, K.LOST) for s in LIVE},
    # A run whose process cannot be seen (another PID namespace) went silent: lost, never killed.
    **{(s, Event(EventKind.HEARTBEAT_LOST)): (S.LOST, K.LOST) for s in LIVE},
    (S.RUNNING, Event(EventKind.PROGRESS_STALE)): (S.STALLED, K.STALLED),
    (S.STALLED, Event(EventKind.PROGRESS_STALE)): (S.STALLED, None),
    (S.RUNNING, Event(EventKind.PROGRESS_FRESH)): (S.RUNNING, None),
    (S.STALLED, Event(EventKind.PROGRESS_FRESH)): (S.RUNNING, K.RECOVERED),
    # A job's one alert lands on the run that speaks for it; its other
    # recorded ranks end quietly, each in its own ending.
    **{(s, Event.job_ended(k)): (state, k) for s in LIVE for k, state in ENDINGS.items()},
    **{(s, Event.folded(k)): (state, k) for s in LIVE for k, state in ENDINGS.items()},
    # A GPU fault is said once; a faulted run then stalls silently (the fault said why).
    (S.RUNNING, Event(EventKind.GPU_FAULT)): (S.FAULTED, K.GPU_FAULT),
    (S.STALLED, Event(EventKind.GPU_FAULT)): (S.FAULTED, K.GPU_FAULT),
    (S.FAULTED, Event(EventKind.GPU_FAULT)): (S.FAULTED, None),
    (S.FAULTED, Event(EventKind.PROGRESS_STALE)): (S.FAULTED, None),
    (S.FAULTED, Event(EventKind.PROGRESS_FRESH)): (S.FAULTED, None),
}


def test_table_covers_every_live_pair() -> None:
    assert set(LIVE_TABLE) == set(itertools.product(LIVE, EVENTS))


@pytest.mark.parametrize(("state", "event"), sorted(LIVE_TABLE, key=str), ids=str)
def test_live_transitions(state: RunState, event: Event) -> None:
    assert tuple(transition(state, event)) == LIVE_TABLE[(state, event)]


@pytest.mark.parametrize(("state", "event"), list(itertools.product(TERMINAL, EVENTS)), ids=str)
def test_terminal_states_absorb_everything_silently(state: RunState, event: Event) -> None:
    assert tuple(transition(state, event)) == (state, None)


def test_unknown_final_state_changes_nothing() -> None:
    assert tuple(transition(S.RUNNING, Event.final("exploded"))) == (S.RUNNING, None)


@pytest.mark.parametrize("kind", [EventKind.JOB_ENDED, EventKind.FOLDED])
def test_job_events_with_a_non_ending_kind_change_nothing(kind: EventKind) -> None:
    for payload in ("exploded", None, "stalled", "gpu_fault", "message"):
        assert tuple(transition(S.RUNNING, Event(kind, payload))) == (S.RUNNING, None)


def test_ending_kinds_are_exactly_the_terminal_alerts() -> None:
    assert ENDING_KINDS == ENDINGS


def test_only_folded_events_are_quiet() -> None:
    assert [e for e in EVENTS if e.is_quiet] == [Event.folded(k) for k in ENDINGS]


def test_a_gpu_fault_then_a_death_alerts_twice_and_never_a_stall() -> None:
    state, alerts = S.RUNNING, []
    for event in [Event(EventKind.GPU_FAULT), Event(EventKind.PROGRESS_STALE), Event(EventKind.GPU_FAULT),
                  Event(EventKind.PROGRESS_FRESH), Event(EventKind.EXITED), Event(EventKind.GPU_FAULT)]:
        state, alert = transition(state, event)
        if alert is not None:
            alerts.append(alert)
    assert state is S.KILLED
    assert alerts == [K.GPU_FAULT, K.KILLED]


def test_one_alert_per_transition_over_a_whole_life() -> None:
    """running -> stalled -> (stalled) -> running -> stalled -> killed, then silence."""
    state, alerts = S.RUNNING, []
    for event in [EventKind.PROGRESS_STALE, EventKind.PROGRESS_STALE, EventKind.PROGRESS_FRESH,
                  EventKind.PROGRESS_FRESH, EventKind.PROGRESS_STALE, EventKind.EXITED,
                  EventKind.EXITED, EventKind.FOUND_DEAD]:
        state, alert = transition(state, Event(event))
        if alert is not None:
            alerts.append(alert)
    assert state is S.KILLED
    assert alerts == [K.STALLED, K.RECOVERED, K.STALLED, K.KILLED]


def test_liveness_properties() -> None:
    assert {s for s in S if s.is_live} == set(LIVE)
    assert all(s.is_terminal for s in TERMINAL)


# ------------------------------------------------------------ exit events


def test_exit_event_prefers_the_final_record() -> None:
    final = FinalRecord(state="crashed", ended=5.0, exit_code=3)
    assert exit_event(final, oom=True, at_startup=True) == Event.final("crashed")


@pytest.mark.parametrize(("oom", "at_startup", "kind"), [
    (False, False, EventKind.EXITED),
    (True, False, EventKind.EXITED_OOM),
    (False, True, EventKind.FOUND_DEAD),
    (True, True, EventKind.FOUND_DEAD),
])
def test_exit_event_without_final(oom: bool, at_startup: bool, kind: EventKind) -> None:
    assert exit_event(None, oom=oom, at_startup=at_startup) == Event(kind)


# ------------------------------------------------------------ stall timing


def test_no_progress_file_counts_from_the_start() -> None:
    assert stall_deadline(None, started=100.0, timeout=10.0) == 110.0
    assert not is_stale(None, 100.0, 10.0, now=110.0)
    assert is_stale(None, 100.0, 10.0, now=110.5)


def test_frozen_process_stalls_by_heartbeat() -> None:
    progress = Progress(beat=150.0, seq=5, last_progress=190.0)
    assert stall_deadline(progress, started=100.0, timeout=30.0) == 180.0


def test_hung_training_stalls_by_progress_while_heartbeat_goes_on() -> None:
    progress = Progress(beat=200.0, seq=9, last_progress=120.0)
    assert stall_deadline(progress, started=100.0, timeout=30.0) == 150.0
    assert progress_event(progress, 100.0, 30.0, now=151.0) == Event(EventKind.PROGRESS_STALE)


def test_missing_last_progress_falls_back_to_run_start() -> None:
    progress = Progress(beat=200.0, seq=9, last_progress=None)
    assert stall_deadline(progress, started=100.0, timeout=30.0) == 130.0


def test_expect_pause_pushes_the_deadline() -> None:
    progress = Progress(beat=200.0, seq=9, last_progress=200.0, pause_until=500.0)
    assert stall_deadline(progress, started=100.0, timeout=30.0) == 500.0
    assert progress_event(progress, 100.0, 30.0, now=400.0) == Event(EventKind.PROGRESS_FRESH)
    assert progress_event(progress, 100.0, 30.0, now=501.0) == Event(EventKind.PROGRESS_STALE)


def test_an_expired_pause_does_not_extend_anything() -> None:
    progress = Progress(beat=200.0, seq=9, last_progress=200.0, pause_until=50.0)
    assert stall_deadline(progress, started=100.0, timeout=30.0) == 230.0


# ------------------------------------------------------------ replay and ids


def test_replay_rebuilds_state_and_count() -> None:
    assert replay([]) == (S.RUNNING, 0)
    assert replay([K.MESSAGE, K.STALLED, K.MESSAGE]) == (S.STALLED, 1)
    assert replay([K.STALLED, K.RECOVERED]) == (S.RUNNING, 2)
    assert replay([K.STALLED, K.RECOVERED, K.KILLED]) == (S.KILLED, 3)
    for kind, state in [(K.FINISHED, S.FINISHED), (K.CRASHED, S.CRASHED), (K.ABORTED, S.ABORTED),
                        (K.TERMINATED, S.TERMINATED), (K.LOST, S.LOST)]:
        assert replay([kind]) == (state, 1)
    for kind, state in ENDINGS.items():
        assert replay([K.GPU_FAULT, kind]) == (state, 2)
    assert replay([K.GPU_FAULT]) == (S.FAULTED, 1)


def test_alert_ids_are_stable_and_distinct() -> None:
    run = "20250101T000000-42-abcdef"
    assert alert_id(run, 1, K.KILLED) == f"{run}.001.killed"
    assert alert_id(run, 1, K.KILLED) != alert_id(run, 2, K.KILLED)
    assert message_alert_id(run, 7) == f"{run}.m00000007"
