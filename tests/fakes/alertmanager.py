"""A fake Alertmanager v2 API, and a fake receiver of Alertmanager's webhooks.

``FakeAlertmanager``: ``POST /api/v2/alerts`` with a JSON list of postable
alerts, checked as Alertmanager's OpenAPI spec and its validation do:
``labels`` required, a non-empty map of valid label names
(``[a-zA-Z_][a-zA-Z0-9_]*``) to non-empty strings; ``annotations`` a map of
strings; ``startsAt``/``endsAt`` RFC 3339 date-times with start before end;
``generatorURL`` a string. 200 with an empty body on success; 400 with the
reason otherwise; 503 when failing (``fail("5xx")``).

``FakeWebhookReceiver``: what an Alertmanager ``webhook_configs`` receiver
gets (version 4 payloads), recorded as ``notifications``.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any, Optional

from tests.fakes.server import FakeService, RecordedRequest, Reply

LABEL_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def parse_time(value: Any) -> datetime:
    if not isinstance(value, str) or "T" not in value:
        raise ValueError(f"{value!r} is not an RFC 3339 date-time")
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def validate_alert(alert: Any) -> Optional[str]:
    """Alertmanager's reason for refusing ``alert``, or None."""
    if not isinstance(alert, dict):
        return "an alert must be an object"
    labels = alert.get("labels")
    if not isinstance(labels, dict) or not labels:
        return "labels: required, a non-empty map"
    for name, value in labels.items():
        if not LABEL_NAME_RE.match(name):
            return f"invalid label name {name!r}"
        if not isinstance(value, str) or not value:
            return f"invalid label value for {name!r}"
    annotations = alert.get("annotations", {})
    if not isinstance(annotations, dict) or not all(isinstance(v, str) for v in annotations.values()):
        return "annotations must map names to strings"
    try:
        starts = parse_time(alert["startsAt"]) if "startsAt" in alert else None
        ends = parse_time(alert["endsAt"]) if "endsAt" in alert else None
    except ValueError as exc:
        return str(exc)
    if starts and ends and ends < starts:
        return "start time must be before end time"
    if "generatorURL" in alert and not isinstance(alert["generatorURL"], str):
        return "generatorURL must be a string"
    return None


class FakeAlertmanager(FakeService):
    @property
    def alerts(self) -> list[dict[str, Any]]:
        """Every alert accepted, in arrival order."""
        return [a for r in self.received() if r.status == 200 for a in r.json()]

    def handle(self, request: RecordedRequest) -> Reply:
        if request.path != "/api/v2/alerts" or request.method != "POST":
            return Reply.text(404, "404 page not found")
        try:
            alerts = json.loads(request.body.decode("utf-8"))
        except ValueError:
            return Reply.json(400, {"code": 400, "message": "parsing alerts body from \"\" failed"})
        if not isinstance(alerts, list):
            return Reply.json(400, {"code": 400, "message": "alerts in body must be of type array"})
        for alert in alerts:
            reason = validate_alert(alert)
            if reason:
                return Reply.json(400, {"code": 400, "message": reason})
        return Reply(200)

    def failure(self, mode: str, request: RecordedRequest) -> Reply:
        if mode == "4xx":
            return Reply.json(400, {"code": 400, "message": "bad request"})
        return Reply.text(503, "service unavailable")


class FakeWebhookReceiver(FakeService):
    @property
    def notifications(self) -> list[dict[str, Any]]:
        return [r.json() for r in self.received() if r.status == 200]

    def alerts_named(self, alertname: str) -> list[dict[str, Any]]:
        """Alerts with that name across every notification (one entry per notification)."""
        return [a for n in self.notifications for a in n.get("alerts", [])
                if a.get("labels", {}).get("alertname") == alertname]

    def handle(self, request: RecordedRequest) -> Reply:
        try:
            payload = json.loads(request.body.decode("utf-8"))
        except ValueError:
            return Reply.text(400, "not JSON")
        if payload.get("version") != "4" or not isinstance(payload.get("alerts"), list):
            return Reply.text(400, "not an Alertmanager webhook payload")
        return Reply.text(200, "ok")

    def failure(self, mode: str, request: RecordedRequest) -> Reply:
        return Reply.text(500, "receiver failing")
