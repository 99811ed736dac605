"""ntfy (ntfy.sh or self-hosted): ``POST <topic URL>``, the message as the body.

``url`` is the topic URL (``https://ntfy.sh/mytopic``; the topic is
effectively a password, so it is treated as a secret). ``Title``,
``Priority``, ``Tags`` (an emoji per alert kind) and ``Click`` (the run's
SwanLab page) travel as headers; a header with non-ASCII text (every title
has an emoji) is RFC 2047 encoded, which ntfy >= 2.4 decodes. ``token``
sends ``Authorization: Bearer``.

The message may be 4,096 bytes (longer becomes a file attachment): a long
traceback is cut from its start. ntfy limits each visitor to a burst of 60
requests refilled one every 5 seconds; we send at most one a second and 12
a minute (the refill rate: the bucket never runs dry) and merge a backlog
into digests. 429 is retried; 401/403 (token, topic
reserved) and 413 are permanent.
"""

from __future__ import annotations

import email.header
from typing import Any, ClassVar, Mapping, Optional, Sequence, Tuple, Union

from sentinel.channels import http
from sentinel.channels.base import Channel, DeliveryError, register
from sentinel.channels.fit import cut, utf8_len
from sentinel.channels.options import check_language, check_str, check_url, unknown_keys
from sentinel.channels.plain import digest_title, plain_digest, plain_digest_fit, plain_text
from sentinel.common.redact import redact
from sentinel.common.safetext import printable
from sentinel.model.alerts import ALERT_STATES, Alert, AlertKind
from sentinel.model.endings import Urgency
from sentinel.model.render import title as alert_title

MAX_MESSAGE_BYTES = 4096
_BUDGET = 4000
PRIORITY_NAMES = {"min": 1, "low": 2, "default": 3, "high": 4, "max": 5, "urgent": 5}
# Each ending's urgency (sentinel.model.endings) as an ntfy priority: high, default, low.
URGENCY_PRIORITIES = {Urgency.HIGH: 4, Urgency.NORMAL: 3, Urgency.LOW: 2}
_PRIORITY_KEYS = set(ALERT_STATES) | {"message", "test"}
RATE_LIMIT = (12, 60.0)  # a bucket of 60 refilled 1 per 5 s never runs dry at this rate


def header_value(text: str) -> str:
    """ASCII as it is; anything else RFC 2047 encoded (HTTP headers are Latin-1)."""
    # No CR/LF (a header cannot be split or injected), no escape sequence for
    # a terminal (the ntfy CLI prints what it receives).
    text = printable(" ".join(text.split()))
    if text.isascii():
        return text
    return email.header.Header(text, "utf-8", maxlinelen=10**6).encode()


def _priority(value: Any) -> Optional[int]:
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and 1 <= value <= 5:
        return value
    if isinstance(value, str):
        return PRIORITY_NAMES.get(value.lower()) or (
            int(value) if value in ("1", "2", "3", "4", "5") else None
        )
    return None


