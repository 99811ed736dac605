"""The one HTTP client: a total deadline per request, whatever the server does."""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Iterator, Optional

import pytest

from sentinel.channels import http
from sentinel.channels.base import DeliveryError

ANSWER = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n"
          b'{"code": 200}')


class TrickleServer:
    """Answers every request correctly, but one byte a second (on 127.0.0.1)."""

    def __init__(self, skip_headers: bool = False) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.stop = threading.Event()
        self.sent = 0  # bytes of the answer written before the client went away
        self.done = threading.Event()
        # Headers at once and the body slowly, or all of it slowly.
        self.quick = ANSWER.index(b"\r\n\r\n") + 4 if skip_headers else 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/push"

    def _serve(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            conn.recv(65536)  # the request (small: one read)
            try:
                if self.quick:
                    conn.sendall(ANSWER[: self.quick])
                    self.sent = self.quick
                for index in range(self.quick, len(ANSWER)):
                    if self.stop.wait(1.0):  # the pace of the trickle, not a synchronisation
                        break
                    conn.sendall(ANSWER[index:index + 1])
                    self.sent = index + 1
            except OSError:
                pass
        self.done.set()

    def close(self) -> None:
        self.stop.set()
        self.sock.close()
        self.thread.join(30)


@pytest.fixture(params=[False, True], ids=["status-line", "body"])
def trickle(request: pytest.FixtureRequest) -> Iterator[TrickleServer]:
    server = TrickleServer(skip_headers=request.param)
    yield server
    server.close()


def test_a_server_answering_a_byte_a_second_misses_the_deadline(trickle: TrickleServer) -> None:
    # Each byte comes well within the read timeout: only the total deadline ends this.
    with pytest.raises(DeliveryError) as err:
        http.post_json(trickle.url, {"x": 1}, timeout=(5.0, 15.0), deadline=2.0, what="Bark")
    assert not err.value.permanent  # retried later, like any timeout
    assert "no complete answer within 2 s" in str(err.value)
    trickle.stop.set()
    assert trickle.done.wait(30)
    assert trickle.sent < len(ANSWER)  # the client gave up before the answer was complete


def test_a_quick_answer_is_read_whole() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(ANSWER)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        answer = http.post_json(f"http://127.0.0.1:{server.getsockname()[1]}/", {"x": 1}, deadline=30.0)
    finally:
        thread.join(30)
        server.close()
    assert (answer.status, answer.json()) == (200, {"code": 200})


class KeepAliveServer:
    """Answers HTTP/1.1 with keep-alive; records which connection each request came on."""

    def __init__(self, answer: bytes = ANSWER) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.answer = answer
        self.request_lines: list[tuple[int, bytes]] = []  # (connection number, request line)
        self.conn: Optional[socket.socket] = None  # the connection being served
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/push"

    def _serve(self) -> None:
        for number in range(4):  # bounded: the tests make at most a few connections
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conn = conn
            with conn, contextlib.suppress(OSError):  # the client may go away mid-answer
                self._serve_connection(number, conn)

    def _serve_connection(self, number: int, conn: socket.socket) -> None:
        with conn.makefile("rb") as reader:
            while True:
                line = reader.readline()
                if not line:
                    return
                length = 0
                while (header := reader.readline()) not in (b"\r\n", b""):
                    if header.lower().startswith(b"content-length:"):
                        length = int(header.split(b":", 1)[1])
                reader.read(length)
                self.request_lines.append((number, line))
                conn.sendall(self.answer)

    def close(self) -> None:
        # shutdown() ends a wait in accept() or for a next request; close() alone does not.
        for sock in (self.sock, self.conn):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(30)
        assert not self.thread.is_alive()


def test_a_connection_is_kept_for_the_next_request() -> None:
    server = KeepAliveServer()
    try:
        answers = [http.post_json(server.url, {"n": n}) for n in range(3)]
    finally:
        server.close()
    assert [a.json() for a in answers] == [{"code": 200}] * 3
    assert [number for number, _ in server.request_lines] == [0, 0, 0]  # one handshake for all three


def test_a_kept_destination_whose_pool_was_closed_is_reached_again() -> None:
    # The pool and request target of a URL are kept between requests; the pool may be closed meanwhile.
    server = KeepAliveServer()
    try:
        first = http.post_json(server.url + "?a=1&b=%20", {"n": 1})
        for pool, _ in http._pools()._targets.values():
            pool.close()  # as a pool manager does to the pools it lets go of
        http._pools()._direct.clear()
        second = http.post_json(server.url + "?a=1&b=%20", {"n": 2})
    finally:
        server.close()
    assert first.status == second.status == 200
    assert server.request_lines == [(0, b"POST /push?a=1&b=%20 HTTP/1.1\r\n"),
                                    (1, b"POST /push?a=1&b=%20 HTTP/1.1\r\n")]


def test_an_answer_cut_at_the_bound_is_not_reused_as_a_connection() -> None:
    big = b"x" * (http.MAX_ANSWER_BYTES + 100)
    server = KeepAliveServer(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
                             + str(len(big)).encode() + b"\r\n\r\n" + big)
    try:
        first = http.post_json(server.url, {"n": 1})
        second = http.post_json(server.url, {"n": 2})
    finally:
        server.close()
    assert len(first.text) == len(second.text) == http.MAX_ANSWER_BYTES
    # The rest of the first answer is never read as the second's: a new connection.
    assert [number for number, _ in server.request_lines] == [0, 1]


def test_the_environment_proxy_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    proxy = KeepAliveServer()
    target = "http://alerts.invalid/push"  # never resolved: only the proxy is contacted
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{proxy.sock.getsockname()[1]}")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.setattr(http, "_POOLS", None)  # pools read the environment when made
    try:
        answer = http.post_json(target, {"x": 1})
    finally:
        proxy.close()
        monkeypatch.setattr(http, "_POOLS", None)
    assert answer.status == 200
    assert [line for _, line in proxy.request_lines] == [b"POST http://alerts.invalid/push HTTP/1.1\r\n"]


def test_a_silent_server_is_reported_with_the_wait_that_ran_out() -> None:
    # Connected at once, then no answer: the read timeout ran out, and only it is named.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        url = f"http://127.0.0.1:{server.getsockname()[1]}/hook"
        with pytest.raises(DeliveryError) as err:
            http.post_json(url, {"x": 1}, timeout=(5.0, 0.3), deadline=10.0, what="Bark")
    assert "no answer within 0.3 s" in str(err.value)
