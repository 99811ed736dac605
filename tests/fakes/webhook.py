"""A fake receiver for the generic webhook channel, and for Apprise's ``json://``.

``FakeWebhook`` is what a user's own endpoint would check:

- strict JSON (no ``NaN``/``Infinity``, which Python writes by default
  and most JSON parsers refuse) of the documented schema: ``schema`` =
  ``"run-sentinel.alert"``, ``version`` = 1, ``alert.id``/``kind``/
  ``created``/``run``, ``title``, ``text``; else 400;
- with ``secret``: the header ``X-Sentinel-Signature-256`` must be
  ``sha256=<hex HMAC-SHA256(secret, body)>``; else 401;
- ``require_headers``: each must be present with its value; else 403;
- ``fail(status=429, headers={"Retry-After": ...})`` etc. for the rest.

``FakeAppriseJSON`` accepts what Apprise's ``json://`` plugin posts:
``{"version", "title", "message", "type", "attachments"}``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any, Mapping, Optional

from tests.fakes.server import FakeService, RecordedRequest, Reply

SIGNATURE_HEADER = "X-Sentinel-Signature-256"
ALERT_KEYS = ("id", "kind", "created", "run")
RUN_KEYS = ("id", "name", "host", "user", "pid", "labels", "url", "started", "ended", "step", "scalars")


def strict_json(body: bytes) -> Any:
    def refuse(token: str) -> Any:
        raise ValueError(f"{token} is not JSON")

    return json.loads(body.decode("utf-8"), parse_constant=refuse)


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


class FakeWebhook(FakeService):
    def __init__(
        self,
        *,
        secret: Optional[str] = None,
        require_headers: Optional[dict[str, str]] = None,
        path: str = "/hooks/sentinel",
    ) -> None:
        super().__init__()
        self.secret = secret
        self.require_headers = dict(require_headers or {})
        self.path = path
        self.accepted: list[dict[str, Any]] = []

    @property
    def webhook_url(self) -> str:
        return self.url + self.path

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.accepted)

    def handle(self, request: RecordedRequest) -> Reply:
        if request.method != "POST" or request.path != self.path:
            return Reply.text(404, "not found")
        headers = _lower(request.headers)
        if not headers.get("content-type", "").startswith("application/json"):
            return Reply.text(415, "want application/json")
        if self.secret is not None:
            expected = "sha256=" + hmac.new(self.secret.encode(), request.body, hashlib.sha256).hexdigest()
            if not hmac.compare_digest(headers.get(SIGNATURE_HEADER.lower(), ""), expected):
                return Reply.text(401, "bad signature")
        for name, value in self.require_headers.items():
            if headers.get(name.lower()) != value:
                return Reply.text(403, f"header {name} missing or wrong")
        try:
            payload = strict_json(request.body)
        except ValueError as exc:
            return Reply.text(400, f"invalid JSON: {exc}")
        problem = schema_problem(payload)
        if problem:
            return Reply.text(400, problem)
        self.accepted.append(payload)
        return Reply.json(200, {"received": payload["alert"]["id"]})

    def failure(self, mode: str, request: RecordedRequest) -> Reply:
        if mode == "5xx":
            return Reply.text(503, "unavailable")
        return Reply.text(410, "gone")


def schema_problem(payload: Any) -> Optional[str]:
    if not isinstance(payload, dict):
        return "not an object"
    if payload.get("schema") != "run-sentinel.alert" or payload.get("version") != 1:
        return "unknown schema/version"
    for key in ("title", "text"):
        if not isinstance(payload.get(key), str) or not payload[key]:
            return f"{key} missing"
    alert = payload.get("alert")
    if not isinstance(alert, dict) or any(k not in alert for k in ALERT_KEYS):
        return "alert incomplete"
    run = alert["run"]
    if not isinstance(run, dict) or any(k not in run for k in RUN_KEYS):
        return "alert.run incomplete"
    return None


class FakeAppriseJSON(FakeService):
    """What Apprise's ``json://host:port/path`` plugin sends (``apprise/plugins/custom_json.py``)."""

    def __init__(self, path: str = "/notify") -> None:
        super().__init__()
        self.path = path
        self.accepted: list[dict[str, Any]] = []

    @property
    def apprise_url(self) -> str:
        return f"json://127.0.0.1:{self.port}{self.path}"

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.accepted)

    def handle(self, request: RecordedRequest) -> Reply:
        if request.method != "POST" or request.path != self.path:
            return Reply.text(404, "not found")
        try:
            payload = strict_json(request.body)
        except ValueError:
            return Reply.text(400, "invalid JSON")
        if not isinstance(payload, dict) or not {"version", "title", "message", "type"} <= set(payload):
            return Reply.text(400, "not an Apprise JSON notification")
        self.accepted.append(payload)
        return Reply.text(200, "ok")

    def failure(self, mode: str, request: RecordedRequest) -> Reply:
        return Reply.text(503 if mode == "5xx" else 400, "no")
