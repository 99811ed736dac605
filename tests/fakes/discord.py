"""A fake Discord webhook: ``POST /api/webhooks/<id>/<token>[?wait=true]`` with JSON.

As Discord documents it (discord-api-docs, webhook.mdx / message.mdx / rate-limits.mdx):

- an unknown webhook: 404 ``{"message": "Unknown Webhook", "code": 10015}``;
- the message needs ``content`` or ``embeds``; ``content`` at most 2,000
  characters; at most 10 embeds, title 256, description 4,096, 25 fields
  (name 256, value 1,024), footer 2,048, author 256, and all embeds
  together at most 6,000 characters; else 400 ``Invalid Form Body``
  (code 50035) — **but only with** ``?wait=true``: without it a message
  that is not saved "does not return an error" (204, nothing posted);
- success: 204 without ``wait``, 200 with the message object with it;
- rate limits: at most ``bucket`` (5) requests per ``bucket_window`` (2 s)
  per webhook, answered with ``X-RateLimit-*`` headers; past that 429 with
  ``Retry-After`` and ``{"message", "retry_after", "global": false}``.
"""

from __future__ import annotations

import json
import math
import secrets
import time
from collections import deque
from typing import Any, Optional

from tests.fakes.server import FakeService, RecordedRequest, Reply

MAX_CONTENT = 2000
MAX_EMBEDS_TOTAL = 6000


class FakeDiscord(FakeService):
    def __init__(self, *, bucket: int = 5, bucket_window: float = 2.0) -> None:
        super().__init__()
        self.webhook_id = str(secrets.randbits(60))
        self.token = secrets.token_urlsafe(48)
        self.bucket = bucket
        self.bucket_window = bucket_window
        self._seen: deque[float] = deque()
        self.posted: list[dict[str, Any]] = []  # messages Discord saved (also the silent-mode ones)

    @property
    def webhook_url(self) -> str:
        return f"{self.url}/api/webhooks/{self.webhook_id}/{self.token}"

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.posted)

    def _limits(self, now: float) -> tuple[bool, dict[str, str]]:
        while self._seen and self._seen[0] <= now - self.bucket_window:
            self._seen.popleft()
        over = len(self._seen) >= self.bucket
        if not over:
            self._seen.append(now)
        reset_after = (self._seen[0] + self.bucket_window - now) if self._seen else self.bucket_window
        headers = {
            "X-RateLimit-Limit": str(self.bucket),
            "X-RateLimit-Remaining": str(max(0, self.bucket - len(self._seen))),
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Bucket": "fake-webhook-bucket",
        }
        return over, headers

    def handle(self, request: RecordedRequest) -> Reply:
        if request.method != "POST" or request.path != f"/api/webhooks/{self.webhook_id}/{self.token}":
            return Reply.json(404, {"message": "Unknown Webhook", "code": 10015})
        over, headers = self._limits(time.monotonic())
        if over:
            retry = float(headers["X-RateLimit-Reset-After"])
            headers["Retry-After"] = str(max(1, math.ceil(retry)))
            headers["X-RateLimit-Scope"] = "shared"
            return Reply.json(
                429,
                {"message": "You are being rate limited.", "retry_after": retry, "global": False},
                headers,
            )
        wait = request.query.get("wait", "").lower() == "true"
        try:
            message = json.loads(request.body.decode("utf-8"))
            assert isinstance(message, dict)
        except (ValueError, AssertionError):
            return Reply.json(400, {"message": "Cannot send an empty message", "code": 50006}, headers)
        problem = _message_problem(message)
        if problem is not None:
            if not wait:
                return Reply(204, b"", headers)  # the documented trap: silence, nothing posted
            return Reply.json(
                400, {"code": 50035, "errors": problem, "message": "Invalid Form Body"}, headers
            )
        self.posted.append(message)
        if not wait:
            return Reply(204, b"", headers)
        return Reply.json(
            200,
            {
                "id": str(secrets.randbits(60)),
                "type": 0,
                "content": message.get("content", ""),
                "channel_id": "1",
                "webhook_id": self.webhook_id,
            },
            headers,
        )

    def failure(self, mode: str, request: RecordedRequest) -> Reply:
        if mode == "5xx":
            return Reply.text(502, "<html><body>502 Bad Gateway</body></html>", {"Content-Type": "text/html"})
        return Reply.json(404, {"message": "Unknown Webhook", "code": 10015})


def _too_long(limit: int) -> dict[str, Any]:
    return {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH", "message": f"Must be {limit} or fewer in length."}]}


def _message_problem(message: dict[str, Any]) -> Optional[dict[str, Any]]:
    content, embeds = message.get("content"), message.get("embeds")
    if not content and not embeds:
        return {
            "content": {
                "_errors": [{"code": "BASE_TYPE_REQUIRED", "message": "Cannot send an empty message"}]
            }
        }
    if content is not None and (not isinstance(content, str) or len(content) > MAX_CONTENT):
        return {"content": _too_long(MAX_CONTENT)}
    if embeds is None:
        return None
    if not isinstance(embeds, list) or len(embeds) > 10:
        return {"embeds": _too_long(10)}
    total = 0
    for index, embed in enumerate(embeds):
        if not isinstance(embed, dict):
            return {"embeds": {str(index): {"_errors": [{"code": "MODEL_TYPE_CONVERT"}]}}}
        for key, limit in (("title", 256), ("description", 4096)):
            value = embed.get(key, "")
            if not isinstance(value, str) or len(value) > limit:
                return {"embeds": {str(index): {key: _too_long(limit)}}}
            total += len(value)
        for key, sub, limit in (("footer", "text", 2048), ("author", "name", 256)):
            value = (embed.get(key) or {}).get(sub, "")
            if len(value) > limit:
                return {"embeds": {str(index): {key: {sub: _too_long(limit)}}}}
            total += len(value)
        fields = embed.get("fields", [])
        if len(fields) > 25:
            return {"embeds": {str(index): {"fields": _too_long(25)}}}
        for number, field in enumerate(fields):
            name, value = field.get("name"), field.get("value")
            if not name or not value:
                return {
                    "embeds": {
                        str(index): {"fields": {str(number): {"_errors": [{"code": "BASE_TYPE_REQUIRED"}]}}}
                    }
                }
            if len(name) > 256 or len(value) > 1024:
                return {"embeds": {str(index): {"fields": {str(number): _too_long(1024)}}}}
            total += len(name) + len(value)
    if total > MAX_EMBEDS_TOTAL:
        return {
            "embeds": {
                "_errors": [
                    {"code": "MAX_EMBED_SIZE_EXCEEDED", "message": "Embed size exceeds maximum size of 6000"}
                ]
            }
        }
    return None
