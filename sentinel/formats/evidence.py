"""Stack dumps in a run directory: where a run hangs, which frame crashed.

This module owns two files of the run directory (see ``sentinel.formats.spool`` for
the rest of the layout). Both are written by CPython's ``faulthandler`` in
the training process, in its own text format, so neither carries a version of
ours: the reader below parses only the lines it knows and ignores the rest.

    <run_id>/stacks.txt   every thread's stack, appended each time the process
                          receives ``STACK_SIGNAL`` (``faulthandler.register``,
                          chained to any handler already there). The daemon
                          notes the file's size, signals, and reads what was
                          appended after that size.
    <run_id>/crash.txt    the crashing thread's stack and every other thread's,
                          written by ``faulthandler.enable`` when the process
                          dies of SIGSEGV, SIGBUS, SIGABRT, SIGFPE or SIGILL.
                          Absent when the user had enabled faulthandler
                          already (theirs is left alone).

The format, as faulthandler writes it::

    Fatal Python error: Segmentation fault        (crash.txt only)

    Current thread 0x00007f... (most recent call first):
      File "/home/u/train.py", line 12 in wait_for_peer
      File "/home/u/train.py", line 30 in <module>

    Thread 0x00007f... (most recent call first):
      File "/usr/lib/python3.11/threading.py", line 320 in wait
      ...

faulthandler writes file names, line numbers and function names only: never
a local variable or an argument. Every byte is still the user's: the reader
caps what it reads (``MAX_DUMP_BYTES``), keeps printable text only, and masks
what looks like a secret (``sentinel.common.redact``) before any of it reaches an
alert. Stdlib only: the recorder imports it.
"""

from __future__ import annotations

import re
import signal
from dataclasses import dataclass, field
from typing import Optional

from sentinel.common.redact import redact
from sentinel.common.safetext import printable

STACKS_FILE = "stacks.txt"
CRASH_FILE = "crash.txt"

# The signal that asks a recorded process for its stacks. Not SIGUSR1 (Slurm's
# --signal default, PyTorch Lightning's requeue) nor SIGUSR2 (Lightning's, some
# launchers'), not a signal with a meaning of its own: a real-time signal no
# training stack or launcher we know of uses. The record says the recorder
# registered it (``RunRecord.stack_signal``); the daemon never sends it otherwise,
# because for a process that did not register it the signal is fatal.
STACK_SIGNAL = signal.SIGRTMIN + 7
STACK_SIGNAL_NAME = "SIGRTMIN+7"

MAX_DUMP_BYTES = 64 * 1024  # one dump of 100 threads x 100 frames is ~40 KiB
# stacks.txt grows by one dump per request (a few KiB for a usual process);
# past this size the daemon no longer asks, and the alert says why.
MAX_STACKS_FILE_BYTES = 4 * 1024 * 1024
MAX_STACKS_CHARS = 8 * 1024  # what an alert carries of the whole dump
MAX_FRAME_CHARS = 200

_THREAD_RE = re.compile(r"^(Current thread|Thread) (0x[0-9a-fA-F]+)")
_FRAME_RE = re.compile(r'^\s+File "(.*)", line (\d+) in (.+?)\s*$')
_FATAL_RE = re.compile(r"^Fatal Python error: (.+?)\s*$")
# Frames in the interpreter's own library say "waiting", not where: the user's
# frame that called them is the one to name (threading.Event.wait -> wait_for_peer).
_STDLIB_RE = re.compile(r"/lib/python3\.\d+/(?!site-packages/|dist-packages/).+\.py$")


@dataclass(frozen=True)
class Frame:
    path: str
    line: int
    function: str

    @property
    def short(self) -> str:
        """'wait_for_peer (train.py:12)'."""
        name = self.path.rsplit("/", 1)[-1]
        return printable(f"{self.function} ({name}:{self.line})")[:MAX_FRAME_CHARS]

    @property
    def in_stdlib(self) -> bool:
        return bool(_STDLIB_RE.search(self.path))


@dataclass(frozen=True)
class ThreadStack:
    ident: str
    current: bool
    frames: list[Frame] = field(default_factory=list)  # most recent call first

    @property
    def is_main(self) -> bool:
        """The main thread's outermost frame is the script's ``<module>``."""
        return bool(self.frames) and self.frames[-1].function == "<module>"

    @property
    def where(self) -> Optional[Frame]:
        """The innermost frame outside the standard library (else the innermost)."""
        for frame in self.frames:
            if not frame.in_stdlib:
                return frame
        return self.frames[0] if self.frames else None

    def signature(self) -> tuple[tuple[str, int, str], ...]:
        """What identical stacks share (the thread id aside): grouping ranks by it."""
        return tuple((f.path, f.line, f.function) for f in self.frames)


@dataclass(frozen=True)
class Dump:
    threads: list[ThreadStack]
    fatal: Optional[str] = None  # "Segmentation fault" in a crash dump

    @property
    def main(self) -> Optional[ThreadStack]:
        for thread in self.threads:
            if thread.is_main:
                return thread
        return self.threads[0] if self.threads else None

    @property
    def crashed(self) -> Optional[ThreadStack]:
        """The thread faulthandler names current in a crash dump: the one that faulted."""
        for thread in self.threads:
            if thread.current:
                return thread
        return self.main

    def text(self, limit: int = MAX_STACKS_CHARS) -> str:
        """The dump as an alert carries it: main thread first, capped."""
        ordered = sorted(self.threads, key=lambda t: not t.is_main)
        lines: list[str] = []
        if self.fatal:
            lines.append(f"Fatal Python error: {self.fatal}")
        for thread in ordered:
            label = "main thread" if thread.is_main else f"thread {thread.ident}"
            lines.append(f"{label} (most recent call first):")
            lines.extend(f'  File "{f.path}", line {f.line} in {f.function}' for f in thread.frames)
        text = "\n".join(lines)
        return text if len(text) <= limit else text[: limit - 1] + "…"


def parse(raw: bytes) -> Dump:
    """The threads of one faulthandler dump (hostile bytes: capped, made
    printable, secrets masked). Lines it does not know are skipped."""
    text = raw[:MAX_DUMP_BYTES].decode("utf-8", "replace")
    threads: list[ThreadStack] = []
    fatal: Optional[str] = None
    for line in text.splitlines():
        head = _THREAD_RE.match(line)
        if head:
            threads.append(ThreadStack(ident=head.group(2), current=head.group(1) == "Current thread"))
            continue
        frame = _FRAME_RE.match(line)
        if frame and threads:
            threads[-1].frames.append(Frame(path=_clean(frame.group(1)), line=int(frame.group(2)[:9]),
                                            function=_clean(frame.group(3))))
            continue
        dead = _FATAL_RE.match(line)
        if dead and fatal is None:
            fatal = _clean(dead.group(1))
    return Dump(threads=threads, fatal=fatal)


def _clean(value: str) -> str:
    return redact(printable(value))[:MAX_FRAME_CHARS * 4]
