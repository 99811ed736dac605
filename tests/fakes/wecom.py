"""A fake WeCom (企业微信) group robot: ``POST /cgi-bin/webhook/send?key=<key>`` with JSON.

Answers HTTP 200 with ``{errcode, errmsg}`` whatever happened; only
``errcode`` 0 is success:

- an unknown key: 93000 (``invalid webhook url``);
- ``msgtype`` text (``text.content`` at most 2,048 UTF-8 bytes) or markdown
  (``markdown.content`` at most 4,096 bytes), else 40008 / 40058
  (``content exceed max length``, as the service words it);
- more than ``limit`` (20) accepted messages in any ``window`` (60 s):
  45009 ``api freq out of limit`` (the WeChat platform's frequency error;
  no official page ties it to the robot webhook).
"""

from __future__ import annotations

import json
import secrets
import time
from collections import deque
from typing import Any

from tests.fakes.server import FakeService, RecordedRequest, Reply

MAX_TEXT_BYTES = 2048
MAX_MARKDOWN_BYTES = 4096
HINT = ", hint: [1714538355214402498975046], from ip: 127.0.0.1, more info at https://open.work.weixin.qq.com/devtool/query?e="


def _answer(errcode: int, errmsg: str) -> Reply:
    return Reply.json(200, {"errcode": errcode, "errmsg": errmsg + (HINT + str(errcode) if errcode else "")})


class FakeWeCom(FakeService):
    def __init__(self, *, key: str = "", limit: int = 20, window: float = 60.0) -> None:
        super().__init__()
        self.key = key or "-".join(secrets.token_hex(n) for n in (4, 2, 2, 2, 6))
        self.limit = limit
        self.window = window
        self._accepted: deque[float] = deque()

    @property
    def webhook_url(self) -> str:
        return f"{self.url}/cgi-bin/webhook/send?key={self.key}"

    @property
    def messages(self) -> list[dict[str, Any]]:
        return [r.json() for r in self.received() if r.status == 200 and json.loads(r.answer)["errcode"] == 0]

    def handle(self, request: RecordedRequest) -> Reply:
        if request.method != "POST" or request.path != "/cgi-bin/webhook/send":
            return Reply.text(404, "Not Found")
        if request.query.get("key") != self.key:
            return _answer(93000, "invalid webhook url")
        try:
            message = json.loads(request.body.decode("utf-8"))
            assert isinstance(message, dict)
        except (ValueError, AssertionError):
            return _answer(40016, "invalid button size")  # what the service says to a non-JSON body
        kind = message.get("msgtype")
        if kind not in ("text", "markdown"):
            return _answer(40008, "invalid message type")
        content = (message.get(kind) or {}).get("content")
        if not isinstance(content, str) or not content:
            return _answer(44004, "empty content")
        limit = MAX_TEXT_BYTES if kind == "text" else MAX_MARKDOWN_BYTES
        if len(content.encode("utf-8")) > limit:
            return _answer(40058, f"{kind}.content exceed max length {limit}. invalid Request Parameter")
        now = time.monotonic()
        while self._accepted and self._accepted[0] <= now - self.window:
            self._accepted.popleft()
        if len(self._accepted) >= self.limit:
            return _answer(45009, "api freq out of limit")
        self._accepted.append(now)
        return _answer(0, "ok")

    def failure(self, mode: str, request: RecordedRequest) -> Reply:
        if mode == "5xx":
            return Reply.text(503, "Service Unavailable")
        return _answer(93000, "invalid webhook url")
