"""A fake Slack incoming webhook: ``POST /services/T.../B.../...`` with JSON.

Answers as Slack documents for webhooks: 200 ``ok``; 400 ``invalid_payload``
(not JSON), ``no_text`` (neither text nor blocks), ``invalid_blocks`` (Block
Kit limits broken); 404 ``no_service`` (unknown webhook); 429 with
Retry-After past ``min_interval`` between messages (Slack allows about one a
second per webhook); 500 ``rollup_error`` when failing. Other documented
answers (403 ``action_prohibited``/``invalid_token``, 404
``channel_not_found``, 410 ``channel_is_archived``) via
``fail(status=..., body=...)``. ``fail("200-error")`` answers HTTP 200 with
an error body (``invalid_payload``), as Slack's older webhook front ends do:
a status alone does not prove delivery, only the body ``ok`` does.
"""

from __future__ import annotations

import json
import math
import secrets
import time
from typing import Any, Optional

from tests.fakes.server import FakeService, RecordedRequest, Reply


class FakeSlack(FakeService):
    MODES = (*FakeService.MODES, "200-error")

    def __init__(self, min_interval: float = 1.0, path: Optional[str] = None) -> None:
        super().__init__()
        self.min_interval = min_interval
        self.hook_path = path or (
            f"/services/T{secrets.token_hex(4).upper()}/B{secrets.token_hex(4).upper()}/{secrets.token_hex(12)}"
        )
        self._last_accepted: Optional[float] = None

    @property
    def webhook_url(self) -> str:
        return self.url + self.hook_path

    @property
    def messages(self) -> list[dict[str, Any]]:
        """Payloads accepted (200 ok), in arrival order."""
        return [r.json() for r in self.received() if r.status == 200 and r.answer == b"ok"]

    def handle(self, request: RecordedRequest) -> Reply:
        if request.method != "POST" or request.path != self.hook_path:
            return Reply.text(404, "no_service")
        try:
            payload = json.loads(request.body.decode("utf-8"))
            assert isinstance(payload, dict)
        except (ValueError, AssertionError):
            return Reply.text(400, "invalid_payload")
        if not payload.get("text") and not payload.get("blocks"):
            return Reply.text(400, "no_text")
        if "blocks" in payload and not _blocks_ok(payload["blocks"]):
            return Reply.text(400, "invalid_blocks")
        now = time.monotonic()
        if self._last_accepted is not None and now - self._last_accepted < self.min_interval:
            wait = max(1, math.ceil(self.min_interval - (now - self._last_accepted)))
            return Reply.text(429, "rate_limited", {"Retry-After": str(wait)})
        self._last_accepted = now
        return Reply.text(200, "ok")

    def failure(self, mode: str, request: RecordedRequest) -> Reply:
        if mode == "5xx":
            return Reply.text(500, "rollup_error")
        if mode == "200-error":
            return Reply.text(200, "invalid_payload")
        return Reply.text(404, "no_service")


def _blocks_ok(blocks: Any) -> bool:
    """The Block Kit limits our messages could break."""
    if not isinstance(blocks, list) or len(blocks) > 50:
        return False
    for block in blocks:
        if not isinstance(block, dict) or "type" not in block:
            return False
        text = block.get("text")
        if isinstance(text, dict):
            limit = 150 if block["type"] == "header" else 3000
            if not isinstance(text.get("text"), str) or len(text["text"]) > limit:
                return False
        fields = block.get("fields")
        if fields is not None and (not isinstance(fields, list) or len(fields) > 10
                                   or any(len(f.get("text", "")) > 2000 for f in fields)):
            return False
    return True
