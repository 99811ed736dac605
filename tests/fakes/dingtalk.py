"""A fake DingTalk custom robot: ``POST /robot/send?access_token=...[&timestamp=&sign=]``.

Like the real one it answers HTTP 200 with ``{errcode, errmsg}`` whatever
happened, so only ``errcode`` 0 is success. With a ``secret`` it verifies the
signature (HMAC-SHA256 over "{timestamp}\\n{secret}", base64) and that the
timestamp is within one hour of its clock (310000 otherwise); with
``keywords`` it wants one of them in the message (310000); past ``limit``
accepted messages in ``window`` seconds it answers 130101 "send too fast".
Markdown messages need a title and a text of at most 20,000 bytes (the
error codes for those two checks are this fake's own).
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

MORE = ", more: [https://ding-doc.dingtalk.com/doc#/serverapi2/qf2nxq]"
TIMESTAMP_WINDOW_MS = 3600 * 1000
MAX_TEXT_BYTES = 20000


def _answer(errcode: int, errmsg: str) -> Reply:
    return Reply.json(200, {"errcode": errcode, "errmsg": errmsg})


class FakeDingTalk(FakeService):
    def __init__(
        self,
        *,
        access_token: Optional[str] = None,
        secret: Optional[str] = None,
        keywords: Sequence[str] = (),
        limit: int = 20,
        window: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.access_token = access_token or secrets.token_hex(32)
        self.secret = secret if secret is not None else "SEC" + secrets.token_hex(32)
        self.keywords = list(keywords)
        self.limit = limit
        self.window = window
        self.clock = clock
        self._accepted: deque[float] = deque()  # monotonic seconds of accepted messages

    @property
    def webhook_url(self) -> str:
        return f"{self.url}/robot/send?access_token={self.access_token}"

    @property
    def messages(self) -> list[dict[str, Any]]:
        """Payloads the robot accepted (errcode 0), in arrival order."""
        return [r.json() for r in self.received() if r.status == 200 and json.loads(r.answer)["errcode"] == 0]

    def expected_sign(self, timestamp: str) -> str:
        string_to_sign = f"{timestamp}\n{self.secret}".encode()
        digest = hmac.new(self.secret.encode(), string_to_sign, hashlib.sha256).digest()
        return base64.b64encode(digest).decode()

    def handle(self, request: RecordedRequest) -> Reply:
        if request.method != "POST" or request.path != "/robot/send":
            return Reply.text(404, "Not Found")
        if request.query.get("access_token") != self.access_token:
            return _answer(300001, "token is not exist")
        if self.secret:
            timestamp, sign = request.query.get("timestamp", ""), request.query.get("sign", "")
            now_ms = int(self.clock() * 1000)
            if not timestamp.isdigit() or abs(int(timestamp) - now_ms) > TIMESTAMP_WINDOW_MS:
                return _answer(310000, "invalid timestamp" + MORE)
            # parse_qs already undid the URL encoding of the base64 value
            if not hmac.compare_digest(sign, self.expected_sign(timestamp)):
                return _answer(310000, "sign not match" + MORE)
        try:
            message = json.loads(request.body.decode("utf-8"))
            assert isinstance(message, dict)
        except (ValueError, AssertionError):
            return _answer(40035, "缺少参数 json")
        if message.get("msgtype") != "markdown":
            return _answer(40035, "unsupported msgtype (this fake knows markdown)")
        markdown = message.get("markdown") or {}
        title, text = markdown.get("title"), markdown.get("text")
        if not title or not text:
            return _answer(40035, "缺少参数 markdown.title / markdown.text")
        if len(text.encode("utf-8")) > MAX_TEXT_BYTES:
            return _answer(460101, "message too long, exceed 20000 bytes")
        if self.keywords and not any(k in title or k in text for k in self.keywords):
            return _answer(310000, "keywords not in content" + MORE)
        now = time.monotonic()
        while self._accepted and self._accepted[0] <= now - self.window:
            self._accepted.popleft()
        if len(self._accepted) >= self.limit:
            return _answer(130101, f"send too fast, exceed {self.limit} times per minute")
        self._accepted.append(now)
        return _answer(0, "ok")

    def failure(self, mode: str, request: RecordedRequest) -> Reply:
        if mode == "5xx":
            return Reply.text(502, "<html><body><h1>502 Bad Gateway</h1></body></html>",
                              {"Content-Type": "text/html"})
        return Reply.text(404, "<html><body><h1>404 Not Found</h1></body></html>",
                          {"Content-Type": "text/html"})
