"""``sentinel test [CHANNEL]``: send a test alert now and show what the service said.

It goes through the real path a real alert takes (``build_channel`` and
``Channel.send``), once and without retries, so a user checking a config
learns within seconds whether the key, webhook or secret works and, if not,
which setting to fix.
"""

from __future__ import annotations

import concurrent.futures
import getpass
import os
import socket
import sys
import time
from typing import Any, Optional, TextIO

from sentinel.channels import build_channel
from sentinel.channels.base import DeliveryError
from sentinel.common.redact import redact
from sentinel.model.alerts import Alert, AlertKind


def make_test_alert(now: Optional[float] = None) -> Alert:
    now = time.time() if now is None else now
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry in some containers
        user = ""
    return Alert(
        alert_id=f"test.{int(now * 1000)}",
        kind=AlertKind.TEST,
        created=now,
        run_name="sentinel test",
        hostname=socket.gethostname(),
        user=user,
        pid=os.getpid(),
    )


WAITING_NOTE_AFTER = 2.0  # seconds before saying which channels are still being waited on


def _try_channel(config: Any, name: str, alert: Alert) -> tuple[bool, str]:
    """(delivered, the line to print) for one channel."""
    chan = config.channels.get(name)
    if chan is None:
        return False, f"✗ {name}: no such channel (configured: {', '.join(config.channels) or 'none'})"
    label = f"{name} ({chan.type})"
    try:
        built = build_channel(name, {"type": chan.type, **chan.options}, chan.language)
    except ValueError as exc:
        return False, f"✗ {label}: {redact(exc)}"
    secrets = built.secrets()
    try:
        answer = built.send(alert)
    except DeliveryError as exc:
        kind = "permanent" if exc.permanent else "transient (the daemon would retry)"
        return False, f"✗ {label}: {kind}: {redact(exc, secrets)}"
    except Exception as exc:  # report, don't crash the CLI with a traceback holding secrets
        return False, f"✗ {label}: unexpected {exc.__class__.__name__}: {redact(exc, secrets)}"
    return True, f"✓ {label}: {redact(answer, secrets)}"


def run_test(config: Any, channel: Optional[str] = None, out: TextIO = sys.stdout,
             waiting_note_after: float = WAITING_NOTE_AFTER) -> int:
    """Send a TEST alert to ``channel`` (default: every configured channel),
    all channels at once; print each service's answer in the config's order,
    and which channels are still awaited when one takes a while. Exit status:
    0 if all delivered, else 1."""
    names = [channel] if channel else list(config.channels)
    if not names:
        print("no channels configured", file=out)
        return 1
    alert = make_test_alert()
    failed = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(16, len(names))) as pool:
        futures = [pool.submit(_try_channel, config, name, alert) for name in names]
        # Answers in the config's order; while the next one is slow, say who is awaited.
        for index, future in enumerate(futures):
            try:
                delivered, line = future.result(timeout=waiting_note_after)
            except concurrent.futures.TimeoutError:
                still = ", ".join(name for name, f in zip(names[index:], futures[index:]) if not f.done())
                print(f"… waiting on {still}", file=out, flush=True)
                delivered, line = future.result()
            failed += not delivered
            print(line, file=out, flush=True)
    out.flush()
    return 1 if failed else 0
