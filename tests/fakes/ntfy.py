"""A fake ntfy server (ntfy.sh or self-hosted): ``POST /<topic>``, the message as the body.

As ntfy's ``docs/publish.md`` describes it:

- headers ``X-Title``/``Title``/``t``, ``X-Priority``/``Priority``/``p``
  (1-5 or min/low/default/high/max/urgent), ``X-Tags``/``Tags``/``ta``,
  ``X-Click``, ``X-Markdown``; a header with non-ASCII text must come RFC
  2047 encoded (``=?UTF-8?B?...?=``, ntfy >= 2.4 decodes it) — HTTP
  headers are Latin-1, and a client that sends raw UTF-8 garbles them;
- with ``token`` set, ``Authorization: Bearer <token>`` is required: a
  missing one is 403 (40301), a wrong one 401 (40101);
- a body over 4,096 bytes would become an attachment: this fake refuses it
  with 413 (41301) — an alert must arrive as a notification, not a file;
- visitor request limit: a bucket of ``burst`` (60) requests refilled one
  every ``replenish`` (5) seconds; past it 429 (42901, ``limit reached:
  too many requests``).
Errors are ntfy's JSON ``{"code", "http", "error", "link"}``.
"""

from __future__ import annotations

import email.header
import re
import secrets
import time
from typing import Any, Optional

from tests.fakes.server import FakeService, RecordedRequest, Reply

MAX_MESSAGE_BYTES = 4096
PRIORITIES = {
    "1": 1,
    "min": 1,
    "2": 2,
    "low": 2,
    "3": 3,
    "default": 3,
    "4": 4,
    "high": 4,
    "5": 5,
    "max": 5,
    "urgent": 5,
}


def _error(status: int, code: int, error: str) -> Reply:
    return Reply.json(status, {"code": code, "http": status, "error": error, "link": "https://ntfy.sh/docs/"})


def _header(request: RecordedRequest, *names: str) -> Optional[str]:
    lowered = {k.lower(): v for k, v in request.headers.items()}
    for name in names:
        value = lowered.get(name.lower())
        if value is not None:
            return value
    return None


def decode_header(value: str) -> Optional[str]:
    """The text of a header as ntfy reads it; None if it is raw non-ASCII (garbled)."""
    if any(ord(ch) > 127 for ch in value):
        return None
    if "=?" not in value:
        return value
    return str(email.header.make_header(email.header.decode_header(value)))


class FakeNtfy(FakeService):
    def __init__(
        self, *, topic: str = "", token: Optional[str] = None, burst: int = 60, replenish: float = 5.0
    ) -> None:
        super().__init__()
        self.topic = topic or "sentinel-" + secrets.token_hex(8)
        self.token = token
        self.burst = burst
        self.replenish = replenish
        self._tokens = float(burst)
        self._refilled = time.monotonic()
        self.notifications: list[dict[str, Any]] = []

    @property
    def topic_url(self) -> str:
        return f"{self.url}/{self.topic}"

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.notifications)

    def handle(self, request: RecordedRequest) -> Reply:
        if request.method not in ("POST", "PUT") or not re.fullmatch(r"/[-_A-Za-z0-9]{1,64}", request.path):
            return _error(404, 40401, "page not found")
        now = time.monotonic()
        self._tokens = min(float(self.burst), self._tokens + (now - self._refilled) / self.replenish)
        self._refilled = now
        if self._tokens < 1.0:
            return _error(429, 42901, "limit reached: too many requests")
        self._tokens -= 1.0
        if self.token is not None:
            auth = _header(request, "Authorization")
            if auth is None:
                return _error(403, 40301, "forbidden")
            if auth != f"Bearer {self.token}":
                return _error(401, 40101, "unauthorized")
        if request.path[1:] != self.topic:
            return _error(403, 40301, "forbidden")
        if len(request.body) > MAX_MESSAGE_BYTES:
            return _error(
                413, 41301, "too large for attachments (this fake: an alert must not become a file)"
            )
        fields: dict[str, Any] = {}
        for key, names in (
            ("title", ("X-Title", "Title", "t")),
            ("tags", ("X-Tags", "Tags", "ta")),
            ("click", ("X-Click", "Click")),
            ("markdown", ("X-Markdown", "Markdown", "md")),
        ):
            raw = _header(request, *names)
            if raw is None:
                continue
            value = decode_header(raw)
            if value is None:
                return _error(400, 40000, f"invalid request: header {names[0]} is not ASCII nor RFC 2047")
            fields[key] = value
        priority = _header(request, "X-Priority", "Priority", "prio", "p")
        if priority is not None and priority.lower() not in PRIORITIES:
            return _error(400, 40007, "invalid priority")
        try:
            message = request.body.decode("utf-8")
        except UnicodeDecodeError:
            return _error(400, 40000, "invalid request: message is not UTF-8")
        notification = {
            "id": secrets.token_hex(6),
            "time": int(time.time()),
            "event": "message",
            "topic": self.topic,
            "message": message or "triggered",
            "priority": PRIORITIES[priority.lower()] if priority else 3,
            **fields,
        }
        if "tags" in notification:
            notification["tags"] = [t.strip() for t in notification["tags"].split(",") if t.strip()]
        self.notifications.append(notification)
        return Reply.json(200, notification)

    def failure(self, mode: str, request: RecordedRequest) -> Reply:
        if mode == "5xx":
            return _error(500, 50001, "internal server error")
        return _error(403, 40301, "forbidden")


def published(fake: FakeNtfy) -> list[str]:
    """Each accepted notification as 'title\\nmessage', for assertions."""
    return [f"{n.get('title', '')}\n{n['message']}" for n in fake.messages]
