"""A fake Lark / Feishu custom bot: ``POST /open-apis/bot/v2/hook/<token>`` with JSON.

Like the real one it answers HTTP 200 with ``{code, msg, data}`` for almost
everything, so only ``code`` 0 is success:

- an unknown token: 19001 (``param invalid: incoming webhook access token invalid``);
- with a ``secret``: the body must carry ``timestamp`` (seconds) and
  ``sign`` = base64(HMAC-SHA256(key="{timestamp}\\n{secret}", message=b"")),
  the timestamp within one hour of the fake's clock; else 19021;
- with ``keywords``: one of them in the message, else 19024;
- a body over 20 KB (20,480 bytes): 9499 ``Bad Request`` (the service's
  catch-all refusal; the exact code for a too large body is this fake's own);
- ``msg_type`` text / post / interactive with the fields each one needs
  (``post`` checked element by element), else 9499;
- more than ``per_second`` (5) accepted messages in any second or
  ``per_minute`` (100) in any minute: 11232 (``frequency limited``).

The success answer carries the legacy ``StatusCode``/``StatusMessage`` too.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections import deque
from typing import Any, Callable, Optional, Sequence

from tests.fakes.server import FakeService, RecordedRequest, Reply

MAX_BODY_BYTES = 20 * 1024
TIMESTAMP_WINDOW = 3600
POST_TAGS = {"text": ("text",), "a": ("text", "href"), "at": ("user_id",), "img": ("image_key",)}


def _answer(code: int, msg: str) -> Reply:
    body: dict[str, Any] = {"code": code, "msg": msg, "data": {}}
    if code == 0:
        body.update(StatusCode=0, StatusMessage="success")
    return Reply.json(200, body)


def lark_sign(secret: str, timestamp: str) -> str:
    key = f"{timestamp}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()


def message_text(message: dict[str, Any]) -> str:
    """All the text a message shows (title and every element), for assertions."""
    kind = message.get("msg_type")
    content = message.get("content") or {}
    if kind == "text":
        return str(content.get("text", ""))
    if kind == "post":
        parts = []
        for body in (content.get("post") or {}).values():
            parts.append(str(body.get("title", "")))
            for line in body.get("content", []):
                parts.append("".join(str(e.get("text", "")) for e in line))
        return "\n".join(parts)
    return json.dumps(message.get("card") or {}, ensure_ascii=False)


class FakeLark(FakeService):
    def __init__(
        self,
        *,
        token: Optional[str] = None,
        secret: Optional[str] = None,
        keywords: Sequence[str] = (),
        per_second: int = 5,
        per_minute: int = 100,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.token = token or "-".join(secrets.token_hex(n) for n in (4, 2, 2, 2, 6))
        self.secret = secret if secret is not None else secrets.token_urlsafe(16)
        self.keywords = list(keywords)
        self.per_second = per_second
        self.per_minute = per_minute
        self.clock = clock
        self._accepted: deque[float] = deque()

    @property
    def webhook_url(self) -> str:
        return f"{self.url}/open-apis/bot/v2/hook/{self.token}"

    @property
    def messages(self) -> list[dict[str, Any]]:
        """Messages the bot accepted (code 0), in arrival order."""
        return [r.json() for r in self.received() if r.status == 200 and json.loads(r.answer)["code"] == 0]

    def handle(self, request: RecordedRequest) -> Reply:
        prefix = "/open-apis/bot/v2/hook/"
        if request.method != "POST" or not request.path.startswith(prefix):
            return Reply.text(404, "404 page not found")
        if request.path[len(prefix) :] != self.token:
            return _answer(19001, "param invalid: incoming webhook access token invalid")
        if len(request.body) > MAX_BODY_BYTES:
            return _answer(9499, "Bad Request")
        try:
            message = json.loads(request.body.decode("utf-8"))
            assert isinstance(message, dict)
        except (ValueError, AssertionError):
            return _answer(9499, "Bad Request")
        if self.secret:
            timestamp, sign = str(message.get("timestamp", "")), message.get("sign")
            if (
                not timestamp.isdigit()
                or abs(int(timestamp) - self.clock()) > TIMESTAMP_WINDOW
                or not isinstance(sign, str)
                or not hmac.compare_digest(sign, lark_sign(self.secret, timestamp))
            ):
                return _answer(19021, "sign match fail or timestamp is not within one hour from current time")
        problem = _content_problem(message)
        if problem:
            return _answer(9499, f"Bad Request: {problem}")
        if self.keywords and not any(k in message_text(message) for k in self.keywords):
            return _answer(19024, "Key Words Not Found")
        now = time.monotonic()
        while self._accepted and self._accepted[0] <= now - 60.0:
            self._accepted.popleft()
        last_second = sum(1 for t in self._accepted if t > now - 1.0)
        if len(self._accepted) >= self.per_minute or last_second >= self.per_second:
            return _answer(11232, "frequency limited psm[lark.oapi.app_platform_runtime]appID[1]")
        self._accepted.append(now)
        return _answer(0, "success")

    def failure(self, mode: str, request: RecordedRequest) -> Reply:
        if mode == "5xx":
            return Reply.text(
                502, "<html><body><h1>502 Bad Gateway</h1></body></html>", {"Content-Type": "text/html"}
            )
        return Reply.text(404, "404 page not found")


def _content_problem(message: dict[str, Any]) -> Optional[str]:
    kind, content = message.get("msg_type"), message.get("content")
    if kind == "interactive":
        return None if isinstance(message.get("card"), dict) else "card required"
    if not isinstance(content, dict):
        return "content required"
    if kind == "text":
        return None if isinstance(content.get("text"), str) and content["text"] else "content.text required"
    if kind != "post":
        return f"unsupported msg_type {kind!r}"
    post = content.get("post")
    if not isinstance(post, dict) or not post:
        return "content.post required"
    for language, body in post.items():
        if language not in ("zh_cn", "en_us", "ja_jp") or not isinstance(body, dict):
            return f"content.post.{language} invalid"
        lines = body.get("content")
        if not isinstance(body.get("title", ""), str) or not isinstance(lines, list):
            return "post title/content invalid"
        for line in lines:
            if not isinstance(line, list):
                return "post content must be a list of lines"
            for element in line:
                fields = POST_TAGS.get(element.get("tag")) if isinstance(element, dict) else None
                if fields is None or not all(isinstance(element.get(f), str) for f in fields):
                    return f"post element invalid: {element!r:.80}"
    return None
