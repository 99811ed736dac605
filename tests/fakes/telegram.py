"""A fake Telegram Bot API server: ``POST /bot<token>/sendMessage`` with JSON.

Every answer is ``{"ok": ...}`` JSON, as the Bot API's:

- an unknown token: 401 ``Unauthorized``; another method: 404 ``Not Found``;
- an unknown ``chat_id``: 400 ``Bad Request: chat not found``;
- ``parse_mode`` HTML: the text is parsed like Telegram does — only the
  supported tags (b, strong, i, em, u, ins, s, strike, del, a href, code,
  pre, blockquote, tg-spoiler), only the named entities ``&lt; &gt; &amp;
  &quot;`` and numeric ones; anything else (a bare ``<`` or ``&`` from a
  traceback) is 400 ``Bad Request: can't parse entities: ...``;
- the text after entity parsing must be 1-4,096 characters (counted in
  UTF-16 code units, as Telegram counts): else 400 ``message is too long`` /
  ``message text is empty``;
- more than one message a second to a chat, or more than ``per_minute`` (20)
  in a minute: 429 ``Too Many Requests: retry after N`` with
  ``parameters.retry_after``.
"""

from __future__ import annotations

import html
import json
import math
import re
import secrets
import time
from collections import deque
from html.parser import HTMLParser
from typing import Any, Optional

from tests.fakes.server import FakeService, RecordedRequest, Reply

MAX_TEXT_UTF16 = 4096
TAGS = {
    "b",
    "strong",
    "i",
    "em",
    "u",
    "ins",
    "s",
    "strike",
    "del",
    "a",
    "code",
    "pre",
    "blockquote",
    "tg-spoiler",
    "span",
}
_ENTITY = re.compile(r"&(?:lt|gt|amp|quot|#[0-9]+|#x[0-9a-fA-F]+);")


def _error(status: int, description: str, **extra: Any) -> Reply:
    return Reply.json(status, {"ok": False, "error_code": status, "description": description, **extra})


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.stack: list[str] = []
        self.problem: Optional[str] = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, Optional[str]]]) -> None:
        if tag not in TAGS:
            self.problem = self.problem or f'Unsupported start tag "{tag}"'
        self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.problem = self.problem or f'Can\'t find end tag corresponding to start tag "{tag}"'
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse_html(text: str) -> tuple[Optional[str], str]:
    """(problem, visible text) for ``parse_mode=HTML``."""
    for match in re.finditer(r"&", text):
        if not _ENTITY.match(text, match.start()):
            return f"Can't parse entities: unsupported entity at byte offset {match.start()}", ""
    for match in re.finditer(r"<", text):
        if not re.match(r"</?[a-z][a-z0-9-]*(\s[^<>]*)?>", text[match.start() :]):
            return f"Can't parse entities: unexpected character at byte offset {match.start()}", ""
    parser = _Parser()
    parser.feed(text)
    parser.close()
    if parser.problem:
        return f"Can't parse entities: {parser.problem}", ""
    if parser.stack:
        return (
            f"Can't parse entities: can't find end tag corresponding to start tag \"{parser.stack[-1]}\"",
            "",
        )
    return None, html.unescape("".join(parser.text))


def utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


class FakeTelegram(FakeService):
    def __init__(
        self, *, chats: tuple[str, ...] = ("123456789",), per_minute: int = 20, per_chat_interval: float = 1.0
    ) -> None:
        super().__init__()
        self.token = f"{secrets.randbelow(10**10):010d}:{secrets.token_urlsafe(26)}"
        self.chats = set(chats)
        self.per_minute = per_minute
        self.per_chat_interval = per_chat_interval
        self._sent: dict[str, deque[float]] = {}
        self.delivered: list[dict[str, Any]] = []  # {"chat_id", "text" (as shown), "request"}

    @property
    def api_url(self) -> str:
        return self.url

    @property
    def chat_id(self) -> str:
        return sorted(self.chats)[0]

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.delivered)

    def handle(self, request: RecordedRequest) -> Reply:
        match = re.fullmatch(r"/bot([^/]+)/([A-Za-z]+)", request.path)
        if request.method != "POST" or match is None:
            return _error(404, "Not Found")
        if match.group(1) != self.token:
            return _error(401, "Unauthorized")
        if match.group(2) != "sendMessage":
            return _error(404, "Not Found")
        try:
            call = json.loads(request.body.decode("utf-8"))
            assert isinstance(call, dict)
        except (ValueError, AssertionError):
            return _error(400, "Bad Request: message text is empty")
        chat = str(call.get("chat_id", ""))
        if chat not in self.chats:
            return _error(400, "Bad Request: chat not found")
        text = call.get("text")
        if not isinstance(text, str):
            return _error(400, "Bad Request: message text is empty")
        mode = call.get("parse_mode")
        if mode not in (None, "HTML"):
            return _error(400, f"Bad Request: unsupported parse_mode {mode!r} (this fake parses HTML)")
        shown = text
        if mode == "HTML":
            problem, shown = parse_html(text)
            if problem:
                return _error(400, f"Bad Request: {problem}")
        if not shown.strip():
            return _error(400, "Bad Request: message text is empty")
        if utf16_length(shown) > MAX_TEXT_UTF16:
            return _error(400, "Bad Request: message is too long")
        now = time.monotonic()
        sent = self._sent.setdefault(chat, deque())
        while sent and sent[0] <= now - 60.0:
            sent.popleft()
        wait = 0.0
        if sent and now - sent[-1] < self.per_chat_interval:
            wait = self.per_chat_interval - (now - sent[-1])
        if len(sent) >= self.per_minute:
            wait = max(wait, sent[0] + 60.0 - now)
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            return _error(
                429, f"Too Many Requests: retry after {seconds}", parameters={"retry_after": seconds}
            )
        sent.append(now)
        self.delivered.append({"chat_id": chat, "text": shown, "request": call})
        return Reply.json(
            200,
            {
                "ok": True,
                "result": {
                    "message_id": len(self.delivered),
                    "date": int(time.time()),
                    "chat": {"id": int(chat) if chat.lstrip("-").isdigit() else chat},
                    "text": shown,
                },
            },
        )

    def failure(self, mode: str, request: RecordedRequest) -> Reply:
        if mode == "5xx":
            return _error(502, "Bad Gateway")
        return _error(401, "Unauthorized")
