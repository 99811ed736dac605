"""A stalled job's stacks, every local rank's, grouped: name the odd rank out.

On a job stall the daemon asks every local rank of the job for its stacks at
once, then waits once for all of them, without blocking its loop:

* a rank with the recorder (its run record says it armed
  ``evidence.STACK_SIGNAL``) gets the cooperative signal, and its dump is read
  from its run directory ``STACK_WAIT`` seconds later (``sentinel.daemon.stacks``);
* any other rank (a launcher's worker without ``sentinel.watch``) is dumped
  by ``py-spy`` (``sentinel.daemon.pyspy``), each on a worker thread with a
  timeout.

The main threads are then grouped by their stack: the sequence of files and
function names, with the line numbers of every frame but the innermost (a
rank blocked a few lines further into the same wait is the same wait). The
biggest group is where the job waits; every other group is an odd rank out:

    ranks 0, 1, 3 wait in all_reduce (distributed_c10d.py:2806); rank 2 is in straggle() (train.py:17)

``poll`` is called by the stall check until it returns the alert's fields
(``where``, ``stacks``, or ``evidence_missing`` saying why); ``None`` means
"come back in ``STACK_WAIT``".
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from sentinel.daemon import pyspy
from sentinel.daemon.run_reader import RunReader, TrackedRun
from sentinel.daemon.stacks import STACK_WAIT, send_stack_request
from sentinel.formats import evidence
from sentinel.host.procid import ProcessIdentity

log = logging.getLogger("sentinel.daemon")

MAX_GROUPS_NAMED = 4  # an alert's first line names at most this many groups


@dataclass
class Rank:
    """One local rank to dump: its recorded run, if any, else its process."""

    rank: Optional[int]
    ident: ProcessIdentity
    run: Optional[TrackedRun] = None


# One process's answer: (whose, its dump, why there is none).
Answer = tuple[Rank, Optional[evidence.Dump], str]


@dataclass
class _Asked:
    rank: Rank
    offset: int = 0  # stacks.txt size before the signal (cooperative)
    by_pyspy: bool = False
    result: Optional[tuple[Optional[evidence.Dump], str]] = None  # (dump, why not): set when known


@dataclass
class _Gather:
    started: float
    asked: list[_Asked] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)  # what ``also`` said (a Flight Recorder summary)


class JobStacks:
    """Stack gathers in flight, one per job (keyed by the run that speaks for it)."""

    def __init__(self, reader: RunReader, summary: Optional[Callable[[list[Answer]], dict[str, Any]]] = None,
                 ) -> None:
        self.reader = reader
        self.summary = summary or summarise  # the answers in the alert's words
        self.pending: dict[str, _Gather] = {}

    def poll(self, key: str, ranks: list[Rank], now: float,
             also: Optional[Callable[[], str]] = None) -> Optional[dict[str, Any]]:
        """The alert's fields once every rank answered (or could not); None
        while answers are on their way: call again after ``STACK_WAIT``.
        ``also`` runs on a worker thread beside the dumps; what it says is
        appended to ``where`` (it must end by itself within ``pyspy.TIMEOUT``)."""
        gather = self.pending.get(key)
        if gather is None:
            gather = self.pending[key] = self._start(ranks, now)
            if also is not None:
                thread = threading.Thread(target=_run_also, args=(also, gather.extra), daemon=True,
                                          name="sentinel-job-evidence")
                thread.start()
                gather.threads.append(thread)
            if self._waiting(gather, now):
                return None
        elif self._waiting(gather, now):
            return None
        del self.pending[key]
        for asked in gather.asked:
            if asked.result is None:  # a cooperative rank: its dump is due by now
                asked.result = self._read(asked)
        facts = self.summary([(a.rank, *(a.result or (None, "no answer"))) for a in gather.asked])
        said = [text for text in list(gather.extra) if text]
        if said:
            where = "; ".join([facts["where"], *said]) if facts.get("where") else "; ".join(said)
            facts["where"] = where[:evidence.MAX_FRAME_CHARS * 4]
            facts["stacks"] = _cap("\n\n".join([*said, facts.get("stacks", "")]).strip())
        return facts

    def forget(self, key: str) -> None:
        """Progress came back: drop the gather (its py-spy threads end by their timeout)."""
        self.pending.pop(key, None)

    def _start(self, ranks: list[Rank], now: float) -> _Gather:
        gather = _Gather(started=now)
        for rank in ranks:
            asked = _Asked(rank)
            gather.asked.append(asked)
            run = rank.run
            if run is not None and run.record.stack_signal == evidence.STACK_SIGNAL_NAME:
                offset, why = self.reader.dump_size(run, evidence.STACKS_FILE, evidence.MAX_STACKS_FILE_BYTES)
                why = why or send_stack_request(run)
                asked.offset = offset
                if why:
                    asked.result = (None, why)
                continue
            asked.by_pyspy = True
            thread = threading.Thread(target=_dump_by_pyspy, args=(asked,), daemon=True,
                                      name=f"sentinel-py-spy-{rank.ident.pid}")
            thread.start()
            gather.threads.append(thread)
        return gather

    def _waiting(self, gather: _Gather, now: float) -> bool:
        cooperative = any(a.result is None and not a.by_pyspy for a in gather.asked)
        if cooperative and now - gather.started < STACK_WAIT:
            return True
        # py-spy threads end by their own timeout; the margin covers a slow start.
        return any(t.is_alive() for t in gather.threads) and now - gather.started < pyspy.TIMEOUT + 1.0

    def _read(self, asked: _Asked) -> tuple[Optional[evidence.Dump], str]:
        run = asked.rank.run
        assert run is not None
        raw, why = self.reader.read_dump(run, evidence.STACKS_FILE, asked.offset, evidence.MAX_DUMP_BYTES)
        if not raw:
            return None, why or f"no stacks within {STACK_WAIT:g} s of the request"
        return evidence.parse(raw), ""


def _run_also(also: Callable[[], str], into: list[str]) -> None:
    try:
        into.append(also())
    except Exception:  # evidence is best effort: the stall alert goes out without it
        log.exception("job evidence failed")


def _dump_by_pyspy(asked: _Asked) -> None:
    dump, why = pyspy.dump(asked.rank.ident)
    asked.result = (dump, why)  # one assignment: the loop sees all of it or nothing


def signature(thread: evidence.ThreadStack) -> tuple[tuple[str, str, int], ...]:
    """What makes two ranks' main threads the same wait: file and function of
    every frame, line numbers but the innermost's. Files by base name and
    functions by their last name, so py-spy's ``Thread.run (threading.py)``
    and faulthandler's ``run (/usr/lib/python3.11/threading.py)`` agree."""
    return tuple((f.path.rsplit("/", 1)[-1], f.function.rsplit(".", 1)[-1], 0 if i == 0 else f.line)
                 for i, f in enumerate(thread.frames))


