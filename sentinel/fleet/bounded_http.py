"""An HTTP server that one client cannot exhaust: capped connections, a deadline.

The metrics and status server listens where every local user (and, when it
listens beyond loopback, every peer) can connect. ``http.server``'s
threading server gives each connection a thread and a descriptor for as
long as the client keeps sending, a byte a second being enough, so a
thousand slow clients took every open file of the daemon. Here:

- at most ``max_connections`` connections are served at once, and at most
  ``max_per_peer`` from one remote address; one over either is answered
  ``503`` and closed at once (the refusals are logged once a minute);
- a loopback peer is every local user at once, so there the share is per
  local user: the uid owning the client's socket (``sentinel.host.peer_uid``)
  gets at most ``max_per_peer`` and at most a quarter of ``max_connections``,
  so one user's idle connections cannot deny the others the status page;
  a loopback connection whose owner cannot be found shares the "unknown" slot
  of the same size;
- each connection has ``deadline`` seconds in all, reading the request and
  writing the answer: past it its socket is shut down (checked by the
  serving thread between accepts), however slowly the client trickles;
- the request line and headers keep ``http.server``'s own bounds (64 KiB a
  line, 100 headers); a request body is never read.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
import threading
import time
from http.server import ThreadingHTTPServer
from typing import Any

from sentinel.host.peer_uid import is_loopback, loopback_peer_uid

log = logging.getLogger("sentinel.http")

REFUSAL = b"HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
LOG_EVERY = 60.0


class BoundedHTTPServer(ThreadingHTTPServer):
    """``ThreadingHTTPServer`` with a connection cap (total, per peer) and a per-connection deadline."""

    daemon_threads = True

    def __init__(self, address: Any, handler: Any, *, max_connections: int, max_per_peer: int,
                 deadline: float) -> None:
        self.max_connections = max_connections
        self.max_per_peer = max_per_peer
        self.deadline = deadline
        self._lock = threading.Lock()
        self._open: dict[Any, tuple[str, float]] = {}  # socket -> (peer, when accepted)
        self._per_peer: dict[str, int] = {}
        self._refused = 0
        self._logged_at = 0.0
        super().__init__(address, handler)

    def connections(self) -> int:
        with self._lock:
            return len(self._open)

    def peer_key(self, request: Any, client_address: Any) -> tuple[str, int]:
        """Whom a connection counts against, and their share: a remote
        address, a local uid, or the unknown local user."""
        address = str(client_address[0]) if isinstance(client_address, tuple) else str(client_address)
        if not is_loopback(address):
            return address, self.max_per_peer
        share = max(1, min(self.max_per_peer, self.max_connections // 4))
        try:
            uid = loopback_peer_uid(client_address, request.getsockname())
        except OSError:
            uid = None
        return (f"uid {uid}" if uid is not None else "local, owner unknown"), share

    def verify_request(self, request: Any, client_address: Any) -> bool:
        peer, share = self.peer_key(request, client_address)
        with self._lock:
            full = len(self._open) >= self.max_connections or self._per_peer.get(peer, 0) >= share
            if not full:
                self._open[request] = (peer, time.monotonic())
                self._per_peer[peer] = self._per_peer.get(peer, 0) + 1
                return True
            self._refused += 1
            now = time.monotonic()
            log_now = now - self._logged_at >= LOG_EVERY
            if log_now:
                refused, self._refused, self._logged_at = self._refused, 0, now
        if log_now:
            log.warning("HTTP: %d connection(s) refused: at most %d at once, %d per peer address or "
                        "local user (budgets.http_connections, budgets.http_connections_per_peer; a "
                        "local user at most a quarter of the first); logged at most once a minute",
                        refused, self.max_connections, self.max_per_peer)
        try:
            request.setblocking(False)
            request.send(REFUSAL)
        except OSError:
            pass
        return False  # the server closes it

    def shutdown_request(self, request: Any) -> None:
        with self._lock:
            opened = self._open.pop(request, None)
            if opened is not None:
                peer = opened[0]
                left = self._per_peer.get(peer, 1) - 1
                if left > 0:
                    self._per_peer[peer] = left
                else:
                    self._per_peer.pop(peer, None)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away (or was cut at the deadline) mid-answer is
        no error of ours: no traceback in the daemon's log for it."""
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)

    def service_actions(self) -> None:
        """Between accepts (every poll interval): cut connections past their deadline."""
        cutoff = time.monotonic() - self.deadline
        with self._lock:
            late = [request for request, (_, since) in self._open.items() if since <= cutoff]
        for request in late:
            with contextlib.suppress(OSError):
                request.shutdown(socket.SHUT_RDWR)  # the handler's read or write fails; it closes


class BoundedHTTPServerV6(BoundedHTTPServer):
    address_family = socket.AF_INET6
