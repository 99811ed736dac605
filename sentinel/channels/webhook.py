"""Generic webhook: the alert as versioned JSON, POSTed to a URL of yours.

The body (schema ``run-sentinel.alert``, ``version`` 1; a new version
only ever adds keys)::

    {
      "schema": "run-sentinel.alert", "version": 1,
      "title": "💥 Crashed: resnet50",            # the headline, in the channel's language
      "text": "RuntimeError: CUDA error ...\\n...",  # the plain-text message
      "language": "en",
      "alert": {
        "id": "<run id>.001.crashed",             # stable: use it to drop duplicates
        "kind": "crashed",                        # finished crashed aborted terminated killed
                                                  # stalled recovered lost message test
        "created": "2025-06-15T14:30:00Z", "created_ts": 1750000000.0,
        "summary": "...", "exit_code": 1, "signal": null, "error": "<traceback tail>",
        "detail": null, "text": null,             # text: a send_msg message
        "where": "wait_for_peer (train.py:12)",   # the frame it hangs or crashed in, or null
        "stacks": "<every thread's stack>",       # or null; never locals, secrets masked
        "evidence_missing": null,                 # why stacks could not be had, or null
        "output": ["epoch 7 ... loss 0.43"],      # the last lines printed (captured runs), oldest first
        "run": {"id", "name", "host", "user", "pid", "labels", "url",
                "started", "ended", "duration", "last_beat", "last_progress", "step", "scalars"}
      }
    }

Times are epoch seconds (``created`` also as RFC 3339, UTC); a metric that
is NaN or infinite is ``null`` (strict JSON). With ``secret``, the header
``X-Sentinel-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>`` signs
the exact body bytes (verify before parsing; compare in constant time).
``headers`` adds your own (e.g. ``Authorization``); their values are
treated as secrets.

2xx is success; 429 and 5xx are retried (honouring ``Retry-After``); a
redirect or another 4xx is permanent.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import time
from typing import Any, ClassVar, Mapping, Optional

from sentinel.channels import http
from sentinel.channels.base import Channel, register
from sentinel.channels.options import check_language, check_str, check_url, unknown_keys
from sentinel.channels.plain import plain_text
from sentinel.common.safetext import printable
from sentinel.model.alerts import Alert
from sentinel.model.render import cap, summary
from sentinel.model.render import title as alert_title

SCHEMA = "run-sentinel.alert"
VERSION = 1
SIGNATURE_HEADER = "X-Sentinel-Signature-256"
MAX_TEXT = 8000
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$")
_RESERVED = {"content-type", "content-length", "host", SIGNATURE_HEADER.lower(), "transfer-encoding"}


def _finite(value: Any) -> Any:
    return value if not isinstance(value, float) or math.isfinite(value) else None


def _rfc3339(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def alert_document(alert: Alert, lang: str) -> dict[str, Any]:
    """The versioned JSON document for one alert (see the module docstring)."""
    run = {
        "id": alert.run_id,
        "name": alert.run_name,
        "host": alert.hostname,
        "user": alert.user,
        "pid": alert.pid,
        "labels": dict(alert.labels),
        "url": alert.url,
        "started": alert.started,
        "ended": alert.ended,
        "duration": alert.duration,
        "last_beat": alert.last_beat,
        "last_progress": alert.last_progress,
        "step": alert.step,
        "scalars": {k: _finite(v) for k, v in alert.scalars.items()},
    }
    body = {
        "id": alert.alert_id,
        "kind": alert.kind.value,
        "created": _rfc3339(alert.created),
        "created_ts": alert.created,
        "summary": summary(alert, lang),
        "exit_code": alert.exit_code,
        "signal": alert.signal,
        "error": alert.error,
        "detail": alert.detail,
        "text": alert.text,
        "where": alert.where,
        "stacks": alert.stacks,
        "evidence_missing": alert.evidence_missing,
        "output": list(alert.output),
        "run": {k: _finite(v) for k, v in run.items()},
    }
    return {
        "schema": SCHEMA,
        "version": VERSION,
        "title": cap(alert_title(alert, lang), 300),
        "text": plain_text(alert, lang, MAX_TEXT) or printable(alert_title(alert, lang)),
        "language": lang,
        "alert": {k: _finite(v) for k, v in body.items()},
    }


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


@register
class WebhookChannel(Channel):
    type_name: ClassVar[str] = "webhook"
    OPTIONS = ("url", "secret", "headers", "language")

    def __init__(self, name: str, options: Mapping[str, Any], language: str = "en", **kwargs: Any) -> None:
        super().__init__(name, options, language, **kwargs)
        self.url: str = self.options["url"]
        self.secret: Optional[str] = self.options.get("secret") or None
        self.headers: dict[str, str] = {
            str(k): str(v) for k, v in (self.options.get("headers") or {}).items()
        }

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> list[tuple[str, str]]:
        problems = unknown_keys(options, cls.OPTIONS)
        problems += check_url(options, "url", required=True)
        problems += check_str(options, "secret", required=False)
        problems += check_language(options)
        headers = options.get("headers")
        if headers is not None:
            if not isinstance(headers, Mapping):
                problems.append(("headers", "must be a mapping of header name to value"))
            else:
                for name, value in headers.items():
                    if not isinstance(name, str) or not _HEADER_NAME.match(name):
                        problems.append(("headers", "a header name must be letters, digits and -"))
                    elif name.lower() in _RESERVED:
                        problems.append((f"headers.{name}", "is set by run-sentinel itself"))
                    elif (
                        not isinstance(value, (str, int))
                        or isinstance(value, bool)
                        or any(ch in str(value) for ch in "\r\n\0")
                        or not str(value).isascii()
                    ):
                        problems.append((f"headers.{name}", "must be one line of ASCII text"))
        return problems

    @classmethod
    def destination_hosts(cls, options: Mapping[str, Any]) -> Optional[list[str]]:
        return cls.hosts_of(options["url"])

    def secrets(self) -> list[str]:
        values = [self.secret, *self.headers.values()]
        return [v for v in values if v]

    def pace_key(self) -> str:
        return self.destination_key(self.url)

    def request(self, alert: Alert) -> tuple[bytes, dict[str, str]]:
        document = alert_document(alert, self.language_for(alert))
        body = json.dumps(document, ensure_ascii=False, allow_nan=False).encode("utf-8")
        headers = dict(self.headers)
        if self.secret:
            headers[SIGNATURE_HEADER] = signature(self.secret, body)
        return body, headers

    def send(self, alert: Alert) -> str:
        body, headers = self.request(alert)
        answer = http.post(
            self.url,
            body,
            "application/json; charset=utf-8",
            headers=headers,
            secrets=self.secrets(),
            what="webhook",
        )
        http.raise_for_status(answer, what="webhook", secrets=self.secrets())
        return f"webhook: HTTP {answer.status}"
