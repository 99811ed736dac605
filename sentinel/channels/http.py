"""The one place that talks to the network.

Every channel posts through ``post_json``: it always has a timeout, never
follows a redirect (a webhook that moved should be reconfigured, and a
redirect could carry a token to another host), reads a bounded amount of the
answer within a total deadline, and turns anything that went wrong on the way
into a ``DeliveryError`` whose message has the secrets masked. Classifying what the service *said* is
the channel's job; ``raise_for_status`` covers the HTTP rules they share.
"""

from __future__ import annotations

import email.utils
import io
import json
import logging
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Optional, Tuple, Union

import sentinel
from sentinel.channels.base import DeliveryError
from sentinel.redact import RedactingFilter, redact

# (connect, read) seconds. An alert that cannot be handed over in this time
# is retried later rather than blocking the channel's queue.
DEFAULT_TIMEOUT = (5.0, 15.0)
# The whole request, from sending to the answer's last byte: a read timeout
# alone bounds each read, and a server answering a byte a second would hold
# the channel's queue for as long as it likes.
DEFAULT_DEADLINE = 30.0
MAX_ANSWER_BYTES = 64 * 1024
USER_AGENT = f"run-sentinel/{getattr(sentinel, '__version__', '0')}"

# Retry-After larger than this is not believed (a day is already generous).
MAX_RETRY_AFTER = 24 * 3600.0


@dataclass
class Answer:
    """What a service said, enough to classify it."""

    status: int
    text: str
    headers: Mapping[str, str] = field(default_factory=dict)

    def json(self) -> Optional[Any]:
        try:
            return json.loads(self.text)
        except ValueError:
            return None

    def brief(self, limit: int = 200) -> str:
        text = " ".join(self.text.split())
        return text if len(text) <= limit else text[: limit - 1] + "…"


def post_json(
    url: str,
    payload: Any,
    *,
    secrets: Iterable[Optional[str]] = (),
    timeout: Union[Tuple[float, float], float] = DEFAULT_TIMEOUT,
    deadline: float = DEFAULT_DEADLINE,
    what: str = "request",
) -> Answer:
    """POST ``payload`` as UTF-8 JSON to ``url``; return the answer, all of
    it within ``deadline`` seconds.

    Raises a transient DeliveryError for connection errors, timeouts, a
    missed deadline and anything else that kept an answer from arriving.
    """
    import requests  # daemon-side dependency; importing channels stays cheap
    import urllib3

    if not timeout:
        raise ValueError("a timeout is mandatory")
    secrets = list(secrets)
    body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT}
    session = _session()
    _local.deadline = time.monotonic() + deadline
    try:
        with session.post(
            url, data=body, headers=headers, timeout=timeout, allow_redirects=False, stream=True
        ) as response:
            _local.status = response.status_code
            raw = response.raw.read(MAX_ANSWER_BYTES, decode_content=True) or b""
            text = raw.decode(response.encoding or "utf-8", "replace")
            return Answer(response.status_code, text, dict(response.headers))
    except (requests.exceptions.Timeout, urllib3.exceptions.TimeoutError):
        # (urllib3's own errors come from reading the body through ``raw``.)
        if time.monotonic() >= _local.deadline:
            raise DeliveryError(f"{what} timed out (no complete answer within {deadline:g} s)") from None
        raise DeliveryError(f"{what} timed out (no answer within {_seconds(timeout)})") from None
    except requests.exceptions.ConnectionError as exc:
        if time.monotonic() >= _local.deadline:  # urllib3 reports some read timeouts this way
            raise DeliveryError(f"{what} timed out (no complete answer within {deadline:g} s)") from None
        raise DeliveryError(f"{what} failed to connect: {redact(_root_cause(exc), secrets)}") from None
    except requests.exceptions.InvalidURL as exc:
        raise DeliveryError(f"{what} URL is invalid: {redact(exc, secrets)}", permanent=True) from None
    except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError) as exc:
        raise DeliveryError(f"{what} failed: {redact(_root_cause(exc), secrets)}") from None
    finally:
        _local.deadline = None


_local = threading.local()


def forget_status() -> None:
    """Start a delivery: ``last_status`` is None until this thread's next answer."""
    _local.status = None


def last_status() -> Optional[int]:
    """The HTTP status of this thread's last answer since ``forget_status`` (None: none came)."""
    return getattr(_local, "status", None)


def warm_up() -> None:
    """Import the HTTP stack now (~60 ms) rather than inside the first alert.
    The daemon calls this at start; the in-process fallback never does."""
    import requests  # noqa: F401
    from urllib3.util import retry  # noqa: F401


def _session() -> Any:
    """This thread's HTTP session: kept connections save a handshake per alert.

    One per thread (each delivery worker has its own): a requests Session
    is not meant to be shared across threads. A kept connection the server
    has closed is detected before reuse; a connect failure is retried once
    at once (the request was never sent, so a POST cannot be duplicated).
    """
    session = getattr(_local, "session", None)
    if session is None:
        import requests
        from urllib3.util.retry import Retry

        _mask_urllib3_log()
        session = requests.Session()
        session.trust_env = True
        adapter = _deadline_adapter()(
            max_retries=Retry(total=1, connect=1, read=0, redirect=0, status=0, other=0,
                              allowed_methods=None, raise_on_status=False)
        )
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        _local.session = session
    return session


