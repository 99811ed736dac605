"""The durable outbox: an alert, once decided, survives the daemon being killed.

This module owns the outbox's on-disk format; nothing else reads or writes
these files. Layout (under ``<state>/outbox``, 0700)::

    runs/<run_id>/<seq:012d>.<alert_id>.json   one record per alert
    dead/<seq:012d>.<alert_id>.<channel>.json  a delivery that will never succeed
    quarantine/<run_id>.<record name>          a damaged record, moved aside at load

Records are ``OutboxRecord`` (alert, channels, per-channel ``ChannelState``)
and ``DeadLetterRecord``, each with ``to_dict``/``from_dict``.

A record holds the alert, the names of its channels and, per channel, the
delivery state (pending / delivered / dead, attempts, next attempt). It is
replaced atomically (temporary file + rename) on every change, so a process
killed at any instant leaves either the old or the new record: an alert
once enqueued is never lost, and the only duplicate possible is a delivery
whose answer arrived just before the kill, before "delivered" was written
(or, for an ``admit``-ted alert, before its record was).

What is guaranteed when:

- ``enqueue(alert, channels)`` returns once the record is renamed into
  place *and* fsynced (file, its directory, and a new run directory's
  entry): from then on it survives the process being killed and a power cut.
- ``enqueue(alert, channels, sync=False)`` returns once the record is
  renamed into place, before any fsync. From that instant it survives the
  process being killed at any moment (the kernel holds the data; a fresh
  process reads it), but not yet a power cut. It is written to the disk by
  the next ``sync()`` (which returns once every record enqueued before the
  call is fsynced), called by the caller or by a ``SyncThread`` the caller
  pokes right after waking delivery. The daemon does the latter, so the
  fsync (about 1-2 ms, tens under load) runs while the first delivery
  attempt is already under way instead of before it, and never stalls the
  daemon's loop. Only a power cut in that window (between the rename and
  the end of the fsync, normally a few ms) can lose the alert; the daemon
  never deletes the source of an alert (a run's message file) before a
  ``sync()`` of its own returned.
- ``admit(alert, channels)``, then ``write_admitted()`` (the daemon's state
  alerts: killed, crashed, finished, ...): the alert is deliverable from
  ``admit`` on, and the daemon writes its record as soon as the first
  request is on its way, so the write (about half a millisecond of the one
  core a dying process leaves) is not on the way to the phone. A process
  killed in between has lost the record, not the alert: the daemon archives
  no run whose record is unwritten (``unwritten``), so its restart finds the
  run's ending in the spool and sends it (again, if the first request had
  gone out). A record that cannot be written (a full disk) stays in memory,
  its delivery goes on, and ``write_admitted()`` tries again after
  ``SAVE_RETRY``, doubling up to ``SAVE_RETRY_CAP``.
- Every later change of a record (delivered, failed, dead-lettered,
  resent) is fsynced before the call returns. ``resend(alert_id)`` (asked
  for by ``sentinel history --resend``) puts an alert's dead-lettered
  channels back to pending with a fresh attempt budget and removes their
  dead letters.

``seq`` numbers alerts in enqueue order. A channel's pending alerts are sent
each user in turn, the user tried there least recently first (one user's
thousands do not queue in front of another's), and within a user's turns
state alerts first (killed, crashed, finished, ...: a flood of one run's
messages never delays another run's death notice), messages after them,
each group oldest first (so a run's messages arrive in order), except that a
run's state alert never overtakes that same run's earlier messages. A
channel's queue is kept per user as it changes (``_ChannelQueue``), so
finding the next alert costs about the number of users, not the queue's
length. ``journal(run_id)`` lists a run's alerts in the order they were
decided, surviving restarts.
Records stay until ``forget_run`` (when the archived run is pruned), so the
journal also remembers alerts that had no channel at all.

The retry schedule is the pure function ``next_attempt``; callers pass the
time in.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import os
import re
import shutil
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

from sentinel.formats.record_rules import expect, is_int, is_number
from sentinel.formats.safe_json import SpoolFormatError, fsync_dir, make_private_dir, read_json, write_json
from sentinel.model.alerts import Alert, AlertKind

log = logging.getLogger("sentinel.outbox")

FORMAT_VERSION = 1
RUNS_DIR = "runs"
DEAD_DIR = "dead"
QUARANTINE_DIR = "quarantine"  # damaged records, moved aside at load
NO_RUN = "_"  # the directory of alerts that belong to no run
MAX_RECORD_BYTES = 1024 * 1024

PENDING = "pending"
DELIVERED = "delivered"
DEAD = "dead"

# A write the disk refused (full) is tried again after this long, doubling up
# to the cap: a channel's outcome (``Delivery``), an admitted record (``write_admitted``).
SAVE_RETRY = 1.0
SAVE_RETRY_CAP = 60.0


def save_backoff(previous: Optional[float]) -> float:
    """The wait before the next try of a refused write: ``SAVE_RETRY``, then
    each time twice the ``previous`` wait, up to ``SAVE_RETRY_CAP``."""
    return SAVE_RETRY if previous is None else min(SAVE_RETRY_CAP, previous * 2)

# Delivery writes one record at a time under one of these (by alert id), not
# under the outbox's lock: workers of other channels go on while it fsyncs.
_RECORD_LOCKS = 64

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,199}$")
_RECORD_NAME = re.compile(r"^([0-9]{12})\.(.+)\.json$")


# ---------------------------------------------------------------- retry schedule


@dataclass(frozen=True)
class RetryPolicy:
    """Capped exponential backoff with jitter, for at least ``retry_for``."""

    base: float = 10.0  # first retry after about this long
    factor: float = 2.0
    cap: float = 1800.0  # never wait longer than this between attempts (unless told to)
    jitter: float = 0.25  # up to this fraction earlier, so many alerts don't retry in lockstep
    retry_for: float = 48 * 3600.0


def backoff(attempts: int, policy: RetryPolicy, rand: float) -> float:
    """Delay after the ``attempts``-th failed attempt (1-based); ``rand`` in [0, 1)."""
    exponent = max(0, attempts - 1)
    # Compare in log space first: factor ** 10_000 would overflow.
    raw = policy.cap if exponent > 64 else min(policy.cap, policy.base * policy.factor ** exponent)
    return raw * (1.0 - policy.jitter * min(max(rand, 0.0), 1.0))


def next_attempt(
    now: float,
    attempts: int,
    first_failure: float,
    policy: RetryPolicy,
    rand: float,
    retry_after: Optional[float] = None,
) -> Optional[float]:
    """When to try again after ``attempts`` failures, or None to give up.

    Gives up only once transient failures have lasted ``policy.retry_for``;
    a service's Retry-After is honoured even beyond the cap.
    """
    if now - first_failure >= policy.retry_for:
        return None
    delay = backoff(attempts, policy, rand)
    if retry_after is not None and retry_after > delay:
        delay = retry_after
    return now + delay


# ---------------------------------------------------------------- records


@dataclass(frozen=True)
class ChannelState:
    """Where delivering one alert to one channel stands."""

    state: str = PENDING  # pending | delivered | dead
    attempts: int = 0
    first_attempt: Optional[float] = None
    next_attempt: float = 0.0
    last_error: Optional[str] = None
    answer: Optional[str] = None
    done_at: Optional[float] = None

    @property
    def pending(self) -> bool:
        return self.state == PENDING

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> ChannelState:
        if not isinstance(data, dict):
            raise SpoolFormatError("a channel state is not an object")
        missing = [f.name for f in fields(cls) if f.name not in data]
        if missing:
            raise SpoolFormatError(f"channel state misses {', '.join(missing)}")
        state = cls(**{f.name: data[f.name] for f in fields(cls)})
        expect(state.state in (PENDING, DELIVERED, DEAD), f"unknown delivery state {state.state!r}")
        expect(is_int(state.attempts) and state.attempts >= 0, "attempts must be a count")
        expect(is_number(state.next_attempt), "next_attempt must be a number")
        for name in ("first_attempt", "done_at"):
            expect(getattr(state, name) is None or is_number(getattr(state, name)),
                    f"{name} must be a number or null")
        for name in ("last_error", "answer"):
            expect(getattr(state, name) is None or isinstance(getattr(state, name), str),
                    f"{name} must be a string or null")
        return state


@dataclass(frozen=True)
class OutboxRecord:
    """One alert, its channels and each channel's delivery state (one file)."""

    seq: int
    alert: Alert
    channels: dict[str, ChannelState]

    @property
    def open(self) -> bool:
        return any(state.pending for state in self.channels.values())

    def with_channel(self, name: str, state: ChannelState) -> OutboxRecord:
        return replace(self, channels={**self.channels, name: state})

    def to_dict(self) -> dict[str, Any]:
        return {"v": FORMAT_VERSION, "seq": self.seq, "alert": self.alert.to_dict(),
                "channels": {name: state.to_dict() for name, state in self.channels.items()}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OutboxRecord:
        expect(data.get("v") == FORMAT_VERSION, f"unknown outbox format version {data.get('v')!r}")
        for key in ("seq", "alert", "channels"):
            expect(key in data, f"missing field {key!r}")
        expect(is_int(data["seq"]) and data["seq"] > 0, "seq must be a positive integer")
        expect(isinstance(data["channels"], dict), "channels must be an object")
        channels = {str(name): ChannelState.from_dict(state) for name, state in data["channels"].items()}
        return cls(seq=data["seq"], alert=_alert(data["alert"]), channels=channels)


@dataclass(frozen=True)
class DeadLetterRecord:
    """A delivery that will never succeed: the alert, its channel and why (one file)."""

    alert: Alert
    channel: str
    reason: str
    attempts: int
    first_attempt: Optional[float]
    dead_at: float

    def to_dict(self) -> dict[str, Any]:
        return {"v": FORMAT_VERSION, "alert": self.alert.to_dict(), "channel": self.channel,
                "reason": self.reason, "attempts": self.attempts, "first_attempt": self.first_attempt,
                "dead_at": self.dead_at}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeadLetterRecord:
        expect(data.get("v") == FORMAT_VERSION, f"unknown outbox format version {data.get('v')!r}")
        for key in ("alert", "channel", "reason", "dead_at"):
            expect(key in data, f"missing field {key!r}")
        expect(is_number(data["dead_at"]), "dead_at must be a number")
        attempts = data.get("attempts", 0)
        expect(is_int(attempts), "attempts must be an integer")
        return cls(alert=_alert(data["alert"]), channel=str(data["channel"]), reason=str(data["reason"]),
                   attempts=attempts, first_attempt=data.get("first_attempt"), dead_at=data["dead_at"])


def _alert(data: Any) -> Alert:
    if not isinstance(data, dict):
        raise SpoolFormatError("alert is not an object")
    try:
        alert = Alert.from_dict(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise SpoolFormatError(f"alert unreadable: {exc!r}") from None
    expect(isinstance(alert.alert_id, str) and bool(_SAFE_NAME.match(alert.alert_id)), "bad alert id")
    return alert


def read_record(path: Path) -> OutboxRecord:
    """One alert record; FileNotFoundError if absent, SpoolFormatError if damaged."""
    return OutboxRecord.from_dict(read_json(path, MAX_RECORD_BYTES)[0])


class ResendRefused(ValueError):
    """``Outbox.resend`` cannot resend that alert; the message says why, in one line."""


def is_alert_id(text: str) -> bool:
    return bool(_SAFE_NAME.match(text))


def check_resendable(records: list[OutboxRecord], alert_id: str) -> list[str]:
    """The channels ``alert_id`` is dead-lettered for among ``records``, or ``ResendRefused``."""
    for record in records:
        if record.alert.alert_id == alert_id:
            return _dead_channels(record)
    raise ResendRefused(f"no alert {alert_id!r} in the outbox (see sentinel history)")


def _dead_channels(record: OutboxRecord) -> list[str]:
    dead = [name for name, state in record.channels.items() if state.state == DEAD]
    if not dead:
        shown = ", ".join(f"{state.state} for {name}" for name, state in record.channels.items())
        raise ResendRefused(f"alert {record.alert.alert_id} has no dead letter to resend "
                            f"({shown or 'it had no channel'})")
    return dead


@dataclass(frozen=True)
class PendingDelivery:
    """One alert still to be delivered to one channel."""

    alert: Alert
    channel: str
    seq: int
    attempts: int
    first_attempt: Optional[float]
    next_attempt: float
    last_error: Optional[str]


@dataclass(frozen=True)
class DeadLetter:
    alert_id: str
    run_id: str
    channel: str
    reason: str
    attempts: int
    dead_at: float
    path: Path


@dataclass(frozen=True)
class _Outcome:
    """A channel's new state for one alert, decided but not yet on disk."""

    alert_id: str
    channel: str
    state: ChannelState
    dead_letter: Optional[DeadLetterRecord] = None


_Entry = tuple[int, int, str]  # (rank: 0 state alert / 1 message, seq, alert id): sorts in queue order
_FIRST_MESSAGE: _Entry = (1, 0, "")


class _ChannelQueue:
    """One channel's pending alerts, kept per user (each user's sorted) and,
    per run, the seqs of its pending messages, so that the sending order
    (``order``) is produced lazily: its first few entries cost about as much
    as the number of users, not the length of the queue (a user's thousands
    of queued alerts are not regrouped and sorted on every delivery step).
    Not thread-safe: the outbox's lock is held."""

    def __init__(self) -> None:
        self.users: dict[str, list[_Entry]] = {}  # user -> their entries, sorted
        self.message_seqs: dict[tuple[str, str], list[int]] = {}  # (user, run id) -> its messages' seqs
        self.runs: dict[str, tuple[str, str]] = {}  # alert id -> (user, run id)

    def __len__(self) -> int:
        return len(self.runs)

    def add(self, entry: _Entry, user: str, run_id: str) -> None:
        if entry[2] in self.runs:
            return
        bisect.insort(self.users.setdefault(user, []), entry)
        if entry[0] == 1:
            bisect.insort(self.message_seqs.setdefault((user, run_id), []), entry[1])
        self.runs[entry[2]] = (user, run_id)

    def remove(self, entry: _Entry) -> None:
        key = self.runs.pop(entry[2], None)
        if key is None:
            return
        user, _ = key
        entries = self.users[user]
        del entries[bisect.bisect_left(entries, entry)]
        if not entries:
            del self.users[user]
        if entry[0] == 1:
            seqs = self.message_seqs[key]
            del seqs[bisect.bisect_left(seqs, entry[1])]
            if not seqs:
                del self.message_seqs[key]

    def order(self, served: dict[str, int]) -> Iterator[_Entry]:
        """The queue in sending order: each user in turn (one user's thousand
        alerts, state alerts or messages, do not queue in front of another's,
        and a user's steady stream of state alerts cannot starve another's
        messages), the user whose alert was tried on the channel least
        recently first (one never tried before any other; users tried equally
        long ago in the order of their first entry), and within a user's turns
        ``_one_users_order``."""
        users = sorted(self.users, key=lambda user: (served.get(user, -1), self.users[user][0]))
        turns = [self._one_users_order(user) for user in users]
        while turns:
            left = []
            for turn in turns:
                entry = next(turn, None)
                if entry is not None:
                    yield entry
                    left.append(turn)
            turns = left

    def _one_users_order(self, user: str) -> Iterator[_Entry]:
        """One user's queue in sending order: state alerts first, oldest
        first, except that a run's state alert never overtakes that same
        run's earlier messages (it goes right after the last of them)."""
        entries = self.users[user]
        split = bisect.bisect_left(entries, _FIRST_MESSAGE)
        held: dict[str, deque[_Entry]] = {}
        for index in range(split):
            entry = entries[index]
            run_id = self.runs[entry[2]][1]
            seqs = self.message_seqs.get((user, run_id))
            if seqs and seqs[0] < entry[1]:
                held.setdefault(run_id, deque()).append(entry)
            else:
                yield entry
        for index in range(split, len(entries)):
            entry = entries[index]
            yield entry
            if not held:
                continue
            run_id = self.runs[entry[2]][1]
            waiting = held.get(run_id)
            if waiting:
                seqs = self.message_seqs[(user, run_id)]
                after = bisect.bisect_right(seqs, entry[1])
                following = seqs[after] if after < len(seqs) else None
                while waiting and (following is None or waiting[0][1] < following):
                    yield waiting.popleft()
                if not waiting:
                    del held[run_id]


class Outbox:
    """The durable queue between the daemon's decisions and the channels.

    Thread-safe; one process owns a given root (the daemon holds the state
    directory's lock).

    Memory follows the disk, never leads it: a delivery outcome (delivered,
    failed, dead-lettered) changes the in-memory record only once its file
    is written. An outcome whose write fails (disk full, read-only) is held
    and its channel is blocked (``blocked``) until ``flush`` writes it: the
    alert is not sent again meanwhile, and not forgotten.
    """

    def __init__(self, root: Path, policy: Optional[RetryPolicy] = None) -> None:
        self.root = Path(root)
        self.policy = policy or RetryPolicy()
        self._lock = threading.RLock()
        self._paths: dict[str, Path] = {}  # every known alert id -> its record
        self._open: dict[str, OutboxRecord] = {}  # records with a pending channel
        self._queues: dict[str, _ChannelQueue] = {}  # channel -> its pending alerts
        self._open_messages: dict[str, int] = {}  # user -> their messages not yet delivered everywhere
        # channel -> user -> when (a count of attempts) that user's alert was last tried there:
        # the user tried least recently goes first (``_ChannelQueue.order``)
        self._served: dict[str, dict[str, int]] = {}
        self._attempts = 0
        self._record_locks = [threading.Lock() for _ in range(_RECORD_LOCKS)]
        self._unsaved: dict[str, list[_Outcome]] = {}  # channel -> outcomes whose write failed, in order
        self._unwritten: dict[str, OutboxRecord] = {}  # admitted, record not yet written (``admit``)
        self._unwritable: set[str] = set()  # of those, the ones whose write failed (logged once)
        self._rewrite_at = 0.0  # time.monotonic() when those are tried again
        self._rewrite_wait: Optional[float] = None  # the last wait (``save_backoff``); None: none failed
        self._next_seq = 1
        # Written with sync=False and not yet fsynced: files, then the directories
        # whose entries must survive too (a record's run directory, a new one's parent).
        self._unsynced_files: list[Path] = []
        self._unsynced_dirs: dict[Path, None] = {}
        self._sync_lock = threading.Lock()  # one sync at a time: a return means all earlier ones are done
        make_private_dir(self.root)
        make_private_dir(self.root / RUNS_DIR)
        make_private_dir(self.root / DEAD_DIR)
        self._load()

    # ------------------------------------------------------------ loading

    def _load(self) -> None:
        """Rebuild the in-memory index from disk (start-up after any stop)."""
        runs = self.root / RUNS_DIR
        for run_dir in sorted(_listdir(runs)):
            path = runs / run_dir
            for name in sorted(_listdir(path)):
                if name.startswith("."):
                    _remove_stray(path / name)  # a temporary file from an interrupted write
                    continue
                match = _RECORD_NAME.match(name)
                if not match:
                    continue
                self._next_seq = max(self._next_seq, int(match.group(1)) + 1)
                try:
                    record = read_record(path / name)
                except FileNotFoundError:
                    continue
                except SpoolFormatError as exc:
                    self._quarantine(path / name, exc)
                    continue
                self._paths[record.alert.alert_id] = path / name
                self._next_seq = max(self._next_seq, record.seq + 1)
                if record.open:
                    self._open[record.alert.alert_id] = record
        for _, record in sorted(self._open.items(), key=lambda item: item[1].seq):
            self._opened(record, [name for name, state in record.channels.items() if state.pending])

    def _opened(self, record: OutboxRecord, channels: list[str]) -> None:
        """Index an open record: in its channels' queues, and in its user's message count."""
        self._queue(record, channels)
        if record.alert.kind is AlertKind.MESSAGE:
            user = record.alert.user
            self._open_messages[user] = self._open_messages.get(user, 0) + 1

    def _queue(self, record: OutboxRecord, channels: list[str]) -> None:
        """Put ``record`` in ``channels``' queues. Lock held."""
        entry = (_rank(record.alert), record.seq, record.alert.alert_id)
        for name in channels:
            queue = self._queues.get(name)
            if queue is None:
                queue = self._queues[name] = _ChannelQueue()
            queue.add(entry, record.alert.user, record.alert.run_id)

    def _unqueue(self, record: OutboxRecord, channels: Iterable[str]) -> None:
        """Take ``record`` out of ``channels``' queues. Lock held."""
        entry = (_rank(record.alert), record.seq, record.alert.alert_id)
        for name in channels:
            queue = self._queues.get(name)
            if queue is not None:
                queue.remove(entry)

    def _closed(self, record: OutboxRecord) -> None:
        """``record`` left the open ones (delivered or dead everywhere, or forgotten)."""
        if record.alert.kind is AlertKind.MESSAGE:
            user = record.alert.user
            left = self._open_messages.get(user, 0) - 1
            if left > 0:
                self._open_messages[user] = left
            else:
                self._open_messages.pop(user, None)

    def _quarantine(self, path: Path, reason: Exception) -> None:
        """Move a damaged record aside (once, logged) so it blocks no channel and no start."""
        target_dir = self.root / QUARANTINE_DIR
        target = target_dir / f"{path.parent.name}.{path.name}"
        try:
            make_private_dir(target_dir)
            os.rename(path, target)
        except OSError as exc:
            log.error("outbox record %s is unreadable and skipped (%s); cannot move it aside: %s",
                      path, reason, exc.strerror)
            return
        log.error("outbox record %s is unreadable (%s): moved to %s", path, reason, target)

    # ------------------------------------------------------------ the contract

    def enqueue(self, alert: Alert, channels: list[str], *, sync: bool = True) -> bool:
        """Store ``alert`` for ``channels`` durably; False if its id is known.

        Returns only once the record is fsynced; with ``sync=False`` once it
        is renamed into place, and the caller must call ``sync()`` promptly
        (see the module docstring for what holds in between). ``channels``
        may be empty: the alert is then only journalled. Raises OSError
        (nothing changed) if the record cannot be written.
        """
        with self._lock:
            new = self._new_record(alert, channels)
            if new is None:
                return False
            record, path, new_dir = new
            write_json(path, record.to_dict(), durable=sync)
            if sync:
                if new_dir or path.parent.parent in self._unsynced_dirs:
                    fsync_dir(path.parent.parent)  # the new directory's entry must survive too
            else:
                self._written_unsynced(path, new_dir)
            self._index(record, path)
            return True

    def admit(self, alert: Alert, channels: list[str]) -> bool:
        """``enqueue`` in memory only: deliverable at once, its record written
        by ``write_admitted``. False if its id is known. Raises OSError
        (nothing changed) only if the run's record directory cannot be made.

        For the daemon's state alerts, whose first request goes out before the
        record is written (the write then runs while the answer is on its
        way). Until it is written, ``unwritten(run_id)`` is true, and the
        daemon does not archive the run: a daemon killed in between has sent
        the alert, or not, but left the run in the spool, so its restart
        decides the run again and sends the alert (again: the one duplicate
        a kill can cause)."""
        with self._lock:
            new = self._new_record(alert, channels)
            if new is None:
                return False
            record, path, new_dir = new
            if new_dir:
                self._unsynced_dirs[path.parent.parent] = None  # its entry, fsynced by the next sync()
            self._unwritten[alert.alert_id] = record
            self._index(record, path)
            return True

    def write_admitted(self, now: Optional[float] = None) -> bool:
        """Write the records ``admit`` kept in memory (renamed into place,
        fsynced by the next ``sync()``); True once none is left. One that
        cannot be written (a full disk) is logged once and tried again after
        ``SAVE_RETRY``, doubling up to ``SAVE_RETRY_CAP`` (``now``: a
        ``time.monotonic()``); its delivery goes on meanwhile. A failed write
        ends the call: the disk that refused one would refuse the rest."""
        now = time.monotonic() if now is None else now
        with self._lock:
            retry = now >= self._rewrite_at
            waiting = [alert_id for alert_id in self._unwritten if retry or alert_id not in self._unwritable]
        for alert_id in waiting:
            # The record's lock: a delivery outcome written meanwhile wrote the whole record.
            with self._record_locks[_stripe(alert_id)]:
                with self._lock:
                    admitted = self._unwritten.get(alert_id)
                    path = self._paths.get(alert_id)
                    if admitted is None or path is None:
                        continue
                    record = self._open.get(alert_id, admitted)
                try:
                    write_json(path, record.to_dict())
                except OSError as exc:
                    with self._lock:
                        if retry:
                            self._rewrite_wait = save_backoff(self._rewrite_wait)
                            self._rewrite_at = now + self._rewrite_wait
                        first = alert_id not in self._unwritable
                        self._unwritable.add(alert_id)
                    if first:
                        log.error("cannot write the record of alert %s (%s): its delivery goes on, "
                                  "and the record is written as soon as it can be", alert_id, exc.strerror)
                    break
                with self._lock:
                    self._unwritten.pop(alert_id, None)
                    self._unwritable.discard(alert_id)
                    self._rewrite_wait = None
                    self._written_unsynced(path, False)
        with self._lock:
            return not self._unwritten

    def unwritten(self, run_id: str) -> bool:
        """True while a record of ``run_id`` is admitted but not yet written."""
        with self._lock:
            return any(record.alert.run_id == run_id for record in self._unwritten.values())

    def _new_record(self, alert: Alert, channels: list[str]) -> Optional[tuple[OutboxRecord, Path, bool]]:
        """The next record for ``alert``, its path and whether the run's
        directory had to be made; None if the alert id is known already.
        ValueError for an id that is no safe file name. Lock held."""
        if not _SAFE_NAME.match(alert.alert_id or ""):
            raise ValueError(f"alert id {alert.alert_id!r} is not a safe file name")
        if alert.alert_id in self._paths:
            return None
        seq = self._next_seq
        self._next_seq += 1
        record = OutboxRecord(seq=seq, alert=alert,
                              channels={name: ChannelState() for name in dict.fromkeys(channels)})
        run_dir = self.root / RUNS_DIR / _run_key(alert.run_id)
        new_dir = not run_dir.is_dir()
        if new_dir:
            make_private_dir(run_dir)
        return record, run_dir / f"{seq:012d}.{alert.alert_id}.json", new_dir

    def _written_unsynced(self, path: Path, new_dir: bool) -> None:
        """``path`` was renamed into place without an fsync (in a new run
        directory: ``new_dir``): ``sync()`` fsyncs it. Lock held."""
        self._unsynced_files.append(path)
        self._unsynced_dirs[path.parent] = None
        if new_dir:
            self._unsynced_dirs[path.parent.parent] = None

    def _index(self, record: OutboxRecord, path: Path) -> None:
        """Know ``record`` (at ``path``), and queue it if it has channels. Lock held."""
        alert_id = record.alert.alert_id
        self._paths[alert_id] = path
        if record.channels:
            self._open[alert_id] = record
            self._opened(record, list(record.channels))

    def prepare_run(self, run_id: str) -> None:
        """Make ``run_id``'s record directory ahead of its first alert (the
        daemon does it at admission): the alert that races the phone, a run's
        ending, then pays for no ``mkdir``. The new entry is fsynced by the
        next ``sync()``, or by a durable ``enqueue`` into it."""
        run_dir = self.root / RUNS_DIR / _run_key(run_id)
        try:
            # One syscall (a start-up admits thousands of runs): the outbox is the daemon's own,
            # private from its root down. Something else in the way is found by the first alert.
            os.mkdir(run_dir, 0o700)
        except FileExistsError:
            return
        with self._lock:
            self._unsynced_dirs[run_dir.parent] = None

    def sync(self) -> None:
        """fsync every record written with ``sync=False`` and its directories.

        Returns once every record enqueued before the call is on disk, also
        those a concurrent ``sync()`` (a ``SyncThread``) took over. Does not
        hold the outbox lock while it waits for the disk, so enqueueing and
        delivery go on meanwhile. A record replaced since (by a delivery's
        durable update) is fsynced again harmlessly; one removed since
        (``forget_run``) is skipped.
        """
        with self._sync_lock:
            with self._lock:
                files, self._unsynced_files = self._unsynced_files, []
                dirs, self._unsynced_dirs = list(self._unsynced_dirs), {}
            for path in files:
                _fsync_path(path, os.O_RDONLY | os.O_NOFOLLOW)
            for path in dirs:
                _fsync_path(path, os.O_RDONLY | os.O_DIRECTORY)

    def known(self, alert_id: str) -> bool:
        with self._lock:
            return alert_id in self._paths

    def journal(self, run_id: str) -> list[Alert]:
        """Every alert ever enqueued for ``run_id``, in enqueue order (also those
        admitted and not yet written)."""
        with self._lock:
            records = read_records(self.root, run_id)
            written = {record.alert.alert_id for record in records}
            records += [record for alert_id, record in self._unwritten.items()
                        if record.alert.run_id == run_id and alert_id not in written]
            return [record.alert for record in sorted(records, key=lambda record: record.seq)]

    def forget_run(self, run_id: str) -> None:
        """Drop everything about ``run_id`` (its archived run was pruned)."""
        run_dir = self.root / RUNS_DIR / _run_key(run_id)
        with self._lock:
            gone = {a for a, p in self._paths.items() if p.parent == run_dir}
        # The records' own locks (in order), so no delivery outcome is being
        # written into the directory while it goes; not the outbox's lock.
        locks = [self._record_locks[i] for i in sorted({_stripe(a) for a in gone})]
        with contextlib.ExitStack() as held:
            for lock in locks:
                held.enter_context(lock)
            with self._lock:
                for alert_id in gone:
                    del self._paths[alert_id]
                    self._unwritten.pop(alert_id, None)
                    self._unwritable.discard(alert_id)
                    record = self._open.pop(alert_id, None)
                    if record is not None:
                        self._unqueue(record, list(self._queues))
                        self._closed(record)
                for name, outcomes in self._unsaved.items():
                    self._unsaved[name] = [o for o in outcomes if o.alert_id not in gone]
            shutil.rmtree(run_dir, ignore_errors=True)

    def open_messages(self, user: str) -> int:
        """``user``'s messages (``AlertKind.MESSAGE``) still pending for some channel."""
        with self._lock:
            return self._open_messages.get(user, 0)

    def pending_count(self) -> int:
        """(alert, channel) deliveries not yet done."""
        with self._lock:
            return sum(len(queue) for queue in self._queues.values())

    def dead_letters(self) -> list[DeadLetter]:
        return read_dead_letters(self.root)

    def prune_dead_letters(self, now: float, retention: float) -> int:
        """Remove dead letters older than ``retention``; how many went."""
        removed = 0
        for letter in self.dead_letters():
            if now - letter.dead_at > retention:
                with contextlib.suppress(OSError):
                    letter.path.unlink()
                    removed += 1
        return removed

    def run_of(self, alert_id: str) -> Optional[str]:
        """The run id ``alert_id`` is about (None: no such alert)."""
        with self._lock:
            path = self._paths.get(alert_id)
            admitted = self._unwritten.get(alert_id)
        if admitted is not None:
            return admitted.alert.run_id
        return None if path is None else read_record(path).alert.run_id

    def resend(self, alert_id: str) -> list[str]:
        """Give ``alert_id``'s dead-lettered channels a fresh attempt budget: pending
        again, their dead letters removed; the channels, or ``ResendRefused``."""
        path = self._paths.get(alert_id)
        if path is None:
            raise ResendRefused(f"no alert {alert_id!r} in the outbox (see sentinel history)")
        with self._record_locks[_stripe(alert_id)], self._lock:  # the record's lock: no outcome in flight
            record = self._open.get(alert_id) or self._unwritten.get(alert_id) or read_record(path)
            dead = _dead_channels(record)  # memory follows the disk: an unwritten outcome is not dead yet
            updated = record
            for name in dead:
                updated = updated.with_channel(name, ChannelState())
            write_json(path, updated.to_dict(), durable=True)
            self._unwritten.pop(alert_id, None)
            was_open = alert_id in self._open
            self._open[alert_id] = updated
            if was_open:
                self._queue(updated, dead)
            else:
                self._opened(updated, dead)
        for letter in read_dead_letters(self.root):
            if letter.alert_id == alert_id and letter.channel in dead:
                with contextlib.suppress(OSError):
                    letter.path.unlink()
        log.info("alert %s is pending again for %s (resent)", alert_id, ", ".join(dead))
        return dead

    # ------------------------------------------------------------ for delivery

    def channels_pending(self) -> list[str]:
        with self._lock:
            return [name for name, queue in self._queues.items() if queue]

    def pending(self, channel: str, limit: Optional[int] = None) -> list[PendingDelivery]:
        """``channel``'s undelivered alerts, oldest first (at most ``limit``)."""
        with self._lock:
            out: list[PendingDelivery] = []
            queue = self._queues.get(channel)
            if queue is None or limit == 0:
                return out
            for _, seq, alert_id in queue.order(self._served.get(channel, {})):
                record = self._open[alert_id]
                state = record.channels[channel]
                out.append(PendingDelivery(
                    alert=record.alert, channel=channel, seq=seq, attempts=state.attempts,
                    first_attempt=state.first_attempt, next_attempt=state.next_attempt,
                    last_error=state.last_error,
                ))
                if limit is not None and len(out) >= limit:
                    break
            return out

    def blocked(self, channel: str) -> bool:
        """True while an outcome for ``channel`` waits to be written (see ``flush``)."""
        with self._lock:
            return bool(self._unsaved.get(channel))

    def flush(self, channel: str) -> bool:
        """Write ``channel``'s held outcomes, in order; True once none is left.
        One caller per channel at a time (its delivery worker)."""
        while True:
            with self._lock:
                held = self._unsaved.get(channel)
                if not held:
                    self._unsaved.pop(channel, None)
                    return True
                outcome = held[0]
            if not self._write(outcome):  # the disk, without the outbox's lock
                return False
            with self._lock:
                held = self._unsaved.get(channel)
                if held and held[0] is outcome:
                    held.pop(0)

    def _tried(self, alert_id: str, channel: str) -> None:
        """Note whose alert was just tried on ``channel`` (the round-robin's turn). Lock held."""
        record = self._open.get(alert_id)
        if record is not None:
            self._attempts += 1
            self._served.setdefault(channel, {})[record.alert.user] = self._attempts

    def mark_delivered(self, alert_id: str, channel: str, answer: str, now: float) -> None:
        with self._lock:
            state = self._state(alert_id, channel)
            if state is None:
                return
            self._tried(alert_id, channel)
            self._decide(_Outcome(alert_id, channel, replace(
                state, state=DELIVERED, attempts=state.attempts + 1, answer=answer[:500], done_at=now,
                first_attempt=state.first_attempt if state.first_attempt is not None else now)))
        self.flush(channel)

    def mark_failed(
        self,
        alert_id: str,
        channel: str,
        reason: str,
        now: float,
        *,
        permanent: bool,
        retry_after: Optional[float] = None,
        rand: float = 0.5,
    ) -> Optional[float]:
        """Record a failed attempt. Returns when to try again, or None when the
        delivery was dead-lettered (permanent, or transient for too long)."""
        with self._lock:
            state = self._state(alert_id, channel)
            if state is None:
                return None
            self._tried(alert_id, channel)
            when = self._decide_failure(alert_id, channel, state, reason, now, permanent, retry_after, rand)
        self.flush(channel)
        return when

    def _decide_failure(self, alert_id: str, channel: str, state: ChannelState, reason: str, now: float,
                        permanent: bool, retry_after: Optional[float], rand: float) -> Optional[float]:
        """A failed attempt's outcome, held for ``flush``; when to try again (None: dead)."""
        attempts = state.attempts + 1
        first = state.first_attempt if state.first_attempt is not None else now
        when = None if permanent else next_attempt(now, attempts, first, self.policy, rand, retry_after)
        if when is not None:
            self._decide(_Outcome(alert_id, channel, replace(
                state, attempts=attempts, first_attempt=first, last_error=reason[:2000],
                next_attempt=when)))
            return when
        if not permanent:
            reason = (f"gave up after {attempts} attempts over {(now - first) / 3600:.1f} h "
                      f"of transient failures; last: {reason}")
        record = self._open[alert_id]
        letter = DeadLetterRecord(alert=record.alert, channel=channel, reason=reason, attempts=attempts,
                                  first_attempt=first, dead_at=now)
        self._decide(_Outcome(alert_id, channel, replace(
            state, state=DEAD, attempts=attempts, first_attempt=first, done_at=now,
            last_error=reason[:2000]), letter))
        return None

    def _state(self, alert_id: str, channel: str) -> Optional[ChannelState]:
        record = self._open.get(alert_id)
        if record is None or channel not in record.channels:
            return None
        if any(o.alert_id == alert_id for o in self._unsaved.get(channel, [])):
            return None  # its outcome is decided already, only not written yet
        state = record.channels[channel]
        return state if state.pending else None

    def _decide(self, outcome: _Outcome) -> None:
        """Hold ``outcome`` (behind any held before) for ``flush``, which the caller runs
        once it let go of the lock."""
        self._unsaved.setdefault(outcome.channel, []).append(outcome)

    def _write(self, outcome: _Outcome) -> bool:
        """Put ``outcome`` on disk, then in memory; False (nothing changed) if the write failed.

        The fsyncs happen under the record's own lock (two channels' outcomes
        for one alert are written one after the other, each on the other's),
        not under the outbox's: other channels' workers and the daemon's
        enqueues go on meanwhile."""
        alert_id = outcome.alert_id
        with self._record_locks[_stripe(alert_id)]:
            with self._lock:
                record = self._open.get(alert_id)
                path = self._paths.get(alert_id)
            if record is None or path is None:
                return True  # forgotten meanwhile (its run was pruned): nothing left to record
            updated = record.with_channel(outcome.channel, outcome.state)
            letter = outcome.dead_letter
            letter_path = None
            try:
                if letter is not None:
                    channel_part = outcome.channel if _SAFE_NAME.match(outcome.channel) else "channel"
                    letter_path = (self.root / DEAD_DIR
                                   / f"{record.seq:012d}.{alert_id}.{channel_part}.json")
                    write_json(letter_path, letter.to_dict(), durable=True)
                write_json(path, updated.to_dict(), durable=True)
            except OSError as exc:
                if not self.known(alert_id):
                    return True  # its run was pruned while we wrote: nothing left to record
                log.error("cannot record the delivery state of alert %s for channel %s (%s); "
                          "channel %s waits until it can", alert_id, outcome.channel, exc.strerror,
                          outcome.channel)
                return False
            if letter is not None:
                # Loud on purpose: an alert nobody will see is the worst outcome.
                log.error("alert %s for channel %s was NOT delivered and is dead-lettered (%s): %s",
                          alert_id, outcome.channel, letter_path, letter.reason)
            with self._lock:
                self._unwritten.pop(alert_id, None)  # an admitted record: written whole just now
                self._unwritable.discard(alert_id)
                if alert_id not in self._open:
                    return True  # forgotten while we wrote
                if not outcome.state.pending:
                    self._unqueue(record, [outcome.channel])
                if updated.open:
                    self._open[alert_id] = updated
                else:
                    del self._open[alert_id]
                    self._closed(updated)
            return True


class SyncThread:
    """Runs ``sync`` (an ``Outbox.sync``) on its own thread whenever poked.

    The daemon's loop enqueues with ``sync=False``, wakes delivery, then
    pokes this thread: the fsync then waits for the disk here, not in the
    loop, and several alerts enqueued meanwhile share one pass.
    """

    def __init__(self, sync: Callable[[], None]) -> None:
        self._sync = sync
        self._wanted = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="sentinel-outbox-sync", daemon=True)
        self._thread.start()

    def request(self) -> None:
        self._wanted.set()

    def _run(self) -> None:
        while True:
            self._wanted.wait()
            self._wanted.clear()
            if self._stopping:
                return
            try:
                self._sync()
            except Exception:  # the thread must outlive any one failure; the next poke retries
                log.exception("syncing the outbox failed")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread, then sync once more here: nothing is left unsynced."""
        self._stopping = True
        self._wanted.set()
        self._thread.join(timeout)
        self._sync()


def read_journal(root: Path, run_id: str) -> list[Alert]:
    """The alerts journalled for ``run_id`` under outbox ``root``, oldest first.

    Read-only (damaged records are skipped, not moved): ``sentinel status``
    calls it beside a running daemon, where opening an ``Outbox`` would tidy
    files that daemon is writing.
    """
    return [record.alert for record in read_records(root, run_id)]


def read_records(root: Path, run_id: Optional[str] = None) -> list[OutboxRecord]:
    """The records of ``run_id`` (None: of every run) with their delivery
    states, oldest first; read-only, like ``read_journal``."""
    runs = [_run_key(run_id)] if run_id is not None else _listdir(Path(root) / RUNS_DIR)
    records = []
    for key in runs:
        if not _SAFE_NAME.match(key) and key != NO_RUN:
            continue
        run_dir = Path(root) / RUNS_DIR / key
        for name in sorted(_listdir(run_dir)):
            if not _RECORD_NAME.match(name):
                continue
            with contextlib.suppress(OSError, SpoolFormatError):
                records.append(read_record(run_dir / name))
    return sorted(records, key=lambda record: record.seq)


def read_dead_letters(root: Path) -> list[DeadLetter]:
    """The dead letters under outbox ``root``, oldest first (read-only, damaged ones skipped)."""
    out = []
    dead = Path(root) / DEAD_DIR
    for name in sorted(_listdir(dead)):
        if name.startswith("."):
            continue
        try:
            letter = DeadLetterRecord.from_dict(read_json(dead / name, MAX_RECORD_BYTES)[0])
        except (OSError, SpoolFormatError):
            continue
        out.append(DeadLetter(alert_id=letter.alert.alert_id, run_id=letter.alert.run_id,
                              channel=letter.channel, reason=letter.reason, attempts=letter.attempts,
                              dead_at=letter.dead_at, path=dead / name))
    return out


def _stripe(alert_id: str) -> int:
    return hash(alert_id) % _RECORD_LOCKS


def _rank(alert: Alert) -> int:
    """Queue order: state alerts (and tests) before a run's messages."""
    return 1 if alert.kind is AlertKind.MESSAGE else 0


def _run_key(run_id: str) -> str:
    if not run_id:
        return NO_RUN
    if not _SAFE_NAME.match(run_id):
        raise ValueError(f"run id {run_id!r} is not a safe file name")
    return run_id


def _fsync_path(path: Path, flags: int) -> None:
    try:
        fd = os.open(path, flags | os.O_CLOEXEC)
    except FileNotFoundError:
        return  # forgotten meanwhile: nothing left to make durable
    except OSError as exc:
        log.error("cannot open %s to fsync it (%s): its alert is queued but may not survive a power cut",
                  path, exc.strerror)
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        log.error("fsync of %s failed (%s): its alert is queued but may not survive a power cut",
                  path, exc.strerror)
    finally:
        os.close(fd)


def _listdir(path: Path) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _remove_stray(path: Path) -> None:
    if path.name.endswith(".tmp"):
        with contextlib.suppress(OSError):
            path.unlink()
