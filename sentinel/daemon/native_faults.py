"""The native library a process faulted in, from the kernel's own line.

When a user process dies of an unhandled SIGSEGV (or a trap), the kernel logs
(``show_unhandled_signals``, rate-limited) one line before the process exits::

    python[20598]: segfault at 0 ip 00007f354d574219 sp 00007ffde21fc8b8 error 4
        in libc.so.6[156219,7f354d444000+156000] likely on CPU 0 (core 0, socket 0)
    traps: python[123] general protection fault ip:7f.. sp:7ff.. error:0 in libfoo.so[7f..+2000]

The records come from the OOM detector's ``/dev/kmsg`` reader (one fd, one
pass), and follow its rule: a line counts for a process only if it names its
pid and was logged after the process started (times since boot), so a
reused pid is not blamed. ``library_of`` gives the base name of the mapping the
faulting instruction lay in (``libc.so.6``) for the crash alert's ``where``.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Optional

from sentinel.common.safetext import printable
from sentinel.daemon.oom import split_kmsg_record, started_since_boot
from sentinel.host.procid import ProcessIdentity

_FAULT_RE = re.compile(r"\[(?P<pid>\d{1,10})\]:? (?:segfault at |general protection|trap )"
                       r".*? in (?P<mapping>[^\s\[]{1,255})\[")
_MAX_PIDS = 1024
_LIBRARY_CHARS = 80


@dataclass(frozen=True)
class NativeFault:
    pid: int
    since_boot: float
    library: str  # "libc.so.6"


def parse_line(text: str) -> Optional[tuple[int, str]]:
    """(pid, library base name) if ``text`` is a kernel fault line naming a mapping."""
    match = _FAULT_RE.search(text)
    if match is None:
        return None
    library = match.group("mapping").rsplit("/", 1)[-1]
    return int(match.group("pid")), printable(library)[:_LIBRARY_CHARS]


class NativeFaults:
    """The last fault line of each recent pid."""

    def __init__(self) -> None:
        self._hits: OrderedDict[int, NativeFault] = OrderedDict()

    def feed(self, record: bytes) -> None:
        split = split_kmsg_record(record)
        found = parse_line(split[1]) if split is not None else None
        if split is None or found is None:
            return
        pid, library = found
        self._hits[pid] = NativeFault(pid, split[0], library)
        self._hits.move_to_end(pid)
        while len(self._hits) > _MAX_PIDS:
            self._hits.popitem(last=False)

    def library_of(self, ident: ProcessIdentity) -> Optional[str]:
        """The library ``ident`` faulted in, if the kernel said so since it started."""
        hit = self._hits.get(ident.pid)
        if hit is None or hit.since_boot + 1.0 < started_since_boot(ident):
            return None
        return hit.library


def with_library(where: Optional[str], library: str) -> str:
    """'crash_in_native_code (train.py:40) in libc.so.6'."""
    return f"{where} in {library}" if where else f"in {library}"
