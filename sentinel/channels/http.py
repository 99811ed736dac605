"""The one place that talks to the network.

Every channel posts through ``post_json`` (``post`` for other bodies): it
always has a timeout, never follows a redirect (a webhook that moved should
be reconfigured, and a redirect could carry a token to another host), reads
a bounded amount of the answer within a total deadline, and turns anything
that went wrong on the way into a ``DeliveryError`` whose message has the
secrets masked. Classifying what the service *said* is the channel's job;
``raise_for_status`` covers the HTTP rules they share.
"""

from __future__ import annotations

import codecs
import email.utils
import io
import json
import logging
import os
import socket
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Optional, Tuple, Union
from urllib.parse import urlsplit

import sentinel
from sentinel.channels.base import DeliveryError
from sentinel.common.redact import RedactingFilter, redact

log = logging.getLogger("sentinel.http")

# (connect, read) seconds. An alert that cannot be handed over in this time
# is retried later rather than blocking the channel's queue.
DEFAULT_TIMEOUT = (5.0, 15.0)
# The whole request, from sending to the answer's last byte: a read timeout
# alone bounds each read, and a server answering a byte a second would hold
# the channel's queue for as long as it likes.
DEFAULT_DEADLINE = 30.0
MAX_ANSWER_BYTES = 64 * 1024
USER_AGENT = f"run-sentinel/{getattr(sentinel, '__version__', '0')}"

# Connection pools kept (one per host and port, each keeping up to 4 idle
# connections), and destinations whose pool and request target are remembered:
# a run's inline webhook adds one of each.
KEPT_POOLS = 16

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
    headers: Optional[Mapping[str, str]] = None,
) -> Answer:
    """POST ``payload`` as UTF-8 JSON to ``url``; return the answer, all of
    it within ``deadline`` seconds.

    Raises a transient DeliveryError for connection errors, timeouts, a
    missed deadline and anything else that kept an answer from arriving.
    """
    body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    return post(url, body, "application/json; charset=utf-8", secrets=secrets, timeout=timeout,
                deadline=deadline, what=what, headers=headers)


def post(
    url: str,
    body: bytes,
    content_type: str,
    *,
    secrets: Iterable[Optional[str]] = (),
    timeout: Union[Tuple[float, float], float] = DEFAULT_TIMEOUT,
    deadline: float = DEFAULT_DEADLINE,
    what: str = "request",
    headers: Optional[Mapping[str, str]] = None,
) -> Answer:
    """POST ``body`` (already encoded, of ``content_type``) with extra
    ``headers``; otherwise as ``post_json``."""
    import urllib3  # daemon-side dependency; importing channels stays cheap

    if not timeout:
        raise ValueError("a timeout is mandatory")
    secrets = list(secrets)
    sent = {"Content-Type": content_type, "User-Agent": USER_AGENT, **(headers or {})}
    connect, read = timeout if isinstance(timeout, tuple) else (timeout, timeout)
    _local.deadline = time.monotonic() + deadline
    try:
        response = _pools().urlopen(url, body=body, headers=sent, timeout=_timeout(connect, read),
                                    retries=_retry())
        try:
            _local.status = response.status
            raw = response.read(MAX_ANSWER_BYTES, decode_content=True) or b""
        finally:
            _release(response)
        text = raw.decode(_charset(response.headers.get("Content-Type")), "replace")
        return Answer(response.status, text, dict(response.headers))
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise _failure(exc, what, timeout, deadline, secrets) from None
    finally:
        _local.deadline = None


_local = threading.local()

# Set whenever a request has been written in full and its answer is awaited (the
# first read of an answer), by whichever thread: ``Delivery.wake`` waits on it.
REQUEST_WRITTEN = threading.Event()


