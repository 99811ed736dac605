"""sd_notify without a dependency: a datagram to $NOTIFY_SOCKET.

A no-op outside systemd (no NOTIFY_SOCKET), so the daemon calls it freely.
"""

from __future__ import annotations

import os
import socket
from typing import Mapping, Optional


def notify(state: str, env: Optional[Mapping[str, str]] = None) -> bool:
    """Send ``state`` (e.g. "READY=1", "WATCHDOG=1") to systemd; True if sent."""
    env = os.environ if env is None else env
    addr = env.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):  # abstract namespace socket
        addr = "\0" + addr[1:]
    try:
        # Non-blocking: a notify socket whose queue is full (a slow or absent
        # reader) must not stall the daemon's loop; the datagram is dropped.
        kind = socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK
        with socket.socket(socket.AF_UNIX, kind) as sock:
            sock.connect(addr)
            sock.sendall(state.encode("utf-8"))
        return True
    except OSError:
        return False


def watchdog_period(env: Optional[Mapping[str, str]] = None) -> Optional[float]:
    """Seconds between WATCHDOG=1 pings (half of WatchdogSec), or None if unset.

    systemd sets WATCHDOG_PID too; a ping is only ours to send if it names us.
    """
    env = os.environ if env is None else env
    usec = env.get("WATCHDOG_USEC")
    pid = env.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 2_000_000 if value > 0 else None
