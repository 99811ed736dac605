"""The order a channel's queue is sent in, kept incrementally by the outbox.

The outbox keeps each channel's queue per user, so a delivery step's
``pending(limit=...)`` does not regroup and sort the whole queue. These
tests hold the incremental order to the plain algorithm it replaced (the
whole queue regrouped per user on every call), on randomised queues
changed by every operation that touches them, and count the work a
``pending(limit=1)`` does beside a user's thousands of queued alerts.
"""

from __future__ import annotations

import bisect
import os
import random
from collections import deque
from pathlib import Path
from typing import Any

import pytest

from sentinel.delivery.outbox import Outbox, ResendRefused, RetryPolicy
from sentinel.model.alerts import Alert, AlertKind
from tests.fakes.samples import NOW, sample_alert

STATE_KINDS = [AlertKind.STALLED, AlertKind.RECOVERED, AlertKind.KILLED, AlertKind.CRASHED]
CHANNELS = ["bark", "slack"]
Entry = tuple[int, int, str]


# ---------------------------------------------------------------- the reference: the old algorithm


def reference_order(queue: list[Entry], meta: dict[str, tuple[str, str]],
                    served: dict[str, int]) -> list[Entry]:
    """The queue (sorted (rank, seq, alert id)) in sending order, computed from
    scratch as the outbox did before it kept its queues per user."""
    by_user: dict[str, list[Entry]] = {}
    for entry in queue:
        by_user.setdefault(meta[entry[2]][0], []).append(entry)
    if len(by_user) < 2:
        return one_users_order(queue, meta)
    turns = [deque(one_users_order(by_user[user], meta))
             for user in sorted(by_user, key=lambda user: served.get(user, -1))]
    out: list[Entry] = []
    while turns:
        for entries in turns:
            out.append(entries.popleft())
        turns = [entries for entries in turns if entries]
    return out


def one_users_order(queue: list[Entry], meta: dict[str, tuple[str, str]]) -> list[Entry]:
    split = bisect.bisect_left(queue, (1, 0, ""))
    states, messages = queue[:split], queue[split:]
    if not states or not messages:
        return states + messages
    message_seqs: dict[str, list[int]] = {}
    for _, seq, alert_id in messages:
        message_seqs.setdefault(meta[alert_id][1], []).append(seq)
    out: list[Entry] = []
    held: dict[str, deque[Entry]] = {}
    for entry in states:
        run_id = meta[entry[2]][1]
        if message_seqs.get(run_id, [entry[1]])[0] < entry[1]:
            held.setdefault(run_id, deque()).append(entry)
        else:
            out.append(entry)
    if not held:
        return states + messages
    sent: dict[str, int] = {}
    for entry in messages:
        out.append(entry)
        run_id = meta[entry[2]][1]
        waiting = held.get(run_id)
        if waiting:
            seqs = message_seqs[run_id]
            sent[run_id] = index = sent.get(run_id, 0) + 1
            following = seqs[index] if index < len(seqs) else None
            while waiting and (following is None or waiting[0][1] < following):
                out.append(waiting.popleft())
    return out


# ---------------------------------------------------------------- a model of the queues


class Model:
    """What should be queued where, and whom each channel tried last, kept beside an outbox."""

    def __init__(self) -> None:
        self.meta: dict[str, tuple[str, str]] = {}  # alert id -> (user, run id)
        self.entry: dict[str, Entry] = {}
        self.queued: dict[str, set[str]] = {name: set() for name in CHANNELS}
        self.dead: dict[str, set[str]] = {name: set() for name in CHANNELS}
        self.served: dict[str, dict[str, int]] = {name: {} for name in CHANNELS}
        self.tries = 0

    def order(self, channel: str) -> list[str]:
        queue = sorted(self.entry[a] for a in self.queued[channel])
        return [e[2] for e in reference_order(queue, self.meta, self.served[channel])]

    def tried(self, channel: str, alert_id: str) -> None:
        self.tries += 1
        self.served[channel][self.meta[alert_id][0]] = self.tries


def run_id_of(user: str, n: int) -> str:
    return f"20250615T1400{n:02d}-{1000 + len(user)}-{user}"


def random_alert(rng: random.Random, seq: int) -> Alert:
    user = rng.choice(["alice", "bob", "mallory"])
    run = run_id_of(user, rng.randrange(3))
    if rng.random() < 0.55:
        return sample_alert(AlertKind.MESSAGE, alert_id=f"{run}.m{seq:08d}", run_id=run, user=user)
    kind = rng.choice(STATE_KINDS)
    return sample_alert(kind, alert_id=f"{run}.{seq:03d}.{kind.value}", run_id=run, user=user)


@pytest.fixture
def no_fsync(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "fsync", lambda fd: None)  # thousands of records: order, not durability


