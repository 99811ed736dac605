"""`sentinel run -- CMD`: any command as a watched job.

The wrapper is the watched process (its pid is in the run record), so a
``kill -9`` of the wrapper is caught by the daemon like any run; as the
child's parent it also knows how the child ended and records it:

    exit 0                      finished
    exit N != 0                 crashed, exit_code N
    SIGINT                      aborted (signal SIGINT)
    SIGSEGV, SIGABRT, SIGBUS …  crashed (signal; the program itself failed)
    any other signal            terminated (signal, e.g. SIGTERM, SIGKILL)

and exits with the child's status (128+N for signal N, as a shell reports it).

The wrapper owns the command's whole tree. It is a child subreaper
(``PR_SET_CHILD_SUBREAPER``): whatever the command starts and leaves behind
(``sh -c 'python train.py'`` whose shell died of the forwarded SIGTERM, a
worker orphaned by its dead parent) is reparented to the wrapper rather than
to init. Once the command itself has ended, what is left of its tree is
stopped, as systemd's ``KillMode=control-group`` does: SIGTERM, then SIGKILL
after ``TREE_GRACE`` seconds, every orphan reaped. So a ``kill`` of the
wrapper, or the command ending, never leaves a trainer running unwatched.

A ``kill -9`` of the wrapper gives it no chance to do this: the kernel's
``PR_SET_PDEATHSIG`` (SIGKILL) reaches the direct child only, and its own
descendants live on, reparented to init. The daemon reports the wrapper's
run killed and names those survivors in the alert (see
``sentinel/daemon/survivors.py``).

Signals are taken synchronously (blocked, then ``sigwaitinfo``), which both
avoids races with the child's exit and tells who sent them: a SIGINT sent by
the kernel (Ctrl-C on the terminal) already reached the child, which shares
our process group, so only signals sent by a process (``kill``) are forwarded.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import fcntl
import os
import shlex
import signal
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, Union

from sentinel.formats import spool
from sentinel.model.exit_status import ending_kind

EXIT_NOT_FOUND = 127
EXIT_NOT_EXECUTABLE = 126

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
_SI_KERNEL = 0x80  # si_code of a signal the kernel raised itself (a terminal's ^C, ^\)
_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
TREE_GRACE = 5.0  # seconds the command's leftovers get between SIGTERM and SIGKILL
TREE_ROUNDS = 100  # bound on take-down rounds (each round reaps or kills at least one process)


def _libc() -> Any:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    return libc


def become_subreaper() -> bool:
    """Make orphaned descendants this process's children (False where the kernel refuses)."""
    return _libc().prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


def own_children() -> list[int]:
    """This process's live children (orphans reparented to it included), from /proc."""
    children: set[int] = set()
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return []
    for tid in tasks:
        with contextlib.suppress(OSError, ValueError), open(f"/proc/self/task/{tid}/children") as listing:
            children.update(int(word) for word in listing.read().split())
    return sorted(children)


def reap_all() -> list[tuple[int, int]]:
    """Reap every child that has ended: (pid, wait status) each."""
    reaped: list[tuple[int, int]] = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return reaped
        if pid == 0:
            return reaped
        reaped.append((pid, status))


def take_down_tree(grace: float = TREE_GRACE) -> list[int]:
    """Stop what the command left running: SIGTERM to each, SIGKILL after ``grace``.

    Runs with SIGCHLD blocked (it is waited for with sigtimedwait). Each
    process killed reparents its own children to us, so this goes round
    until nothing is left (bounded). Returns the pids signalled."""
    signalled: list[int] = []
    deadline = time.monotonic() + grace
    for _ in range(TREE_ROUNDS):
        reap_all()
        left = own_children()
        if not left:
            break
        force = time.monotonic() >= deadline
        for pid in left:
            if pid not in signalled or force:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL if force else signal.SIGTERM)
                if pid not in signalled:
                    signalled.append(pid)
        signal.sigtimedwait({signal.SIGCHLD}, max(0.05, min(1.0, deadline - time.monotonic())))
    reap_all()
    return signalled