def summarise(answers: list[Answer]) -> dict[str, Any]:
    """The alert's ``where`` (the groups, the biggest first) and ``stacks``
    (each group's main thread once), or ``evidence_missing`` if no rank answered."""
    groups: dict[tuple[tuple[str, str, int], ...], list[tuple[Rank, evidence.ThreadStack]]] = {}
    missing: list[tuple[Rank, str]] = []
    for rank, dump, why in answers:
        main = dump.main if dump is not None else None
        if main is None or not main.frames:
            missing.append((rank, why or "no stack in the dump"))
            continue
        groups.setdefault(signature(main), []).append((rank, main))
    if not groups:
        reasons = sorted({why for _, why in missing})
        return {"evidence_missing": "; ".join(reasons) or "no live rank to ask"}
    ordered = sorted(groups.values(), key=lambda members: (-len(members), _order(members[0][0])))
    phrases, blocks = [], []
    for index, members in enumerate(ordered):
        members.sort(key=lambda pair: _order(pair[0]))
        label = _label([rank for rank, _ in members])
        several = len(members) > 1
        where = members[0][1].where
        frame = where.short if where is not None else "?"
        if index == 0:
            every = "all " if several and len(ordered) == 1 and not missing else ""
            phrases.append(f"{every}{label} {'wait' if several else 'waits'} in {frame}")
        elif index < MAX_GROUPS_NAMED:
            function, _, place = frame.partition(" ")
            phrases.append(f"{label} {'are' if several else 'is'} in {function}() {place}")
        blocks.append(f"{label}, main thread (most recent call first):\n" + "\n".join(
            f'  File "{f.path}", line {f.line} in {f.function}' for f in members[0][1].frames))
    if len(ordered) > MAX_GROUPS_NAMED:
        phrases.append(f"{len(ordered) - MAX_GROUPS_NAMED} more groups")
    facts: dict[str, Any] = {}
    if missing:
        by_reason: dict[str, list[Rank]] = {}
        for rank, why in missing:
            by_reason.setdefault(why, []).append(rank)
        said = "; ".join(f"{_label(sorted(ranks, key=_order))}: {why}" for why, ranks in by_reason.items())
        phrases.append(f"stacks not available for {said}")
        blocks.append(f"stacks not available for {said}")
        facts["evidence_missing"] = said
    facts.update(where="; ".join(phrases)[:evidence.MAX_FRAME_CHARS * 4], stacks=_cap("\n\n".join(blocks)))
    return facts


def _label(ranks: list[Rank]) -> str:
    """'rank 2', 'ranks 0, 1, 3', 'pid 4242' (a process whose rank is unknown)."""
    numbered = [str(r.rank) for r in ranks if r.rank is not None]
    unnumbered = [str(r.ident.pid) for r in ranks if r.rank is None]
    parts = [f"{word}{'s' if len(names) > 1 else ''} {', '.join(names)}"
             for word, names in (("rank", numbered), ("pid", unnumbered)) if names]
    return ", ".join(parts)


def _order(rank: Rank) -> tuple[bool, int]:
    return (rank.rank is None, rank.rank if rank.rank is not None else rank.ident.pid)


def _cap(text: str, limit: int = evidence.MAX_STACKS_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
