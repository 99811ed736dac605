"""A fake healthchecks.io: the Management API (v3 checks) and the ping endpoints.

Management API, as ``templates/docs/api.md`` documents it:
``POST /api/v3/checks/`` authenticated by ``X-Api-Key`` or an ``api_key``
field of the JSON body (401 without, 401 for a wrong key); ``timeout`` and
``grace`` integers of 60..31536000 s, ``name`` at most 100 characters,
``unique`` a subset of name/tags/timeout/grace (else 400); with
``unique: ["name"]`` an existing check of that name is updated (200), else
one is created (201). Answers carry ``ping_url``. More than
``api_limit`` calls a minute: 429.

Pings: ``GET|POST /ping/<uuid>[/start|/fail|/log|/<0-255>][?rid=<uuid>]``:
200 ``OK``; 404 ``not found`` for an unknown check; 400 for a ``rid`` that is
not a UUID. Like the hosted service's by-UUID endpoints, a ping beyond 5 a
minute per check is answered 200 but dropped: ``dropped`` counts them.
Rate windows follow ``clock`` (a test that drives its client's clock shares it).
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from tests.fakes.server import FakeService, RecordedRequest, Reply

MIN_SECONDS, MAX_SECONDS = 60, 31_536_000
PINGS_PER_MINUTE = 5
_PING_RE = re.compile(r"^/ping/([0-9a-f-]{36})(?:/(start|fail|log|[0-9]{1,3}))?/?$")


@dataclass
class Check:
    uuid: str
    name: str
    timeout: int
    grace: int
    tags: str = ""
    pings: list[dict[str, Any]] = field(default_factory=list)
    recent: deque = field(default_factory=deque)  # arrival times within the last minute


class FakeHealthchecks(FakeService):
    def __init__(self, api_key: str = "hc-test-key-0123456789", api_limit: int = 100,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.clock = clock  # rate windows: a test driving its client's clock passes the same one
        self.api_key = api_key
        self.api_limit = api_limit
        self.checks: dict[str, Check] = {}
        self.dropped = 0
        self._api_calls: deque[float] = deque()

    def by_name(self, name: str) -> Optional[Check]:
        return next((c for c in self.checks.values() if c.name == name), None)

    def handle(self, request: RecordedRequest) -> Reply:
        if request.path.startswith("/api/v3/checks"):
            return self._api(request)
        match = _PING_RE.match(request.path)
        if match:
            return self._ping(request, match.group(1), match.group(2) or "success")
        return Reply.text(404, "not found")

    def failure(self, mode: str, request: RecordedRequest) -> Reply:
        return Reply.text(400 if mode == "4xx" else 502, "failing")

    def _api(self, request: RecordedRequest) -> Reply:
        now = self.clock()
        while self._api_calls and self._api_calls[0] <= now - 60:
            self._api_calls.popleft()
        if len(self._api_calls) >= self.api_limit:
            return Reply.json(429, {"error": "rate limit exceeded"})
        self._api_calls.append(now)
        if request.method != "POST" or request.path != "/api/v3/checks/":
            return Reply.json(405, {"error": "method not allowed"})
        try:
            body = json.loads(request.body.decode("utf-8") or "{}")
            assert isinstance(body, dict)
        except (ValueError, AssertionError):
            return Reply.json(400, {"error": "could not parse request body"})
        key = request.headers.get("X-Api-Key") or body.get("api_key")
        if not key:
            return Reply.json(401, {"error": "missing api key"})
        if key != self.api_key:
            return Reply.json(401, {"error": "wrong api key"})
        for name in ("timeout", "grace"):
            value = body.get(name, 86400 if name == "timeout" else 3600)
            if not isinstance(value, int) or isinstance(value, bool):
                return Reply.json(400, {"error": f"json validation error: {name} is not a number"})
            if not MIN_SECONDS <= value <= MAX_SECONDS:
                return Reply.json(400, {"error": f"json validation error: {name} is out of range"})
        name = body.get("name", "")
        if not isinstance(name, str) or len(name) > 100:
            return Reply.json(400, {"error": "json validation error: name is too long"})
        unique = body.get("unique", [])
        if not isinstance(unique, list) or not set(unique) <= {"name", "tags", "timeout", "grace"}:
            return Reply.json(400, {"error": "json validation error: unique has unexpected items"})
        existing = self.by_name(name) if "name" in unique else None
        if existing is not None:
            existing.timeout, existing.grace = body.get("timeout", 86400), body.get("grace", 3600)
            existing.tags = body.get("tags", existing.tags)
            return Reply.json(200, self._describe(existing))
        check = Check(str(uuid.uuid4()), name, body.get("timeout", 86400), body.get("grace", 3600),
                      body.get("tags", ""))
        self.checks[check.uuid] = check
        return Reply.json(201, self._describe(check))

    def _describe(self, check: Check) -> dict[str, Any]:
        return {"name": check.name, "tags": check.tags, "timeout": check.timeout, "grace": check.grace,
                "status": "new" if not check.pings else "up", "n_pings": len(check.pings),
                "ping_url": f"{self.url}/ping/{check.uuid}",
                "update_url": f"{self.url}/api/v3/checks/{check.uuid}"}

    def _ping(self, request: RecordedRequest, check_id: str, kind: str) -> Reply:
        check = self.checks.get(check_id)
        if check is None:
            return Reply.text(404, "not found")
        rid = request.query.get("rid")
        if rid is not None:
            try:
                uuid.UUID(rid)
            except ValueError:
                return Reply.text(400, "invalid rid")
        if kind.isdigit() and int(kind) > 255:
            return Reply.text(404, "not found")
        now = self.clock()
        while check.recent and check.recent[0] <= now - 60:
            check.recent.popleft()
        if len(check.recent) >= PINGS_PER_MINUTE:
            self.dropped += 1
            return Reply.text(200, "OK")
        check.recent.append(now)
        check.pings.append({"kind": kind, "rid": rid, "body": request.body.decode("utf-8", "replace"),
                            "method": request.method})
        return Reply.text(200, "OK")
