"""The common part of the fake services: an HTTP server on 127.0.0.1 in a
thread, recording every request with its arrival time, switchable to fail.

Failure modes (``fail(mode)``), back to normal with ``recover()``:

- ``"down"``: the connection is closed without an answer (a client sees a
  connection error, as with a dead or unreachable service);
- ``"reset"``: the connection is reset (TCP RST) without an answer, as by a
  crashing proxy;
- ``"5xx"``: the service's own server-error answer;
- ``"4xx"``: the service's own "this will never work" answer;
- ``fail(status=..., body=..., headers=...)``: exactly that answer.

``hold_after(n)`` makes every request after the n-th wait, unanswered, until
``release()``: a request is then "in flight" for as long as a test needs
(e.g. to kill the sender mid-delivery). ``slow(seconds)`` answers every
request that much later (a service having a bad moment), until ``recover()``.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Optional
from urllib.parse import parse_qs, urlsplit

from tests.waiting import wait_for  # also re-exported as tests.fakes.wait_for

HOST = "127.0.0.1"
HOLD_LIMIT = 60.0  # a held request is answered by itself after this long (bounded)


@dataclass
class RecordedRequest:
    method: str
    path: str  # without the query
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    arrival_ns: int  # time.monotonic_ns() when the request reached the fake's socket (``kernel_arrival_ns``)
    status: int = 0  # what the fake answered (0: no answer)
    answer: bytes = b""

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))


@dataclass
class Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, data: Any, headers: Optional[dict[str, str]] = None) -> Reply:
        return cls(status, json.dumps(data, ensure_ascii=False).encode("utf-8"),
                   {"Content-Type": "application/json; charset=utf-8", **(headers or {})})

    @classmethod
    def text(cls, status: int, text: str, headers: Optional[dict[str, str]] = None) -> Reply:
        return cls(status, text.encode("utf-8"),
                   {"Content-Type": "text/plain; charset=utf-8", **(headers or {})})


DROP = None  # a handler's answer meaning "close the connection, say nothing"

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; Python names it from 3.12 on
_STAMP = struct.Struct("qq")  # struct timespec, CLOCK_REALTIME


def kernel_arrival_ns(conn: socket.socket) -> int:
    """When the request waiting on ``conn`` reached it, as ``time.monotonic_ns()``
    would have said then: the kernel's receive stamp (``SO_TIMESTAMPNS``; TCP
    merges segments waiting unread and keeps the newest one's stamp), peeked, so
    the request is still read as usual, and converted from the realtime clock.
    Waits for the first byte as reading the request line would; 0 if the peer
    closed first or the kernel gave no stamp (the caller stamps it itself)."""
    try:
        data, ancillary, _, _ = conn.recvmsg(1, socket.CMSG_SPACE(_STAMP.size), socket.MSG_PEEK)
    except OSError:
        return 0
    for level, kind, raw in ancillary:
        if data and level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(raw) >= _STAMP.size:
            seconds, nanoseconds = _STAMP.unpack(raw[:_STAMP.size])
            return seconds * 1_000_000_000 + nanoseconds - (time.time_ns() - time.monotonic_ns())
    return 0


_stamping: Optional[socket.socket] = None


def receive_stamps_on() -> bool:
    """Turn the kernel's receive stamps on before the first request comes, and
    keep them on: a listening socket asking for them stays open for the
    process's life. The kernel turns stamping on for every socket a moment
    after the first one asks (deferred work): a segment that arrives before
    has none, so loopback probes show when it took effect. False if it did
    not within a few seconds (the fakes then stamp arrival themselves)."""
    global _stamping
    if _stamping is not None:
        return True
    keeper = socket.create_server((HOST, 0))
    keeper.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    for _ in range(5000):  # bounded: about 5 s
        with socket.create_connection(keeper.getsockname()) as probe:
            accepted, _ = keeper.accept()
            with accepted:
                probe.sendall(b"?")
                if kernel_arrival_ns(accepted):
                    _stamping = keeper
                    return True
        time.sleep(0.001)  # the probe's own pacing: the kernel's deferred work runs meanwhile
    keeper.close()
    return False


class FakeService:
    """Subclasses implement ``handle(request) -> Reply`` and ``failure(mode)``."""

    MODES: tuple[str, ...] = ("down", "reset", "5xx", "4xx")  # a service may add its own

    def __init__(self) -> None:
        self.keep_alive = False  # HTTP/1.0: one request per connection (``keep_connections``)
        self._connections: set[socket.socket] = set()
        self.requests: list[RecordedRequest] = []
        self._cond = threading.Condition()
        self._mode: Optional[str] = None
        self._custom: Optional[Reply] = None
        self._hold_after: Optional[int] = None
        self._delay = 0.0
        self._released = threading.Event()
        self._server: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None

    # ------------------------------------------------------------ life cycle

    def start(self) -> FakeService:
        service = self

        class Handler(BaseHTTPRequestHandler):
            arrival_ns = 0
            protocol_version = "HTTP/1.1" if self.keep_alive else "HTTP/1.0"

            def setup(self) -> None:
                super().setup()
                # The answer's head and body go out as two writes: on a kept connection, Nagle's
                # algorithm would hold the body for the client's delayed ACK (40 ms).
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                with service._cond:
                    service._connections.add(self.connection)

            def finish(self) -> None:
                with service._cond:
                    service._connections.discard(self.connection)
                super().finish()

            def handle_one_request(self) -> None:
                # Each request's own stamp, also the second on a kept connection.
                self.arrival_ns = kernel_arrival_ns(self.connection)
                super().handle_one_request()

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                service._serve(self)

            def do_GET(self) -> None:  # noqa: N802
                service._serve(self)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass  # quiet: tests read ``requests`` instead

        receive_stamps_on()
        self._server = ThreadingHTTPServer((HOST, 0), Handler)
        # The kernel stamps each segment it receives (inherited by accepted sockets):
        # a request's arrival is then when it reached this socket, not when the
        # fake's Python got round to it (a thread per connection, then
        # header parsing: a millisecond on a busy machine that a service's real
        # server would not add to the sender's latency).
        self._server.socket.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self._server.daemon_threads = True
        # A short poll interval: stop() (server.shutdown) waits up to one of them.
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        name=type(self).__name__, daemon=True)
        self._thread.start()
        return self

    def keep_connections(self) -> FakeService:
        """Answer HTTP/1.1 and keep each connection open for the next request,
        as a service's real server does (persistent connections are HTTP/1.1's
        default, RFC 9112 section 9.3). Before ``start``."""
        self.keep_alive = True
        return self

    def stop(self) -> None:
        self._released.set()
        if self._server is not None:
            self._server.shutdown()
            with self._cond:
                kept = list(self._connections)
            for connection in kept:  # a kept connection's handler waits for the next request: end it
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeService:
        return self.start() if self._server is None else self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    # ------------------------------------------------------------ failure switches

    def fail(self, mode: str = "5xx", *, status: Optional[int] = None, body: str = "",
             headers: Optional[dict[str, str]] = None) -> None:
        with self._cond:
            if status is not None:
                self._mode, self._custom = "custom", Reply.text(status, body, headers)
            else:
                if mode not in self.MODES:
                    raise ValueError(f"unknown failure mode {mode!r}")
                self._mode, self._custom = mode, None

    def recover(self) -> None:
        with self._cond:
            self._mode, self._custom, self._delay = None, None, 0.0

    def slow(self, seconds: float) -> None:
        with self._cond:
            self._delay = seconds

    def hold_after(self, count: int) -> None:
        self._released.clear()
        self._hold_after = count

    def release(self) -> None:
        self._hold_after = None
        self._released.set()

    # ------------------------------------------------------------ observing

    def received(self) -> list[RecordedRequest]:
        with self._cond:
            return list(self.requests)

    def wait_for(self, predicate: Callable[[list[RecordedRequest]], bool], timeout: float = 10.0) -> bool:
        """Whether ``predicate(requests)`` came to hold within ``timeout`` (the
        benchmarks' form; tests call ``tests.waiting.wait_for``)."""
        try:
            wait_for(lambda: predicate(self.requests), timeout, condition=self._cond)
        except AssertionError:
            return False
        return True

    def wait_for_requests(self, count: int, timeout: float = 10.0) -> list[RecordedRequest]:
        if not self.wait_for(lambda reqs: len(reqs) >= count, timeout):
            raise AssertionError(f"{type(self).__name__}: {len(self.requests)} request(s), expected {count}")
        return self.received()

    # ------------------------------------------------------------ serving

    def handle(self, request: RecordedRequest) -> Optional[Reply]:
        raise NotImplementedError

    def failure(self, mode: str, request: RecordedRequest) -> Optional[Reply]:
        raise NotImplementedError

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        arrival = getattr(handler, "arrival_ns", 0) or time.monotonic_ns()
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        parts = urlsplit(handler.path)
        request = RecordedRequest(
            method=handler.command, path=parts.path,
            query={k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()},
            headers={k: v for k, v in handler.headers.items()}, body=body, arrival_ns=arrival,
        )
        with self._cond:
            self.requests.append(request)
            count = len(self.requests)
            mode, custom, delay = self._mode, self._custom, self._delay
            self._cond.notify_all()
        if self._hold_after is not None and count > self._hold_after:
            self._released.wait(HOLD_LIMIT)
        if delay:
            self._released.wait(min(delay, HOLD_LIMIT))  # the service's own slowness (stop() ends it)
        if mode == "reset":
            # SO_LINGER with a zero timeout: close() sends RST instead of FIN.
            # (Closed here, before http.server's own shutdown could send a FIN first.)
            handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            handler.connection.close()
            handler.close_connection = True
            return
        if mode == "custom":
            reply: Optional[Reply] = custom
        elif mode is not None:
            reply = DROP if mode == "down" else self.failure(mode, request)
        else:
            with self._cond:  # fakes keep state (rate windows): one request at a time
                reply = self.handle(request)
        if reply is DROP:
            handler.close_connection = True
            return
        with self._cond:  # a waiter on the answer (``pushes``) is woken by it, not by the next request
            request.status, request.answer = reply.status, reply.body
            self._cond.notify_all()
        try:
            handler.send_response(reply.status)
            for key, value in reply.headers.items():
                handler.send_header(key, value)
            handler.send_header("Content-Length", str(len(reply.body)))
            handler.end_headers()
            handler.wfile.write(reply.body)
        except OSError:
            pass  # the client went away (killed mid-request): nothing to answer