def _failure(exc: BaseException, what: str, timeout: Union[Tuple[float, float], float], deadline: float,
             secrets: list[Optional[str]]) -> DeliveryError:
    """What went wrong on the way, as a DeliveryError (transient unless the URL is unusable)."""
    import urllib3

    reason = exc.reason if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason else exc
    # (urllib3 reports some read timeouts as a broken connection: the deadline tells.)
    if time.monotonic() >= _local.deadline:
        return DeliveryError(f"{what} timed out (no complete answer within {deadline:g} s)")
    # Before the timeouts: urllib3's NewConnectionError is (for history) a ConnectTimeoutError.
    if isinstance(reason, urllib3.exceptions.NewConnectionError):
        return DeliveryError(f"{what} failed to connect: {redact(_root_cause(exc), secrets)}")
    if isinstance(reason, (urllib3.exceptions.TimeoutError, socket.timeout)):
        # The wait that ran out: connecting, or the answer once connected (not their sum).
        connecting = isinstance(reason, urllib3.exceptions.ConnectTimeoutError)
        return DeliveryError(f"{what} timed out (no {'connection' if connecting else 'answer'} within "
                             f"{_seconds(timeout, connecting)})")
    if isinstance(reason, urllib3.exceptions.LocationValueError):
        return DeliveryError(f"{what} URL is invalid: {redact(reason, secrets)}", permanent=True)
    if isinstance(reason, (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ProtocolError,
                           urllib3.exceptions.SSLError, urllib3.exceptions.ProxyError, OSError)):
        return DeliveryError(f"{what} failed to connect: {redact(_root_cause(exc), secrets)}")
    return DeliveryError(f"{what} failed: {redact(_root_cause(exc), secrets)}")


def _release(response: Any) -> None:
    """Keep the connection for the next request if the answer was read to its
    end; an answer cut at ``MAX_ANSWER_BYTES`` (or by an error) closes it."""
    if not response.isclosed():
        response.close()
    response.release_conn()


def _charset(content_type: Optional[str]) -> str:
    """The answer's declared charset if Python knows it, else UTF-8."""
    for param in (content_type or "").split(";")[1:]:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset":
            name = value.strip().strip('"')
            try:
                return codecs.lookup(name).name
            except LookupError:
                break
    return "utf-8"


_RETRY: Any = None
_TIMEOUTS: dict[tuple[float, float], Any] = {}


def _retry() -> Any:
    """A connect failure is retried once at once (the request was never sent,
    so a POST cannot be duplicated); nothing else is. The retry is logged in
    one line of ours (urllib3's own warning is filtered: ``_NoRetryLines``).
    One object serves every request: urllib3 never changes a Retry, its
    ``increment`` returns a new one."""
    global _RETRY
    if _RETRY is None:
        _RETRY = _one_line_retry()(total=1, connect=1, read=0, redirect=0, status=0, other=0,
                                   allowed_methods=None, raise_on_status=False, raise_on_redirect=False)
    return _RETRY


def _timeout(connect: float, read: float) -> Any:
    """urllib3's Timeout for (connect, read), made once per pair (urllib3 clones it per request)."""
    timeout = _TIMEOUTS.get((connect, read))
    if timeout is None:
        import urllib3

        timeout = _TIMEOUTS.setdefault((connect, read), urllib3.Timeout(connect=connect, read=read))
    return timeout


_ONE_LINE_RETRY: Any = None


def _one_line_retry() -> Any:
    global _ONE_LINE_RETRY
    if _ONE_LINE_RETRY is None:
        from urllib3.util.retry import Retry

        class OneLineRetry(Retry):  # type: ignore[misc, valid-type]
            """Says in our words, in one line, that the connect is retried."""

            def increment(self, method: Any = None, url: Any = None, *args: Any, **kwargs: Any) -> Any:
                error = kwargs.get("error") or (args[1] if len(args) > 1 else None)
                pool = kwargs.get("_pool") or (args[2] if len(args) > 2 else None)
                host = getattr(pool, "host", None) or "the server"
                retry = super().increment(method, url, *args, **kwargs)  # raises once used up
                log.info("connecting to %s failed (%s); trying once more", host,
                         _root_cause(error) if error is not None else "no answer")
                return retry

        _ONE_LINE_RETRY = OneLineRetry
    return _ONE_LINE_RETRY