@pytest.mark.parametrize("seed", range(6))
def test_the_order_is_the_old_algorithms_under_random_changes(tmp_path: Path, seed: int,
                                                               no_fsync: None) -> None:
    rng = random.Random(seed)
    outbox = Outbox(tmp_path / "outbox", policy=RetryPolicy())
    model = Model()
    for step in range(1, 400):
        op = rng.random()
        pending_now = [(c, a) for c in CHANNELS for a in model.queued[c]]
        if op < 0.5 or not pending_now:
            alert = random_alert(rng, step)
            channels = rng.sample(CHANNELS, rng.randrange(len(CHANNELS) + 1))
            if rng.random() < 0.5:
                assert outbox.admit(alert, channels)
            else:
                assert outbox.enqueue(alert, channels, sync=False)
            model.meta[alert.alert_id] = (alert.user, alert.run_id)
            model.entry[alert.alert_id] = (1 if alert.kind is AlertKind.MESSAGE else 0, step,
                                           alert.alert_id)
            for channel in channels:
                model.queued[channel].add(alert.alert_id)
        elif op < 0.75:
            channel, alert_id = rng.choice(sorted(pending_now))
            outbox.mark_delivered(alert_id, channel, "ok", NOW)
            model.tried(channel, alert_id)
            model.queued[channel].discard(alert_id)
        elif op < 0.85:
            channel, alert_id = rng.choice(sorted(pending_now))
            permanent = rng.random() < 0.5
            outbox.mark_failed(alert_id, channel, "no", NOW, permanent=permanent)
            model.tried(channel, alert_id)
            if permanent:
                model.queued[channel].discard(alert_id)
                model.dead[channel].add(alert_id)
        elif op < 0.93:
            dead = sorted({a for c in CHANNELS for a in model.dead[c]})
            if dead:
                alert_id = rng.choice(dead)
                assert sorted(outbox.resend(alert_id)) == [c for c in CHANNELS if alert_id in model.dead[c]]
                for channel in CHANNELS:
                    if alert_id in model.dead[channel]:
                        model.dead[channel].discard(alert_id)
                        model.queued[channel].add(alert_id)
            else:
                with pytest.raises(ResendRefused):
                    outbox.resend("no-such-alert")
        else:
            user = rng.choice(["alice", "bob", "mallory"])
            run = run_id_of(user, rng.randrange(3))
            outbox.forget_run(run)
            for channel in CHANNELS:
                model.queued[channel] = {a for a in model.queued[channel] if model.meta[a][1] != run}
                model.dead[channel] = {a for a in model.dead[channel] if model.meta[a][1] != run}
        for channel in CHANNELS:
            expected = model.order(channel)
            assert [p.alert.alert_id for p in outbox.pending(channel)] == expected, (seed, step, channel)
            limit = rng.randrange(1, 8)
            assert [p.alert.alert_id for p in outbox.pending(channel, limit=limit)] == expected[:limit]
        assert outbox.pending_count() == sum(len(q) for q in model.queued.values())
        assert sorted(outbox.channels_pending()) == sorted(c for c in CHANNELS if model.queued[c])
    # A fresh process (nobody tried yet) rebuilds the same queues from disk.
    outbox.write_admitted()
    reopened = Outbox(tmp_path / "outbox")
    for channel in CHANNELS:
        model.served[channel] = {}
        assert [p.alert.alert_id for p in reopened.pending(channel)] == model.order(channel)


class CountingDict(dict[str, Any]):
    """A dict that counts its lookups by key."""

    lookups = 0

    def __getitem__(self, key: str) -> Any:
        CountingDict.lookups += 1
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        CountingDict.lookups += 1
        return super().get(key, default)


def test_the_next_alert_is_found_without_touching_every_queued_one(tmp_path: Path, no_fsync: None) -> None:
    """A delivery step asks for the head (``limit=1``) and a small batch: with
    Mallory's 3,000 messages and 1,000 state alerts queued beside Alice's one
    kill alert, that looks at a handful of records, not at all of them."""
    outbox = Outbox(tmp_path / "outbox")
    mallory, alice = run_id_of("mallory", 0), run_id_of("alice", 0)
    for n in range(3000):
        outbox.admit(sample_alert(AlertKind.MESSAGE, alert_id=f"{mallory}.m{n:08d}", run_id=mallory,
                                  user="mallory"), ["bark"])
    for n in range(1000):
        run = run_id_of("mallory", 1 + n % 50)
        outbox.admit(sample_alert(AlertKind.KILLED, alert_id=f"{run}.{n:03d}.killed", run_id=run,
                                  user="mallory"), ["bark"])
    outbox.mark_delivered(outbox.pending("bark", limit=1)[0].alert.alert_id, "bark", "ok", NOW)
    kill = sample_alert(AlertKind.KILLED, alert_id=f"{alice}.001.killed", run_id=alice, user="alice")
    outbox.admit(kill, ["bark"])

    outbox._open = CountingDict(outbox._open)
    queue = outbox._queues["bark"]
    if hasattr(queue, "runs"):  # the queue's own index of its alerts' runs
        queue.runs = CountingDict(queue.runs)
    CountingDict.lookups = 0
    assert [p.alert.alert_id for p in outbox.pending("bark", limit=1)] == [kill.alert_id]  # her turn is next
    assert CountingDict.lookups <= 10
    CountingDict.lookups = 0
    batch = outbox.pending("bark", limit=50)
    assert batch[0].alert == kill and len(batch) == 50
    assert CountingDict.lookups <= 3 * 50
