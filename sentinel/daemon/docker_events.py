"""What Docker did to a container: ``docker stop`` is SIGTERM, then SIGKILL after the grace period.

The kernel tells the daemon only the signal that killed a process (a pidfd's
wait status): SIGKILL. That a SIGTERM came first, and the process outlived
the grace period, only the container runtime knows. Docker says so on its
events stream (``GET /events``): a ``kill`` event with ``signal=15`` when
``docker stop`` (or ``docker kill --signal TERM``) begins, ``signal=9`` when
the grace period is over, then ``die``.

A thread follows the stream of the Docker engine at ``DOCKER_HOST`` (only a
``unix://`` socket; default ``/var/run/docker.sock``) when that socket
exists, and remembers the last signals sent to each container (bounded).
It never blocks the loop: a missing or broken engine means no such evidence,
and the stream is reconnected with a growing pause. The engine's own words
are trusted only as far as the root-only socket is: only its signals are used.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
from collections import OrderedDict, deque
from typing import Optional
from urllib.parse import quote

from sentinel.model.endings import Reason

log = logging.getLogger("sentinel.daemon.docker_events")

DEFAULT_SOCKET = "/var/run/docker.sock"
_MAX_CONTAINERS = 4096
_SIGNALS_KEPT = 8
_LINE_MAX = 64 * 1024
_FILTERS = json.dumps({"type": ["container"], "event": ["kill"]})
SIGTERM, SIGKILL = 15, 9


def socket_path(env: Optional[dict[str, str]] = None) -> Optional[str]:
    """The engine's socket as DOCKER_HOST names it (unix:// only), else the default."""
    value = (os.environ if env is None else env).get("DOCKER_HOST", "")
    if not value:
        return DEFAULT_SOCKET
    if value.startswith("unix://"):
        return value[len("unix://"):]
    return None  # tcp:// and ssh:// engines are not followed: this daemon talks to no network engine


def parse_event(line: bytes) -> Optional[tuple[str, float, int]]:
    """(container id, time, signal number) of one ``kill`` event line, else None."""
    try:
        event = json.loads(line)
        actor = event["Actor"]
        signum = int(actor["Attributes"]["signal"])
        cid = str(actor["ID"])
        when = int(event["timeNano"]) / 1e9
    except (ValueError, KeyError, TypeError):
        return None
    if event.get("Action") != "kill" or len(cid) != 64:
        return None
    return cid, when, signum


class DockerEvents:
    """The signals Docker sent each container lately, from its events stream."""

    def __init__(self, path: Optional[str] = None, connect: bool = True) -> None:
        self.path = socket_path() if path is None else path
        self._signals: OrderedDict[str, deque[tuple[float, int]]] = OrderedDict()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sock: Optional[socket.socket] = None
        self._thread: Optional[threading.Thread] = None
        if connect and self.path and os.path.exists(self.path):
            self._thread = threading.Thread(target=self._follow, name="sentinel-docker-events", daemon=True)
            self._thread.start()

    # ------------------------------------------------------------ answers

    def record(self, cid: str, when: float, signum: int) -> None:
        with self._lock:
            kept = self._signals.setdefault(cid, deque(maxlen=_SIGNALS_KEPT))
            kept.append((when, signum))
            self._signals.move_to_end(cid)
            while len(self._signals) > _MAX_CONTAINERS:
                self._signals.popitem(last=False)

    def stop_reason(self, cid: str, since: float, signum: Optional[int], now: float) -> Optional[Reason]:
        """``docker stop``'s part in a death by SIGKILL (``signum`` 9) at ``now``: a
        SIGTERM Docker sent the container after ``since`` (the run's start). Docker's
        own SIGKILL event may come after the death itself, so it is not waited for."""
        if signum != SIGKILL:
            return None
        with self._lock:
            signals = list(self._signals.get(cid, ()))
        term = next((when for when, sig in reversed(signals) if sig == SIGTERM and when >= since), None)
        if term is None or term > now:
            return None
        return Reason("container_stopped", {"after": round(now - term, 1)})

    # ------------------------------------------------------------ the stream

    def _follow(self) -> None:
        pause = 1.0
        while not self._stop.is_set():
            try:
                self._read_stream()
                pause = 1.0
            except OSError as exc:
                log.debug("docker events at %s: %s", self.path, exc)
            if self._stop.wait(pause):
                return
            pause = min(pause * 2, 60.0)

    def _read_stream(self) -> None:
        if not self.path:
            return
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock = sock
        try:
            sock.settimeout(10)
            sock.connect(self.path)
            sock.settimeout(None)
            request = (f"GET /events?filters={quote(_FILTERS)} HTTP/1.1\r\nHost: docker\r\n"
                       "Accept: application/json\r\n\r\n")
            sock.sendall(request.encode("ascii"))
            stream = sock.makefile("rb")
            status = stream.readline(_LINE_MAX)
            if b" 200 " not in status:
                log.info("docker events at %s: %s", self.path, status.decode("ascii", "replace").strip())
                return
            chunked = False
            for _ in range(200):  # headers: bounded
                header = stream.readline(_LINE_MAX).strip().lower()
                if not header:
                    break
                chunked = chunked or header == b"transfer-encoding: chunked"
            log.info("following docker events at %s (docker stop is named)", self.path)
            buffer = b""
            while not self._stop.is_set():
                if chunked:
                    size_line = stream.readline(_LINE_MAX)
                    if not size_line:
                        return
                    size = int(size_line.split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        return
                    data = stream.read(size)
                    stream.readline(_LINE_MAX)  # the chunk's CRLF
                else:
                    data = stream.readline(_LINE_MAX)
                    if not data:
                        return
                buffer = (buffer + data)[-_LINE_MAX:]
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    found = parse_event(line)
                    if found is not None:
                        self.record(*found)
        except ValueError as exc:
            raise OSError(f"malformed events stream: {exc}") from None
        finally:
            self._sock = None
            with contextlib.suppress(OSError):
                sock.close()

    def close(self) -> None:
        self._stop.set()
        sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