def forget_status() -> None:
    """Start a delivery: ``last_status`` is None until this thread's next answer."""
    _local.status = None


def last_status() -> Optional[int]:
    """The HTTP status of this thread's last answer since ``forget_status`` (None: none came)."""
    return getattr(_local, "status", None)


def warm_up() -> None:
    """Import the HTTP stack and make the connection pools now (~60 ms)
    rather than inside the first alert. The daemon calls this at start; the
    in-process fallback never does."""
    _pools()


# ---------------------------------------------------------------- connections


class _Pools:
    """Kept connections per destination, straight on urllib3 (thread-safe).

    Kept connections save a handshake per alert; one the server has closed
    is detected before reuse. A proxy from the environment (``https_proxy``,
    ``no_proxy``...) is honoured, TLS certificates are verified against
    ``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE`` if set, else certifi's bundle
    (else the system's), as ``requests`` did.
    """

    def __init__(self) -> None:
        import urllib3

        _mask_urllib3_log()
        self._tls = _tls_options()
        self._direct = self._adopt(urllib3.PoolManager(num_pools=KEPT_POOLS, maxsize=4, **self._tls))
        # Read once: scanning the environment costs more than the rest of a request.
        self._proxies = urllib.request.getproxies_environment()
        self._proxied: dict[str, Any] = {}
        self._lock = threading.Lock()
        # url -> (its connection pool, the request target): what PoolManager.urlopen
        # works out on every request (parsing the URL, keying the pool), about a
        # quarter of the way to an alert's first byte. Direct destinations only.
        # (A pool the manager dropped since goes on serving its URL: at most
        # KEPT_POOLS more are alive.)
        self._targets: dict[str, tuple[Any, str]] = {}

    def urlopen(self, url: str, **kw: Any) -> Any:
        """POST ``url`` (no redirect followed, the answer not preloaded)."""
        kw.update(redirect=False, preload_content=False)
        manager = self.for_url(url)
        if manager is not self._direct:
            return manager.urlopen("POST", url, **kw)
        from urllib3.exceptions import ClosedPoolError

        for _attempt in range(2):
            pool, target = self._target(url)
            try:
                return pool.urlopen("POST", target, assert_same_host=False, **kw)
            except ClosedPoolError:  # closed since (nothing was sent): look again
                with self._lock:
                    self._targets.pop(url, None)
        return self._direct.urlopen("POST", url, **kw)

    def _target(self, url: str) -> tuple[Any, str]:
        found = self._targets.get(url)
        if found is not None and found[0].pool is not None:  # a closed pool's queue is None
            return found
        from urllib3.util import parse_url

        pool = self._direct.connection_from_url(url)
        found = (pool, parse_url(url).request_uri)
        with self._lock:
            if len(self._targets) >= KEPT_POOLS:
                self._targets.clear()
            self._targets[url] = found
        return found

    def for_url(self, url: str) -> Any:
        proxy = _proxy_for(url, self._proxies) if self._proxies else None
        if proxy is None:
            return self._direct
        import urllib3

        with self._lock:
            manager = self._proxied.get(proxy)
            if manager is None:
                manager = self._adopt(urllib3.ProxyManager(proxy, num_pools=KEPT_POOLS, maxsize=4,
                                                           **self._tls))
                self._proxied[proxy] = manager
            return manager

    @staticmethod
    def _adopt(manager: Any) -> Any:
        manager.pool_classes_by_scheme = _deadline_pools()
        return manager


_POOLS: Optional[_Pools] = None
_POOLS_LOCK = threading.Lock()


def _pools() -> _Pools:
    global _POOLS
    if _POOLS is None:
        with _POOLS_LOCK:
            if _POOLS is None:
                _POOLS = _Pools()
    return _POOLS


