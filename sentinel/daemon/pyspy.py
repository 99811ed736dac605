"""Stacks of a process without the recorder, by ``py-spy dump``.

py-spy (PyPI ``py-spy``, the ``stacks`` extra) reads a Python process's
stacks from outside through ptrace and ``process_vm_readv``: it needs the
daemon's ``CAP_SYS_PTRACE`` for another user's process (systemd/sentinel.service
grants it). It is run as

    py-spy dump --pid PID --nonblocking --full-filenames

never with ``--locals`` (no variable of the training process is ever read),
``--nonblocking`` so the process is not paused, on the caller's worker
thread, at most ``MAX_RUNNING`` at once on the whole host (a user with a
hundred stalled commands must not start 800 tracers: a dump that finds no slot
within ``SLOT_WAIT`` says so instead), killed after ``TIMEOUT`` seconds, its output capped at
``evidence.MAX_DUMP_BYTES`` and parsed into an ``evidence.Dump`` with every
name made printable and secrets masked. Its format::

    Process 123: python train.py
    Python v3.11.7 (/usr/bin/python3.11)

    Thread 123 (idle): "MainThread"
        straggle (/home/u/train.py:17)
        <module> (/home/u/train.py:40)

The binary is ``$SENTINEL_PY_SPY`` if set, else the one next to the daemon's
interpreter (a virtual environment's bin/), else ``py-spy`` on PATH. When it
is missing or may not trace the process, the answer says why, for the alert.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Optional

from sentinel.common.redact import redact
from sentinel.common.safetext import printable
from sentinel.formats import evidence
from sentinel.host.procid import ProcessIdentity, start_ticks

ENV_BINARY = "SENTINEL_PY_SPY"
TIMEOUT = 5.0  # seconds one dump may take (a few hundred ms for a usual process)
NOT_INSTALLED = "py-spy is not installed"
NO_PTRACE = "no ptrace right (the daemon needs CAP_SYS_PTRACE)"
MAX_RUNNING = 4  # py-spy processes at once, for every stalled run and job together
SLOT_WAIT = 1.0  # seconds a dump waits for one of them (its gather gives up at TIMEOUT + 1)
BUSY = f"py-spy is busy with other stalled runs ({MAX_RUNNING} dumps at once at most)"
SLOTS = threading.BoundedSemaphore(MAX_RUNNING)

_THREAD_RE = re.compile(r'^Thread (0x[0-9a-fA-F]+|\d+) \(([a-z-]+)\)(?:: "(.*)")?\s*$')
_FRAME_RE = re.compile(r"^\s+(.+?) \((.*):(\d+)\)\s*$")


def binary() -> Optional[str]:
    """The py-spy to run, or None if there is none."""
    configured = os.environ.get(ENV_BINARY)
    if configured:
        return configured if os.access(configured, os.X_OK) else None
    beside = Path(sys.executable).parent / "py-spy"
    if os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("py-spy")


def dump(ident: ProcessIdentity) -> tuple[Optional[evidence.Dump], str]:
    """The stacks of the process ``ident`` names: (dump, "") or (None, why not).
    Blocks up to ``TIMEOUT``: call it on a worker thread."""
    program = binary()
    if program is None:
        return None, NOT_INSTALLED
    if start_ticks(ident.pid) != ident.start_ticks:
        return None, "the process is gone"
    if not SLOTS.acquire(timeout=SLOT_WAIT):
        return None, BUSY
    try:
        return _dump(program, ident)
    finally:
        SLOTS.release()


def _dump(program: str, ident: ProcessIdentity) -> tuple[Optional[evidence.Dump], str]:
    argv = [program, "dump", "--pid", str(ident.pid), "--nonblocking", "--full-filenames"]
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, close_fds=True)
    except OSError as exc:
        return None, f"cannot run py-spy ({exc.strerror or exc})"
    timer = threading.Timer(TIMEOUT, proc.kill)
    timer.start()
    try:
        assert proc.stdout is not None
        raw = proc.stdout.read(evidence.MAX_DUMP_BYTES)
        proc.kill()  # it has said what fits; anything more is not read
        code = proc.wait()
        timed_out = not timer.is_alive()
    finally:
        timer.cancel()
        if proc.stdout is not None:
            proc.stdout.close()
    if start_ticks(ident.pid) != ident.start_ticks:
        return None, "the process is gone"  # the pid may have been reused meanwhile
    parsed = parse(raw)
    if parsed.threads:
        return parsed, ""
    if timed_out:
        return None, f"py-spy gave no stack within {TIMEOUT:g} s"
    said = raw.decode("utf-8", "replace").lower()
    if "permission denied" in said or "operation not permitted" in said:
        return None, NO_PTRACE
    return None, f"py-spy failed (exit status {code})"


def parse(raw: bytes) -> evidence.Dump:
    """The threads of one ``py-spy dump`` (hostile bytes: capped, printable, masked)."""
    text = raw[:evidence.MAX_DUMP_BYTES].decode("utf-8", "replace")
    threads: list[evidence.ThreadStack] = []
    main: Optional[evidence.ThreadStack] = None
    for line in text.splitlines():
        head = _THREAD_RE.match(line)
        if head:
            thread = evidence.ThreadStack(ident=_clean(head.group(1)), current=False)
            threads.append(thread)
            if head.group(3) == "MainThread" and main is None:
                main = thread
            continue
        frame = _FRAME_RE.match(line)
        if frame and threads:
            threads[-1].frames.append(evidence.Frame(
                path=_clean(frame.group(2)), line=int(frame.group(3)[:9]), function=_clean(frame.group(1))))
    if main is not None:  # the main thread first: ``Dump.main`` falls back to the first
        threads.remove(main)
        threads.insert(0, main)
    return evidence.Dump(threads=threads)


def _clean(value: str) -> str:
    return redact(printable(value))[:evidence.MAX_FRAME_CHARS * 4]
