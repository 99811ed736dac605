"""What every victim shares: its command line, and the behaviours to act out.

Modes (what happens after ``--steps`` progress reports):
  finish          end normally (explicit finish / leaving the block)
  no-finish       just return from the script; atexit ends the run
  exception       raise RuntimeError("boom from victim")
  sys-exit-1      sys.exit(1)
  sigint-self     send itself SIGINT (KeyboardInterrupt in the main thread)
  sigterm-self    send itself SIGTERM
  sleep-forever   keep reporting progress every --period s until killed
  stall           stop reporting progress, stay alive (heartbeats go on) until killed
  progress-then-stall-then-resume
                  stall until --resume-file exists (or --stall-seconds pass),
                  then report --steps more and finish
  fork            fork a child that reports, sends and crashes as if it were
                  the run; wait for it, then finish
  segfault        print "RUNNING", wait as for a resume, then crash in native
                  code (SIGSEGV) with no exit record
  abort           ... the same, then os.abort() (SIGABRT)
  os-exit-3       ... the same, then os._exit(3): no exit record
  finish-then-live
                  finish, print "FINISHED", then stay alive until killed
  heartbeat-ends-alone
                  wait as for a resume, stop the run's heartbeat thread (one
                  watched sub-thread exits alone), print "ALONE", stay alive
                  until killed
  exec-sleep      print "RUNNING", wait as for a resume, then execv /bin/sleep
                  (same process, another program) until killed
  wait-for-peer   print "STALLED", then hang in a function named wait_for_peer
                  until the resume file exists; then report --steps more and finish
  segfault-in-function
                  print "RUNNING", wait as for a resume, then crash in native code
                  inside a function named crash_in_native_code
Every victim prints "READY <run_id>" once its run record is on disk, and
"STALLED" / "RESUMED" / "DONE" at those points, so tests never sleep.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from typing import Callable, Optional

MODES = (
    "finish", "no-finish", "exception", "sys-exit-1", "sigint-self", "sigterm-self",
    "sleep-forever", "stall", "progress-then-stall-then-resume", "fork",
    "segfault", "abort", "os-exit-3", "finish-then-live", "heartbeat-ends-alone", "exec-sleep",
    "wait-for-peer", "segfault-in-function",
)
FOREVER_LIMIT = 3600.0  # a victim nobody kills still ends by itself


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=MODES)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--period", type=float, default=0.05, help="seconds between progress reports")
    parser.add_argument("--heartbeat", type=float, default=None, help="heartbeat interval (s)")
    parser.add_argument("--stall-timeout", type=float, default=None)
    parser.add_argument("--name", default=None)
    parser.add_argument("--channel", action="append", default=[], help="inline channel, JSON")
    parser.add_argument("--send", action="append", default=[], help="message(s) to send after the steps")
    parser.add_argument("--resume-file", default=None)
    parser.add_argument("--stall-seconds", type=float, default=None)
    parser.add_argument("--user-sigterm-exit", type=int, default=None,
                        help="install a SIGTERM handler that calls sys.exit(N) first")
    parser.add_argument("--expect-pause", type=float, default=None)
    parser.add_argument("--label", action="append", default=[], help="run label KEY=VALUE")
    parser.add_argument("--print", action="append", default=[], dest="prints",
                        help="line(s) to print after the steps")
    parser.add_argument("--capture-output", action="store_true", help="sentinel.watch(capture_output=True)")
    args = parser.parse_args(argv)
    args.channels = [json.loads(c) for c in args.channel]
    args.labels = dict(item.split("=", 1) for item in args.label)
    return args


def say(line: str) -> None:
    """A line for the test harness, not the program's output: past any capture of sys.stdout."""
    stream = sys.__stdout__ or sys.stdout
    stream.write(line + "\n")
    stream.flush()


def install_user_sigterm(args: argparse.Namespace) -> None:
    if args.user_sigterm_exit is not None:
        code = args.user_sigterm_exit
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(code))


