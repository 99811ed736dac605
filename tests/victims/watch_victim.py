"""A training stand-in watched with ``sentinel.watch``.

    python tests/victims/watch_victim.py MODE [options]   (see _common.py)

Runs with only ``PYTHONPATH`` pointing at the project: stdlib and sentinel.
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common  # noqa: E402

import sentinel  # noqa: E402

SENT_LIMIT = 60.0  # seconds the heartbeat thread gets to write the messages sent


def main() -> None:
    args = _common.parse_args()
    _common.install_user_sigterm(args)
    run = sentinel.watch(
        name=args.name or f"watch-{args.mode}",
        channels=args.channels,
        stall_timeout=args.stall_timeout,
        heartbeat_interval=args.heartbeat,
        capture_output=args.capture_output,
        labels=args.labels or None,
    )
    _common.say(f"READY {run.run_id}")
    if args.expect_pause is not None:
        run.expect_pause(args.expect_pause)

    def report(step: int) -> None:
        run.beat(step=step, loss=1.0 / step, lr=0.1)

    def sent() -> None:
        # The heartbeat thread writes queued messages holding the run's lock: an
        # empty queue seen under that lock means the last one is written.
        recorder = run._recorder
        deadline = time.monotonic() + SENT_LIMIT
        while time.monotonic() < deadline:
            with recorder._lock:
                if not recorder._outgoing:
                    return
            recorder._wake.set()
            time.sleep(0.01)  # polling a condition (bounded), not a wait for time to pass
        raise SystemExit(f"messages not written within {SENT_LIMIT:g} s")

    if args.mode == "no-finish":  # no with-block, no finish(): atexit ends it
        _common.act(args, report, run.send, lambda: None, str(run.path), sent)
        return
    with run:  # leaving the block finishes the run; a mode that finishes earlier says so
        _common.act(args, report, run.send, run.finish, str(run.path), sent)


if __name__ == "__main__":
    main()
