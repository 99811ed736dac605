"""The recorder's side of the evidence: faulthandler armed into the run directory.

One run per process owns faulthandler (the first recorded one): its
``stacks.txt`` receives every thread's stack on ``evidence.STACK_SIGNAL`` and
its ``crash.txt`` the fatal signal's dump (formats: ``sentinel.formats.evidence``).

* The dump on request is ``faulthandler.register``: written by a C signal
  handler, without the GIL, so a training thread stuck in native code holding
  the GIL is dumped too. faulthandler writes each piece of each frame line
  with its own unbuffered ``write()`` (about seven system calls a frame, as
  async-signal safety demands), so a dump of 8 threads 50 frames deep takes
  milliseconds whatever the file. The thread that opened the run (the
  training thread) therefore keeps the signal blocked (``keep_off_this_thread``)
  and the recorder's heartbeat thread takes it (``take_on_this_thread``): the
  handler runs there, as ``faulthandler.dump_traceback_later``'s watchdog
  thread does, and the training thread is not held while the stacks are
  written. Threads the training thread starts later inherit the block; a
  forked child unblocks it again.
  A handler already installed for the signal is chained to; with none, the
  signal's default (fatal) is never chained to.
* The crash dump is ``faulthandler.enable`` unless the user enabled
  faulthandler already: theirs is left alone and ``crash.txt`` stays absent.
* A forked child (a DataLoader worker) disarms both, so its own crash never
  lands in its parent's files.

Never raises: a failure is reported once and the run goes on without stacks.
Stdlib only.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import signal
import threading
from pathlib import Path
from typing import Callable, Optional

from sentinel.formats import evidence

# "0" switches stack dumps off for a process (a training stack that needs the
# signal, or faulthandler, for itself); alerts then say why stacks are missing.
ENV_SWITCH = "SENTINEL_STACK_DUMPS"

_lock = threading.RLock()  # re-entered by the SIGTERM handler's finish in the thread that holds it
_owner: Optional[Path] = None  # the run directory faulthandler writes into
_stacks_fd: Optional[int] = None
_crash_fd: Optional[int] = None
_kept_off: Optional[int] = None  # the thread that blocks the signal (threading.get_ident)


def keep_off_this_thread() -> None:
    """Block the stack signal in the calling (training) thread, so that the
    handler runs on a thread that takes it (``take_on_this_thread``)."""
    global _kept_off
    if os.environ.get(ENV_SWITCH) == "0":
        return
    with contextlib.suppress(OSError, ValueError):
        signal.pthread_sigmask(signal.SIG_BLOCK, {evidence.STACK_SIGNAL})
        _kept_off = threading.get_ident()


def take_on_this_thread() -> None:
    """Unblock the stack signal in the calling thread (the recorder's heartbeat
    thread, which may have inherited the block from the thread that started it)."""
    with contextlib.suppress(OSError, ValueError):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {evidence.STACK_SIGNAL})


def _give_back_to_this_thread() -> None:
    """Unblock the signal where ``keep_off_this_thread`` blocked it, once a
    request that found no other thread to run on is taken off (the handler is
    gone now: the signal's default would end the process)."""
    global _kept_off
    if _kept_off != threading.get_ident():
        return
    _kept_off = None
    with contextlib.suppress(OSError, ValueError):
        while signal.sigtimedwait({evidence.STACK_SIGNAL}, 0) is not None:
            pass
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {evidence.STACK_SIGNAL})


def _open_dump(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_NOFOLLOW
                   | os.O_CLOEXEC, 0o600)


def arm(run_dir: Path, report: Callable[[str, str], None]) -> Optional[str]:
    """Dump stacks into ``run_dir``; the signal name to record, or None."""
    global _owner, _stacks_fd, _crash_fd
    with _lock:
        if _owner is not None or os.environ.get(ENV_SWITCH) == "0":
            return None  # another run of this process has it, or the user said no
        try:
            previous = signal.getsignal(evidence.STACK_SIGNAL)
            stacks_fd = _open_dump(run_dir / evidence.STACKS_FILE)
            # Chaining to SIG_DFL would re-raise a fatal signal; to SIG_IGN, nothing.
            chain = previous not in (signal.SIG_DFL, signal.SIG_IGN)
            faulthandler.register(evidence.STACK_SIGNAL, file=stacks_fd, all_threads=True, chain=chain)
            _stacks_fd = stacks_fd
            _owner = run_dir
            if not faulthandler.is_enabled():
                crash_fd = _open_dump(run_dir / evidence.CRASH_FILE)
                faulthandler.enable(file=crash_fd, all_threads=True)
                _crash_fd = crash_fd
        except (OSError, ValueError, RuntimeError) as exc:
            report("stacks", f"cannot arm stack dumps in {run_dir} ({exc}); alerts will not show "
                             "where the run hangs")
            return evidence.STACK_SIGNAL_NAME if _stacks_fd is not None else None
        return evidence.STACK_SIGNAL_NAME


def disarm(run_dir: Path) -> None:
    """The run ended: give the signal and faulthandler back as they were,
    and leave no empty dump file behind (an empty file reads as half-written)."""
    global _owner
    with _lock:
        if _owner != run_dir:
            return
        empty = [name for name, fd in ((evidence.STACKS_FILE, _stacks_fd), (evidence.CRASH_FILE, _crash_fd))
                 if fd is not None and _size(fd) == 0]
        _release()
        _owner = None
        _give_back_to_this_thread()
        for name in empty:
            with contextlib.suppress(OSError):
                os.unlink(run_dir / name)


def _size(fd: int) -> int:
    try:
        return os.fstat(fd).st_size
    except OSError:
        return -1


def forget_in_child() -> None:
    """After fork: the child is no run; its faults are not the parent's."""
    global _owner, _kept_off
    if _owner is not None:
        _release()
        _owner = None
    if _kept_off is not None:  # the child is no run: its threads take the signal as before
        _kept_off = None
        with contextlib.suppress(OSError, ValueError):
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {evidence.STACK_SIGNAL})


def _release() -> None:
    global _stacks_fd, _crash_fd
    try:
        if _stacks_fd is not None:
            faulthandler.unregister(evidence.STACK_SIGNAL)
        if _crash_fd is not None:
            faulthandler.disable()
    except (RuntimeError, ValueError, OSError):
        pass
    for fd in (_stacks_fd, _crash_fd):
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
    _stacks_fd = _crash_fd = None
