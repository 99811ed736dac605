"""``sentinel test [CHANNEL]``: send a test alert now and show what the service said.

It goes through the real path a real alert takes (``build_channel`` and
``Channel.send``), once and without retries, so a user checking a config
learns within seconds whether the key, webhook or secret works and, if not,
which setting to fix.
"""

from __future__ import annotations

import getpass
import os
import socket
import sys
import time
from typing import Optional, TextIO

from sentinel.alerts import Alert, AlertKind
from sentinel.channels import build_channel
from sentinel.channels.base import DeliveryError
from sentinel.redact import redact


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


def run_test(config, channel: Optional[str] = None, out: TextIO = sys.stdout) -> int:  # noqa: ANN001
    """Send a TEST alert to ``channel`` (default: every configured channel);
    print each service's answer. Exit status: 0 if all delivered, else 1."""
    names = [channel] if channel else list(config.channels)
    if not names:
        print("no channels configured", file=out)
        return 1
    alert = make_test_alert()
    failed = 0
    for name in names:
        chan = config.channels.get(name)
        if chan is None:
            print(f"✗ {name}: no such channel (configured: {', '.join(config.channels) or 'none'})", file=out)
            failed += 1
            continue
        label = f"{name} ({chan.type})"
        try:
            built = build_channel(name, {"type": chan.type, **chan.options}, chan.language)
        except ValueError as exc:
            print(f"✗ {label}: {redact(exc)}", file=out)
            failed += 1
            continue
        secrets = built.secrets()
        try:
            answer = built.send(alert)
        except DeliveryError as exc:
            kind = "permanent" if exc.permanent else "transient (the daemon would retry)"
            print(f"✗ {label}: {kind}: {redact(exc, secrets)}", file=out)
            failed += 1
            continue
        except Exception as exc:  # report, don't crash the CLI with a traceback holding secrets
            print(f"✗ {label}: unexpected {exc.__class__.__name__}: {redact(exc, secrets)}", file=out)
            failed += 1
            continue
        print(f"✓ {label}: {redact(answer, secrets)}", file=out)
    out.flush()
    return 1 if failed else 0
