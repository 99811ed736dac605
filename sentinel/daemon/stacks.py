"""The daemon's side of the evidence: a stalled run's stacks, a crashed run's frame.

On a stall the tracker asks ``StackDesk.request``: if the run's record says
its recorder armed ``evidence.STACK_SIGNAL``, the desk notes the size of
``stacks.txt``, sends the signal through a pidfd of the verified process,
and the tracker comes back ``STACK_WAIT`` seconds later (the loop is never
blocked waiting): ``collect`` reads what was appended since, as the
hostile-input rules of ``RunReader.read_dump`` allow, and turns it into the
alert's ``where`` and ``stacks``. When stacks cannot be had, ``collect``
says why (``evidence_missing``), and the alert says it.

On a fatal signal (SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL) ``crash_facts``
reads ``crash.txt``, which the recorder's ``faulthandler.enable`` wrote, and
names the frame that faulted.

Sending the signal to another user's process takes ``CAP_KILL``
(systemd/sentinel.service grants it); the signal is only ever this one, only
to a process whose start time matches the record, and only when that
record says the process registered for it (otherwise it would be fatal).
"""

from __future__ import annotations

import logging
import os
import signal
from dataclasses import dataclass
from typing import Any, Optional

from sentinel.daemon.run_reader import RunReader, TrackedRun
from sentinel.formats import evidence
from sentinel.host.procid import start_ticks

log = logging.getLogger("sentinel.daemon")

# The dump is written by a signal handler as soon as the kernel delivers the
# signal (a sleeping or blocked thread is interrupted at once); this is the
# bound on how much later the stall alert goes out, not a wait of the loop.
STACK_WAIT = 0.3
FATAL_SIGNALS = frozenset({"SIGSEGV", "SIGBUS", "SIGABRT", "SIGFPE", "SIGILL"})


@dataclass
class _Request:
    offset: int
    sent: float
    missing: str = ""  # why nothing will come (the signal could not be sent)


class StackDesk:
    """Stack requests in flight, one per run at most."""

    def __init__(self, reader: RunReader) -> None:
        self.reader = reader
        self.pending: dict[str, _Request] = {}

    def request(self, run: TrackedRun, now: float) -> bool:
        """Ask the run for its stacks; True if the caller should come back
        after ``STACK_WAIT`` (an answer may be on its way)."""
        if run.run_id in self.pending:
            return False  # asked already: now is the time to collect
        if run.record.stack_signal != evidence.STACK_SIGNAL_NAME:
            return False
        offset, why = self.reader.dump_size(run, evidence.STACKS_FILE, evidence.MAX_STACKS_FILE_BYTES)
        self.pending[run.run_id] = _Request(offset=offset, sent=now, missing=why or send_stack_request(run))
        return not self.pending[run.run_id].missing

    def collect(self, run: TrackedRun) -> dict[str, Any]:
        """The alert fields the run's answer gives: ``where`` and ``stacks``,
        or ``evidence_missing`` saying why not."""
        asked = self.pending.pop(run.run_id, None)
        if asked is None:
            if run.record.stack_signal is None:
                return {"evidence_missing": "the process did not arm stack dumps (no recorder in it, "
                                            "or an older one)"}
            return {"evidence_missing": f"the process armed {run.record.stack_signal!r}, not "
                                        f"{evidence.STACK_SIGNAL_NAME}"}
        if asked.missing:
            return {"evidence_missing": asked.missing}
        raw, why = self.reader.read_dump(run, evidence.STACKS_FILE, asked.offset, evidence.MAX_DUMP_BYTES)
        if not raw:
            return {"evidence_missing": why or f"no stacks within {STACK_WAIT:g} s of the request"}
        return _facts(evidence.parse(raw), "no stack in the dump")

    def crash_facts(self, run: TrackedRun, signal_name: Optional[str]) -> dict[str, Any]:
        """The faulting frame of a run killed by a fatal signal, from ``crash.txt``."""
        if signal_name not in FATAL_SIGNALS or run.record.stack_signal is None:
            return {}
        raw, why = self.reader.read_dump(run, evidence.CRASH_FILE, 0, evidence.MAX_DUMP_BYTES)
        if not raw:
            # No crash.txt (the user's own faulthandler has the dump) or an empty one: say nothing.
            return {"evidence_missing": why} if why and why != f"no {evidence.CRASH_FILE}" else {}
        # A process writes one crash dump (it dies of it); take the last if there are more.
        start = raw.rfind(b"Fatal Python error:")
        return _facts(evidence.parse(raw[max(start, 0):]), "no stack in the crash dump", crashed=True)

    def forget(self, run_id: str) -> None:
        self.pending.pop(run_id, None)


def _facts(dump: evidence.Dump, empty: str, *, crashed: bool = False) -> dict[str, Any]:
    thread = dump.crashed if crashed else dump.main
    frame = thread.where if thread is not None else None
    if frame is None:
        return {"evidence_missing": empty}
    return {"where": frame.short, "stacks": dump.text()}


def send_stack_request(run: TrackedRun) -> str:
    """Signal the run's very process; "" if sent, else why not."""
    if run.unwatchable or run.resolving:
        # Its recorded pid is another namespace's number: here it may be anyone.
        return "the process is in a PID namespace this daemon cannot see"
    ident = run.identity  # the host pid of a containerised run
    pid = ident.pid
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return "the process is gone"
    except OSError as exc:
        return f"cannot open the process ({exc.strerror or exc})"
    try:
        # The pidfd pins the process: if its start time matches now, the
        # signal goes to the run and never to a process that reused the pid.
        if start_ticks(pid) != ident.start_ticks:
            return "the process is gone"
        signal.pidfd_send_signal(fd, evidence.STACK_SIGNAL)
    except PermissionError:
        return "no right to signal the process (the daemon needs CAP_KILL)"
    except ProcessLookupError:
        return "the process is gone"
    except OSError as exc:
        return f"cannot signal the process ({exc.strerror or exc})"
    finally:
        os.close(fd)
    log.info("run %s: asked pid %d for its stacks", run.run_id, pid)
    return ""
