"""The one HTTP client: a total deadline per request, whatever the server does."""

from __future__ import annotations

import socket
import threading
from typing import Iterator

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