@register
class NtfyChannel(Channel):
    type_name: ClassVar[str] = "ntfy"
    max_message_bytes: ClassVar[Optional[int]] = MAX_MESSAGE_BYTES
    min_interval: ClassVar[float] = 1.0
    rate_limit: ClassVar[Optional[Tuple[int, float]]] = RATE_LIMIT
    supports_digest: ClassVar[bool] = True
    OPTIONS = ("url", "token", "priority", "language")

    def __init__(self, name: str, options: Mapping[str, Any], language: str = "en", **kwargs: Any) -> None:
        super().__init__(name, options, language, **kwargs)
        self.url: str = self.options["url"].rstrip("/")
        self.token: Optional[str] = self.options.get("token") or None

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> list[tuple[str, str]]:
        problems = unknown_keys(options, cls.OPTIONS)
        problems += check_url(options, "url", required=True)
        problems += check_str(options, "token")
        problems += check_language(options)
        url = options.get("url")
        if isinstance(url, str) and not problems:
            from urllib.parse import urlsplit

            path = urlsplit(url).path.strip("/")
            if not path or "/" in path:
                problems.append(("url", "must be a topic URL (https://ntfy.sh/<topic>)"))
        problems += _check_priority(options.get("priority"))
        return problems

    @classmethod
    def destination_hosts(cls, options: Mapping[str, Any]) -> Optional[list[str]]:
        return cls.hosts_of(options["url"])

    def secrets(self) -> list[str]:
        topic = self.url.rsplit("/", 1)[-1]
        return [v for v in (self.url, topic if len(topic) >= 8 else None, self.token) if v]

    def pace_key(self) -> str:
        # ntfy limits per visitor (this host) on one server.
        from urllib.parse import urlsplit

        return self.destination_key(urlsplit(self.url).netloc)

    def priority_for(self, kind: AlertKind) -> int:
        value: Union[None, str, int, Mapping[str, Any]] = self.options.get("priority")
        if value is not None and not isinstance(value, Mapping):  # one priority for every alert
            return _priority(value) or 3
        chosen = (value or {}).get(kind.value)
        if chosen is not None:
            return _priority(chosen) or 3
        return URGENCY_PRIORITIES[kind.ending.urgency]

    def request(self, alert: Alert) -> tuple[bytes, dict[str, str]]:
        """(body, headers) for one alert."""
        lang = self.language_for(alert)
        body = plain_text(alert, lang, _BUDGET, utf8_len) or printable(alert_title(alert, lang))
        headers = {
            "Title": header_value(cut(alert_title(alert, lang), 250)),
            "Priority": str(self.priority_for(alert.kind)),
            "Tags": alert.kind.ending.tag,
        }
        if alert.url and alert.url.isascii():
            headers["Click"] = header_value(alert.url)
        return body.encode("utf-8"), headers

    def digest_size(self, alerts: Sequence[Alert]) -> int:
        return plain_digest_fit(alerts, self.language_for(alerts[0]), _BUDGET, utf8_len)

    def send(self, alert: Alert) -> str:
        return self._post(*self.request(alert))

    def send_digest(self, alerts: Sequence[Alert]) -> str:
        lang = self.language_for(alerts[0])
        priority = max(self.priority_for(a.kind) for a in alerts)
        headers = {
            "Title": header_value(digest_title(alerts, lang)),
            "Priority": str(priority),
            "Tags": "bell",
        }
        return self._post(plain_digest(alerts, lang).encode("utf-8"), headers)

    def _post(self, body: bytes, headers: dict[str, str]) -> str:
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        answer = http.post(
            self.url, body, "text/plain; charset=utf-8", headers=headers, secrets=self.secrets(), what="ntfy"
        )
        return self.classify(answer)

    def classify(self, answer: http.Answer) -> str:
        data = answer.json()
        if 200 <= answer.status < 300:
            message_id = data.get("id") if isinstance(data, dict) else None
            return f"ntfy: {answer.status}" + (f" id {message_id}" if message_id else "")
        error = redact(
            str(data.get("error", "")) if isinstance(data, dict) else answer.brief(120), self.secrets()
        )
        if answer.status == 429:
            retry = http.parse_retry_after(answer.headers.get("Retry-After"))
            raise DeliveryError(f"ntfy: HTTP 429 {error}", retry_after=retry if retry is not None else 10.0)
        if answer.status >= 500:
            raise DeliveryError(f"ntfy: HTTP {answer.status} {error}")
        hint = {
            401: " — the token is wrong or expired",
            403: " — this topic needs a token (or another one)",
            413: " — the message is too large (please report this as a run-sentinel bug)",
        }.get(answer.status, "")
        if 300 <= answer.status < 400:
            http.raise_for_status(answer, what="ntfy", secrets=self.secrets())
        raise DeliveryError(f"ntfy: HTTP {answer.status} {error}{hint}", permanent=True)


def _check_priority(value: Any) -> list[tuple[str, str]]:
    names = "1-5 or min, low, default, high, max"
    if value is None:
        return []
    if isinstance(value, Mapping):
        problems = []
        for state, chosen in value.items():
            if state not in _PRIORITY_KEYS:
                problems.append(
                    (f"priority.{state}", f"unknown alert state (known: {', '.join(sorted(_PRIORITY_KEYS))})")
                )
            elif _priority(chosen) is None:
                problems.append((f"priority.{state}", f"must be {names}"))
        return problems
    return (
        []
        if _priority(value) is not None
        else [("priority", f"must be {names}, or a map of alert state to one")]
    )