def die_with_parent() -> Callable[[], None]:
    """A ``preexec_fn`` that makes the child get SIGKILL when this process dies.

    Everything is looked up before the fork: the child runs only the prctl
    call and ``getppid``, nothing that could wait on a lock another thread
    held at the fork. If the wrapper died between fork and prctl, the
    child's parent is already someone else, and it kills itself.
    """
    prctl = _libc().prctl
    wrapper = os.getpid()
    sigkill = int(signal.SIGKILL)

    def in_child() -> None:
        signal.pthread_sigmask(signal.SIG_SETMASK, ())  # the child sees signals as if run directly
        prctl(_PR_SET_PDEATHSIG, sigkill, 0, 0, 0)
        if os.getppid() != wrapper:
            os.kill(os.getpid(), sigkill)

    return in_child


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def outcome(wait_status: int) -> tuple[spool.FinalRecord, int]:
    """The final record for a child's wait status, and the status to exit with."""
    now = time.time()
    if os.WIFSIGNALED(wait_status):
        signum = os.WTERMSIG(wait_status)
        name = signal_name(signum)
        state = ending_kind(name) or "terminated"  # a signal always names an ending
        if state == "aborted":
            text = f"interrupted ({name})"
        elif state == "crashed":
            core = " (core dumped)" if os.WCOREDUMP(wait_status) else ""
            text = f"the command died of {name}{core}"
        elif state == "killed":
            text = f"the command was killed by {name} (kill -9, or the kernel's OOM killer)"
        else:
            text = f"the command was terminated by {name}"
        return spool.FinalRecord(state=state, ended=now, signal=name, error=text), 128 + signum
    code = os.WEXITSTATUS(wait_status) if os.WIFEXITED(wait_status) else 1
    if ending_kind(None, code) == "finished":
        return spool.FinalRecord(state="finished", ended=now, exit_code=0), 0
    return spool.FinalRecord(state="crashed", ended=now, exit_code=code,
                             error=f"the command exited with code {code}"), code


def run_command(
    command: Sequence[str],
    *,
    name: Optional[str] = None,
    channels: Sequence[str] = (),
    labels: Optional[Mapping[str, str]] = None,
    stall_timeout: Union[float, str, None] = None,
    spool_path: Optional[Path] = None,
) -> int:
    """Run ``command`` watched; return the status to exit with. Raises
    ``InvalidArgument`` (before anything starts) for a bad option."""
    from sentinel.training.recorder import Recorder
    from sentinel.training.run_options import run_options

    joined = shlex.join(command)
    options = run_options("sentinel run", name=name, channels=list(channels),
                          labels={"command": joined, **(labels or {})}, stall_timeout=stall_timeout,
                          spool_dir=spool_path)

    waited = {signal.SIGCHLD, *FORWARDED}
    previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, waited)
    try:
        # Opened after blocking: the heartbeat thread inherits the mask, so
        # every signal comes to sigwaitinfo below. SIGTERM is ours to forward,
        # not the recorder's to act on.
        recorder = Recorder.open(
            options.spool_dir, name=options.name or joined[:200], labels=options.labels,
            channels=options.channels, stall_timeout=options.stall_timeout, source="run",
            stack_dumps=False,  # the wrapper's own stacks say nothing about the command's
            handle_sigterm=False,
        )
        become_subreaper()  # before the child starts: all it starts stays ours
        relay = StderrRelay()
        try:
            # close_fds=False: the job inherits descriptors as it would from a shell.
            child = subprocess.Popen(list(command), close_fds=False, preexec_fn=die_with_parent(),
                                     stderr=relay.child_end)
        except OSError as exc:
            relay.close()
            status = EXIT_NOT_FOUND if isinstance(exc, FileNotFoundError) else EXIT_NOT_EXECUTABLE
            reason = "command not found" if status == EXIT_NOT_FOUND else (exc.strerror or str(exc))
            print(f"sentinel: {command[0]}: {reason}", file=sys.stderr)
            final = spool.FinalRecord(state="crashed", ended=time.time(), exit_code=status,
                                      error=f"{command[0]}: {reason}")
        else:
            relay.start()
            wait_status = _wait_forwarding(child.pid, waited, recorder)
            child.returncode = os.waitstatus_to_exitcode(wait_status)  # reaped here, not by Popen
            final, status = outcome(wait_status)
            left = take_down_tree()
            if left:
                print(f"sentinel: stopped {len(left)} process(es) the command left running "
                      f"(pids {', '.join(map(str, left[:10]))})", file=sys.stderr)
            tail = relay.finish()
            if final.state != "finished" and tail:
                # The command's own last words last: an alert's summary is the error's last line.
                final.error = f"{final.error}\n{tail}" if final.error else tail
        recorder.finish(final.state, error=final.error, exit_code=final.exit_code, signal_name=final.signal)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)
    return status