def _tls_options() -> dict[str, Any]:
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if not bundle:
        try:
            import certifi
        except ImportError:
            return {"cert_reqs": "CERT_REQUIRED"}  # the system's certificates
        bundle = certifi.where()
    if os.path.isdir(bundle):
        return {"cert_reqs": "CERT_REQUIRED", "ca_cert_dir": bundle}
    return {"cert_reqs": "CERT_REQUIRED", "ca_certs": bundle}


def _proxy_for(url: str, proxies: Mapping[str, str]) -> Optional[str]:
    """The proxy of ``proxies`` (the environment's) for ``url`` (None: connect directly)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if urllib.request.proxy_bypass(host):
        return None
    proxy = proxies.get(parts.scheme.lower()) or proxies.get("all")
    if proxy and "://" not in proxy:
        proxy = "http://" + proxy
    return proxy or None


# ---------------------------------------------------------------- the deadline
#
# Every socket the pools connect is wrapped so that each read and write
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
        self._armed = self._timeout  # what the socket is set to now

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)

    def settimeout(self, value: Optional[float]) -> None:
        self._timeout = value
        self._set(value)

    def gettimeout(self) -> Optional[float]:
        return self._timeout

    def _arm(self) -> None:
        left = _remaining()
        if left is not None:
            self._set(left if self._timeout is None else min(left, self._timeout))

    def _set(self, value: Optional[float]) -> None:
        # A socket's settimeout is a syscall (it sets O_NONBLOCK again) however
        # little changed; while the deadline is further off than the timeout,
        # nothing did.
        if value != self._armed:
            self._sock.settimeout(value)
            self._armed = value

    def sendall(self, data: Any, *args: Any) -> None:
        self._arm()
        self._sock.sendall(data, *args)

    def send(self, data: Any, *args: Any) -> int:
        self._arm()
        return self._sock.send(data, *args)

    def recv_into(self, buffer: Any, *args: Any) -> int:
        REQUEST_WRITTEN.set()
        self._arm()
        return self._sock.recv_into(buffer, *args)

    def recv(self, size: int, *args: Any) -> bytes:
        REQUEST_WRITTEN.set()
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


_DEADLINE_POOLS: Optional[dict[str, type]] = None


def _deadline_pools() -> dict[str, type]:
    """urllib3 pool classes whose connections wrap their sockets (made once)."""
    global _DEADLINE_POOLS
    if _DEADLINE_POOLS is not None:
        return _DEADLINE_POOLS
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

    _DEADLINE_POOLS = {"http": HTTPConnectionPool, "https": HTTPSConnectionPool}
    return _DEADLINE_POOLS


def _mask_urllib3_log() -> None:
    """urllib3 logs request lines (with webhook paths and tokens) at debug
    level: mask them at the source, whatever handlers are configured."""
    logger = logging.getLogger("urllib3.connectionpool")
    if not any(isinstance(f, RedactingFilter) for f in logger.filters):
        logger.addFilter(RedactingFilter())
    if not any(isinstance(f, _NoRetryLines) for f in logger.filters):
        logger.addFilter(_NoRetryLines())


class _NoRetryLines(logging.Filter):
    """urllib3's "Retrying (Retry(total=0, ...)) after connection broken by ..."
    warning is noise for a user: the retry says so in one line of its own."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Retrying (")


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


def _caused_by(exc: BaseException, kind: type) -> bool:
    """Whether ``kind`` is in ``exc``'s chain (causes, contexts, a MaxRetryError's reason)."""
    seen: list[BaseException] = []
    todo: list[Any] = [exc]
    while todo and len(seen) < 32:
        item = todo.pop()
        if not isinstance(item, BaseException) or any(item is s for s in seen):
            continue
        if isinstance(item, kind):
            return True
        seen.append(item)
        todo.extend([item.__cause__, item.__context__, getattr(item, "reason", None), *item.args])
    return False


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


def _seconds(timeout: Union[Tuple[float, float], float], connecting: bool = False) -> str:
    """The timeout that ran out: (connect, read) or one for both."""
    if isinstance(timeout, tuple):
        timeout = timeout[0] if connecting else timeout[1]
    return f"{timeout:g} s"
