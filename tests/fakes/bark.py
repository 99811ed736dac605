"""A fake bark-server: ``POST /push`` with JSON, answering ``{code, message, timestamp}``.

As bark-server does: a missing device key and an unknown one are 400 (the
push can never work), a failed APNs push is 500 ("push failed: ..."),
success is 200 with ``code`` 200 and ``message`` "success".
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any, Iterable, Optional

from tests.fakes.server import FakeService, RecordedRequest, Reply


def _answer(code: int, message: str) -> Reply:
    return Reply.json(code, {"code": code, "message": message, "timestamp": int(time.time())})


class FakeBark(FakeService):
    def __init__(self, keys: Optional[Iterable[str]] = None) -> None:
        super().__init__()
        self.keys = list(keys) if keys is not None else [secrets.token_urlsafe(16)[:22].replace("-", "x")]
        self.key = self.keys[0]

    @property
    def key_url(self) -> str:
        """The URL the Bark app shows: server with the key embedded."""
        return f"{self.url}/{self.key}/"

    @property
    def pushes(self) -> list[dict[str, Any]]:
        """Bodies of the pushes the fake accepted, in arrival order."""
        return [r.json() for r in self.received() if r.status == 200]

    def handle(self, request: RecordedRequest) -> Reply:
        if request.method != "POST" or request.path.rstrip("/") != "/push":
            return Reply.text(404, f"Cannot {request.method} {request.path}")
        try:
            params = json.loads(request.body.decode("utf-8") or "{}")
            if not isinstance(params, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            return _answer(400, f"request bind failed: {exc}")
        key = params.get("device_key") or ""
        if not key:
            return _answer(400, "device key is empty")
        if key not in self.keys:
            return _answer(400, f"failed to get device token: failed to get [{key}] device token from db")
        return _answer(200, "success")

    def failure(self, mode: str, request: RecordedRequest) -> Reply:
        if mode == "5xx":
            return _answer(500, "push failed: Post \"https://api.push.apple.com\": dial tcp: i/o timeout")
        return _answer(400, "failed to get device token: failed to get [unknown] device token from database")
