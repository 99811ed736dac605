"""How a process ended, from what the kernel or the process said.

``ending_kind`` is the one classifier: a recorded state (final.json), a
signal or an exit code becomes a kind of ``sentinel.model.endings`` (finished,
crashed, aborted, terminated, killed). `sentinel run` (a child's wait
status), the job watch (a rank's death), the recorder (its SIGTERM handler)
and the daemon (a pidfd's status on an alert) all ask it, so a SIGKILL is
"killed" wherever it is seen; a scheduler's verdict names its kind itself
(sentinel.daemon.slurm).

``ending_of`` turns a ``waitpid``-style status (what the kernel reports
through a pidfd) into an ``Ending``: the signal that killed the process, or
the code it exited with. ``words`` says it for a user, per language. One
pure table, so every place that names an ending says the same thing.
Stdlib only.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from typing import Optional

from sentinel.model import endings

# Signals a process gets from its own faulty native code (a C extension, a
# driver, the interpreter itself), not from someone else.
NATIVE_CRASH_SIGNALS = frozenset({"SIGSEGV", "SIGBUS", "SIGABRT", "SIGILL", "SIGFPE", "SIGSYS", "SIGTRAP"})


@dataclass(frozen=True)
class Ending:
    key: str  # killed | native_crash | terminated | signaled | exited
    signal: Optional[str] = None  # "SIGKILL", ...
    exit_code: Optional[int] = None


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def ending_kind(signal_name: Optional[str] = None, exit_code: Optional[int] = None, *,
                recorded: Optional[str] = None) -> Optional[str]:
    """The kind of ending (``sentinel.model.endings``) a death is; None if nothing says how.

    What the process recorded wins (it knew: an exception, Ctrl-C); then the
    signal: SIGINT is an interrupt (aborted), SIGKILL leaves no chance to say
    anything (killed), a native crash signal is a crash, and any other fatal
    signal asked the process to stop (terminated); then the exit code: 0 is
    finished, anything else crashed.
    """
    if recorded is not None:
        return recorded
    if signal_name:
        if signal_name == "SIGINT":
            return "aborted"
        if signal_name == "SIGKILL":
            return "killed"
        if signal_name in NATIVE_CRASH_SIGNALS:
            return "crashed"
        return "terminated"
    if exit_code is None:
        return None
    return "finished" if exit_code == 0 else "crashed"


def ending_key(signal_name: Optional[str], exit_code: Optional[int]) -> Optional[str]:
    """The table key for a death by ``signal_name`` or with ``exit_code``."""
    if signal_name:
        if signal_name == "SIGKILL":
            return "killed"
        if signal_name in NATIVE_CRASH_SIGNALS:
            return "native_crash"
        if signal_name == "SIGTERM":
            return "terminated"
        return "signaled"
    return "exited" if exit_code is not None else None


def ending_of(status: int) -> Ending:
    """The ending a wait status describes (the core-dump bit is ignored)."""
    number = status & 0x7F
    if number:
        name = signal_name(number)
        return Ending(ending_key(name, None) or "signaled", signal=name)
    return Ending("exited", exit_code=(status >> 8) & 0xFF)


_WORDS = endings.DEATH_WORDS  # worded in the one word table


def words(signal_name: Optional[str], exit_code: Optional[int], lang: str) -> Optional[tuple[str, str]]:
    """(headline, summary) for a death with no exit record; None if unknown."""
    key = ending_key(signal_name, exit_code)
    if key is None:
        return None
    table = _WORDS[key]
    headline, summary = table.get(lang, table["en"])
    values = {"signal": signal_name or "", "code": exit_code}
    return headline.format(**values), summary.format(**values)