def act(args: argparse.Namespace, report: Callable[[int], None], send: Callable[[str], None],
        finish: Callable[[], None], run_dir: Optional[str] = None,
        sent: Callable[[], None] = lambda: None) -> None:
    """Act out ``args.mode``; ``report(step)`` is one unit of training progress;
    ``sent()`` returns once the messages sent are in the spool."""
    step = 0

    def progress(n: int) -> None:
        nonlocal step
        for _ in range(n):
            step += 1
            report(step)
            time.sleep(args.period)

    progress(args.steps)
    for line in args.prints:
        print(line, flush=True)
    for text in args.send:
        send(text)
    if args.send:
        sent()  # "RUNNING" below then means every message is in the spool
    mode = args.mode
    if mode == "finish":
        finish()
    elif mode == "no-finish":
        pass
    elif mode == "exception":
        raise RuntimeError("boom from victim")
    elif mode == "sys-exit-1":
        sys.exit(1)
    elif mode == "sigint-self":
        os.kill(os.getpid(), signal.SIGINT)
        wait_forever()
    elif mode == "sigterm-self":
        os.kill(os.getpid(), signal.SIGTERM)
        wait_forever()
    elif mode == "sleep-forever":
        say("RUNNING")
        deadline = time.monotonic() + FOREVER_LIMIT
        while time.monotonic() < deadline:
            progress(1)
    elif mode == "segfault":  # a crash in native code: no Python code runs after it
        import ctypes

        say("RUNNING")
        wait_for_resume(args)
        ctypes.string_at(0)
    elif mode == "abort":
        say("RUNNING")
        wait_for_resume(args)
        os.abort()
    elif mode == "os-exit-3":
        say("RUNNING")
        wait_for_resume(args)
        os._exit(3)
    elif mode == "finish-then-live":  # the run ends, the process goes on
        finish()
        say("FINISHED")
        wait_forever()
    elif mode == "heartbeat-ends-alone":  # one watched sub-thread exits, the process lives
        from sentinel.training import recorder

        wait_for_resume(args)

        for rec in recorder.active_runs():
            rec._stopping = True
            rec._wake.set()
            if rec._thread is not None:
                rec._thread.join()
        say("ALONE")
        wait_forever()
    elif mode == "exec-sleep":  # another program in the same process: the sub-threads vanish
        say("RUNNING")
        wait_for_resume(args)
        os.execv("/bin/sleep", ["sleep", str(FOREVER_LIMIT)])
    elif mode == "stall":
        say("STALLED")
        wait_forever()
    elif mode == "progress-then-stall-then-resume":
        say("STALLED")
        wait_for_resume(args)
        say("RESUMED")
        progress(args.steps)
        finish()
    elif mode == "wait-for-peer":
        say("STALLED")
        wait_for_peer(args)
        say("RESUMED")
        progress(args.steps)
        finish()
    elif mode == "segfault-in-function":
        say("RUNNING")
        wait_for_resume(args)
        crash_in_native_code()
    elif mode == "fork":
        pid = os.fork()
        if pid == 0:  # the child: everything here must leave the run alone
            report(999)
            send("from the child")
            raise RuntimeError("child crash must not be recorded")
        os.waitpid(pid, 0)
        if run_dir:  # before the parent's own end could cover a child's write
            left = sorted(n for n in os.listdir(run_dir) if n in ("final.json", "msg"))
            say(f"AFTER-CHILD {','.join(left) or '-'}")
        progress(1)
        finish()
    say("DONE")


def wait_for_peer(args: argparse.Namespace) -> None:
    """A collective that never completes: blocked in the standard library's wait."""
    import threading

    peer = threading.Event()
    deadline = time.monotonic() + FOREVER_LIMIT
    while time.monotonic() < deadline:
        if args.resume_file and os.path.exists(args.resume_file):
            return
        peer.wait(0.02)


def crash_in_native_code() -> None:
    import ctypes

    ctypes.string_at(0)


def wait_forever() -> None:
    deadline = time.monotonic() + FOREVER_LIMIT
    while time.monotonic() < deadline:
        time.sleep(0.05)


def wait_for_resume(args: argparse.Namespace) -> None:
    if args.stall_seconds is not None:
        time.sleep(args.stall_seconds)
        return
    deadline = time.monotonic() + FOREVER_LIMIT
    while time.monotonic() < deadline:
        if args.resume_file and os.path.exists(args.resume_file):
            return
        time.sleep(0.02)
