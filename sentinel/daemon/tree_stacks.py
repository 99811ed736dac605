"""A stalled ``sentinel run`` command's stacks, taken by py-spy.

In ``sentinel run -- python train.py`` the recorder is the wrapper process,
which only waits for its child: its own stacks say nothing (it does not arm
``evidence.STACK_SIGNAL``). The training is the child, or a grandchild
(``sh -c``, a launcher), and has no recorder. So on a stall the daemon takes
the stacks of the Python processes of the wrapper's tree with ``py-spy dump``
(``sentinel.daemon.pyspy``: ``CAP_SYS_PTRACE``, never locals, a timeout),
each on a worker thread, gathered without blocking the loop as a job's ranks
are (``sentinel.daemon.job_stacks``):

* one Python process: the alert's ``where`` is its main thread's waiting
  frame, as for a ``sentinel.watch`` run;
* several: they are grouped by stack and the odd one out named by pid;
* none, or py-spy missing or refused: ``evidence_missing`` says why.

The processes are the wrapper's live descendants its owner owns
(``survivors.descendants``: bounded reads of /proc, a setuid process is
another owner's), breadth first, the first ``MAX_PROCESSES`` that run a
Python interpreter.
"""

from __future__ import annotations

import os
from typing import Any, Optional

from sentinel.daemon import survivors
from sentinel.daemon.job_stacks import Answer, JobStacks, Rank, summarise
from sentinel.daemon.run_reader import RunReader, TrackedRun
from sentinel.host.procid import ProcessIdentity

MAX_PROCESSES = 8  # py-spy dumps per stall of one command
RUNNER_SOURCE = "run"  # RunRecord.source of a ``sentinel run`` wrapper


class TreeStacks:
    """Stack gathers in flight for ``sentinel run`` wrappers, one per run."""

    def __init__(self, reader: RunReader) -> None:
        self.gathers = JobStacks(reader, summary=single_or_grouped)

    def poll(self, run: TrackedRun, now: float) -> Optional[dict[str, Any]]:
        """The alert's fields for a stalled wrapper (``where``, ``stacks`` or
        ``evidence_missing``); {} if ``run`` is no wrapper; None while py-spy
        works (call again after ``STACK_WAIT``)."""
        if run.record.source != RUNNER_SOURCE:
            return {}
        if run.run_id in self.gathers.pending:
            return self.gathers.poll(run.run_id, [], now)
        if run.unwatchable or run.resolving:
            return {"evidence_missing": "the process is in a PID namespace this daemon cannot see"}
        processes = python_processes(run.identity, run.owner_uid)
        if not processes:
            return {"evidence_missing": "no Python process in the command's tree"}
        return self.gathers.poll(run.run_id, [Rank(None, p) for p in processes], now)

    def forget(self, run_id: str) -> None:
        self.gathers.forget(run_id)


def python_processes(wrapper: ProcessIdentity, owner_uid: int) -> list[ProcessIdentity]:
    """The wrapper's live descendants that run Python, breadth first, at most ``MAX_PROCESSES``."""
    found = []
    for ident in survivors.descendants(wrapper.pid, owner_uid):
        if runs_python(ident.pid):
            found.append(ident)
            if len(found) >= MAX_PROCESSES:
                break
    return found


def runs_python(pid: int) -> bool:
    """Whether ``pid``'s program is a Python interpreter: its executable's
    name (readable with ``CAP_SYS_PTRACE``), else its command name."""
    try:
        name = os.path.basename(os.readlink(f"/proc/{pid}/exe"))
    except OSError:
        try:
            with open(f"/proc/{pid}/comm", "rb") as comm:
                name = comm.read(64).decode("utf-8", "replace").strip()
        except OSError:
            return False
    return name.startswith("python") or name.startswith("pypy")


def single_or_grouped(answers: list[Answer]) -> dict[str, Any]:
    """One process that answered: its waiting frame, as a recorder's dump
    gives; else the grouped summary of a job's ranks."""
    if len(answers) == 1:
        _, dump, why = answers[0]
        main = dump.main if dump is not None else None
        where = main.where if main is not None else None
        if dump is not None and where is not None:
            return {"where": where.short, "stacks": dump.text()}
        return {"evidence_missing": why or "no stack in the dump"}
    return summarise(answers)