# ---------------------------------------------------------------- the deadline
#
# Every socket the session connects is wrapped so that each read and write
# waits no longer than what is left of this thread's request deadline (and
# no longer than the timeout urllib3 asked for): the deadline holds for the
# status line, the headers and the body alike, without a thread per request.


def _remaining() -> Optional[float]:
    deadline = getattr(_local, "deadline", None)
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise socket.timeout("request deadline passed")
    return left


class _DeadlineSocket:
    """A connected (possibly TLS) socket whose every wait is cut to the deadline."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._timeout = sock.gettimeout()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)

    def settimeout(self, value: Optional[float]) -> None:
        self._timeout = value
        self._sock.settimeout(value)

    def gettimeout(self) -> Optional[float]:
        return self._timeout

    def _arm(self) -> None:
        left = _remaining()
        if left is not None:
            self._sock.settimeout(left if self._timeout is None else min(left, self._timeout))

    def sendall(self, data: Any, *args: Any) -> None:
        self._arm()
        self._sock.sendall(data, *args)

    def send(self, data: Any, *args: Any) -> int:
        self._arm()
        return self._sock.send(data, *args)

    def recv_into(self, buffer: Any, *args: Any) -> int:
        self._arm()
        return self._sock.recv_into(buffer, *args)

    def recv(self, size: int, *args: Any) -> bytes:
        self._arm()
        return self._sock.recv(size, *args)

    def makefile(self, mode: str = "r", buffering: Optional[int] = None, **_: Any) -> Any:
        if mode not in ("rb", "r"):
            return self._sock.makefile(mode, buffering)
        # http.client reads the answer through this: every refill is a
        # recv_into above. As socket.makefile does, the file holds a reference
        # so that closing the connection leaves the fd open until it is closed.
        self._sock._io_refs += 1
        raw = socket.SocketIO(self, "rb")  # type: ignore[arg-type]
        return io.BufferedReader(raw, buffering or io.DEFAULT_BUFFER_SIZE)


_ADAPTER: Optional[type] = None


def _deadline_adapter() -> type:
    """A requests HTTPAdapter whose connections wrap their sockets (made once)."""
    global _ADAPTER
    if _ADAPTER is not None:
        return _ADAPTER
    import requests
    from urllib3 import connection, connectionpool

    class HTTPConnection(connection.HTTPConnection):
        def connect(self) -> None:
            super().connect()
            self.sock = _DeadlineSocket(self.sock)  # type: ignore[assignment]

    class HTTPSConnection(connection.HTTPSConnection):
        def connect(self) -> None:
            super().connect()
            self.sock = _DeadlineSocket(self.sock)  # type: ignore[assignment]

    class HTTPConnectionPool(connectionpool.HTTPConnectionPool):
        ConnectionCls = HTTPConnection

    class HTTPSConnectionPool(connectionpool.HTTPSConnectionPool):
        ConnectionCls = HTTPSConnection

    pools = {"http": HTTPConnectionPool, "https": HTTPSConnectionPool}

    class DeadlineAdapter(requests.adapters.HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = pools

        def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
            manager = super().proxy_manager_for(proxy, **kwargs)
            manager.pool_classes_by_scheme = pools
            return manager

    _ADAPTER = DeadlineAdapter
    return _ADAPTER


def _mask_urllib3_log() -> None:
    """urllib3 logs request lines (with webhook paths and tokens) at debug
    level: mask them at the source, whatever handlers are configured."""
    logger = logging.getLogger("urllib3.connectionpool")
    if not any(isinstance(f, RedactingFilter) for f in logger.filters):
        logger.addFilter(RedactingFilter())


def raise_for_status(answer: Answer, *, what: str, secrets: Iterable[Optional[str]] = (),
                     now: Optional[float] = None) -> None:
    """The HTTP rules every webhook shares: 2xx passes; 429 and 5xx are
    transient (honouring Retry-After); a redirect and other 4xx are permanent."""
    status = answer.status
    if 200 <= status < 300:
        return
    brief = redact(answer.brief(), secrets)
    if status == 429 or status >= 500:
        raise DeliveryError(
            f"{what} answered HTTP {status}: {brief}",
            retry_after=parse_retry_after(answer.headers.get("Retry-After"), now),
        )
    if 300 <= status < 400:
        location = redact(answer.headers.get("Location", "?"), secrets)
        raise DeliveryError(f"{what} redirected (HTTP {status}) to {location}; configure that URL",
                            permanent=True)
    raise DeliveryError(f"{what} refused the request: HTTP {status}: {brief}", permanent=True)


def parse_retry_after(value: Optional[str], now: Optional[float] = None) -> Optional[float]:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER)


def _root_cause(exc: BaseException) -> str:
    """The innermost reason ("Connection refused"), not urllib3's nested repr."""
    seen = exc
    while seen.__context__ is not None or seen.__cause__ is not None:
        seen = seen.__cause__ or seen.__context__  # type: ignore[assignment]
    reason = str(seen) or seen.__class__.__name__
    # urllib3 messages put the reason last: "...: Failed to establish a new connection: [Errno 111] ..."
    for marker in ("[Errno", "Read timed out", "Connection aborted", "RemoteDisconnected"):
        index = reason.find(marker)
        if index >= 0:
            return reason[index:].rstrip(")'\"")
    return reason


def _seconds(timeout: Union[Tuple[float, float], float]) -> str:
    total = sum(timeout) if isinstance(timeout, tuple) else timeout
    return f"{total:g} s"
