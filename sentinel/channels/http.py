"""The one place that talks to the network.

Every channel posts through ``post_json``: it always has a timeout, never
follows a redirect (a webhook that moved should be reconfigured, and a
redirect could carry a token to another host), reads a bounded amount of the
answer, and turns anything that went wrong on the way into a ``DeliveryError``
whose message has the secrets masked. Classifying what the service *said* is
the channel's job; ``raise_for_status`` covers the HTTP rules they share.
"""

from __future__ import annotations

import email.utils
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Optional, Tuple, Union

import sentinel
from sentinel.channels.base import DeliveryError
from sentinel.redact import RedactingFilter, redact

log = logging.getLogger("sentinel.http")

# (connect, read) seconds. An alert that cannot be handed over in this time
# is retried later rather than blocking the channel's queue.
DEFAULT_TIMEOUT = (5.0, 15.0)
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
    what: str = "request",
) -> Answer:
    """POST ``payload`` as UTF-8 JSON to ``url``; return the answer.

    Raises a transient DeliveryError for connection errors, timeouts and
    anything else that kept an answer from arriving.
    """
    import requests  # daemon-side dependency; importing channels stays cheap

    if not timeout:
        raise ValueError("a timeout is mandatory")
    secrets = list(secrets)
    body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT}
    try:
        with _session().post(
            url, data=body, headers=headers, timeout=timeout, allow_redirects=False, stream=True
        ) as response:
            raw = response.raw.read(MAX_ANSWER_BYTES, decode_content=True) or b""
            text = raw.decode(response.encoding or "utf-8", "replace")
            return Answer(response.status_code, text, dict(response.headers))
    except requests.exceptions.Timeout:
        raise DeliveryError(f"{what} timed out (no answer within {_seconds(timeout)})") from None
    except requests.exceptions.ConnectionError as exc:
        raise DeliveryError(f"{what} failed to connect: {redact(_root_cause(exc), secrets)}") from None
    except requests.exceptions.InvalidURL as exc:
        raise DeliveryError(f"{what} URL is invalid: {redact(exc, secrets)}", permanent=True) from None
    except requests.exceptions.RequestException as exc:
        raise DeliveryError(f"{what} failed: {redact(_root_cause(exc), secrets)}") from None


_local = threading.local()


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
        class OneLineRetry(Retry):  # type: ignore[misc, valid-type]
            """Says in our words, in one line, that the connect is retried."""

            def increment(self, method: Any = None, url: Any = None, *args: Any, **kwargs: Any) -> Any:
                error = kwargs.get("error") or (args[1] if len(args) > 1 else None)
                pool = kwargs.get("_pool") or (args[2] if len(args) > 2 else None)
                host = getattr(pool, "host", None) or "the server"
                log.info("connecting to %s failed (%s); trying once more", host,
                         _root_cause(error) if error is not None else "no answer")
                return super().increment(method, url, *args, **kwargs)

        adapter = requests.adapters.HTTPAdapter(
            max_retries=OneLineRetry(total=1, connect=1, read=0, redirect=0, status=0, other=0,
                                     allowed_methods=None, raise_on_status=False)
        )
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        _local.session = session
    return session


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