class StderrRelay:
    """The child's stderr, passed on to ours, its end kept for the alert.

    Through a pseudo-terminal when our stderr is a terminal (the child keeps
    its colours, progress bars and line buffering), else through a pipe.
    The child's stdin and stdout are left alone.
    """

    LINGER = 2.0  # seconds to drain after the child's exit (a grandchild may hold the stream open)

    def __init__(self) -> None:
        self.tail = bytearray()
        self._thread: Optional[threading.Thread] = None
        try:
            tty = os.isatty(2)
        except OSError:
            tty = False
        if tty:
            self.ours, self.child_end = os.openpty()
            with contextlib.suppress(OSError):  # the child sees our terminal's size
                size = fcntl.ioctl(2, termios.TIOCGWINSZ, b"\0" * 8)
                fcntl.ioctl(self.child_end, termios.TIOCSWINSZ, size)
        else:
            self.ours, self.child_end = os.pipe()

    def start(self) -> None:
        os.close(self.child_end)  # the child has it now; EOF once the child's copy closes
        self.child_end = -1
        self._thread = threading.Thread(target=self._pump, name="sentinel-stderr", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        while True:
            try:
                chunk = os.read(self.ours, 65536)
            except OSError:  # EIO: the pseudo-terminal's last writer is gone
                break
            if not chunk:
                break
            with contextlib.suppress(OSError):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(2, view):]
            self.tail += chunk
            if len(self.tail) > 2 * spool.ERROR_TAIL_BYTES:
                del self.tail[:-spool.ERROR_TAIL_BYTES]

    def finish(self) -> str:
        """Stop relaying; the end of what the child wrote, as text."""
        if self._thread is not None:
            self._thread.join(self.LINGER)
        if self._thread is None or not self._thread.is_alive():
            self.close()  # else a grandchild still writes: the relay goes on until we exit
        text = bytes(self.tail[-spool.ERROR_TAIL_BYTES:]).decode("utf-8", "replace")
        return text.replace("\r\n", "\n").strip()

    def close(self) -> None:
        for fd in (self.ours, self.child_end):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.ours = self.child_end = -1


def _wait_forwarding(pid: int, waited: set, recorder: Any) -> int:
    """Wait for ``pid`` to end, forwarding signals; return its wait status."""
    while True:
        # A SIGCHLD may have come and gone before we got here: look first, then wait.
        # Orphans reparented to us (we are a subreaper) are reaped on the way.
        for done, wait_status in reap_all():
            if done == pid:
                return wait_status
        # The child being alive is all the progress a wrapper can see; waking
        # once per heartbeat to say so means a stall alert names a frozen wrapper.
        recorder.note_progress()
        info = signal.sigtimedwait(waited, recorder.interval)
        if info is None or info.si_signo == signal.SIGCHLD:
            continue
        if info.si_code == _SI_KERNEL:
            continue  # from the terminal: the child, in our process group, has it already
        with contextlib.suppress(ProcessLookupError):  # it is exiting; waitpid tells how
            os.kill(pid, info.si_signo)
