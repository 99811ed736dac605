"""Prometheus Alertmanager: ``POST <url>/api/v2/alerts`` with one postable alert.

Each alert carries the labels Alertmanager routes, groups, inhibits and
silences by: ``alertname`` (one per way a run ends: ``RunKilled``,
``RunCrashed``, ...), ``host`` (the daemon's ``host:``), ``run``,
``project``, ``job``, ``rank``, ``severity`` and ``source="run-sentinel"``;
and the annotations ``summary`` (the headline) and ``description`` (the
alert's text). A run's ending is an event, not a lasting condition: the
alert starts when it happened and ends ``resolve_after`` later (default
1h), so Alertmanager notifies once and then lets it resolve.

Several ``urls`` (an HA pair or cluster): the alert is posted to every one,
as Prometheus does; the peers gossip and deduplicate notifications. It
counts as delivered when at least one accepts it (the failures are logged);
when none does, it is retried, unless every one refused it permanently.

2xx is success; 5xx, 429 and connection errors are transient; 400 (an alert
Alertmanager cannot parse) and other 4xx are permanent.
"""

from __future__ import annotations

import hashlib
import logging
import time
from datetime import datetime, timezone
from typing import Any, ClassVar, Mapping, Optional

from sentinel.channels import http
from sentinel.channels.base import Channel, DeliveryError, register
from sentinel.channels.console import render_text
from sentinel.channels.options import check_language, check_str, check_url, unknown_keys
from sentinel.common.fleet_labels import clean_label, run_labels
from sentinel.common.redact import redact
from sentinel.model.alerts import Alert, AlertKind
from sentinel.model.render import headline

log = logging.getLogger("sentinel.channels.alertmanager")

API_PATH = "/api/v2/alerts"
DEFAULT_RESOLVE_AFTER = 3600.0
DESCRIPTION_MAX = 4000


def alertname(kind: AlertKind) -> str:
    """``RunKilled``, ``RunStalled`` ...: one alert name per kind, for routing and silences."""
    if kind is AlertKind.TEST:
        return "SentinelTest"
    return "Run" + "".join(part.title() for part in kind.value.split("_"))


def rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


@register
class AlertmanagerChannel(Channel):
    type_name: ClassVar[str] = "alertmanager"
    OPTIONS = ("url", "urls", "host", "resolve_after", "language")

    def __init__(self, name: str, options: Mapping[str, Any], language: str = "en", *,
                 follow_run_language: bool = False) -> None:
        super().__init__(name, options, language, follow_run_language=follow_run_language)
        urls = self.options.get("urls") or [self.options["url"]]
        self.urls: list[str] = [u.rstrip("/") + API_PATH for u in urls]
        self.resolve_after = _seconds(self.options.get("resolve_after"), DEFAULT_RESOLVE_AFTER)

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> list[tuple[str, str]]:
        problems = unknown_keys(options, cls.OPTIONS)
        problems += check_language(options)
        problems += check_str(options, "host")
        has_url, has_urls = options.get("url") is not None, options.get("urls") is not None
        if has_url == has_urls:
            problems.append(("url", "set url (one Alertmanager) or urls (a list, for an HA cluster), "
                             "not both" if has_url else "required (or urls: a list)"))
        elif has_url:
            problems += check_url(options, "url", required=True)
        else:
            urls = options["urls"]
            if not isinstance(urls, list) or not urls:
                problems.append(("urls", "must be a non-empty list of URLs"))
            else:
                for index, url in enumerate(urls):
                    problems += [(f"urls.{index}", message) for _, message in
                                 check_url({"u": url}, "u", required=True)]
        if options.get("resolve_after") is not None:
            try:
                _seconds(options["resolve_after"], DEFAULT_RESOLVE_AFTER)
            except ValueError as exc:
                problems.append(("resolve_after", str(exc)))
        return problems

    def secrets(self) -> list[str]:
        # user:password@ in a URL is the only credential Alertmanager's API takes here.
        from urllib.parse import urlsplit

        return [p.password for p in map(urlsplit, self.urls) if p.password]

    def pace_key(self) -> str:
        return "alertmanager:" + hashlib.sha256("\n".join(self.urls).encode()).hexdigest()[:16]

    def payload(self, alert: Alert, now: Optional[float] = None) -> list[dict[str, Any]]:
        """The postable alerts (a list of one) for ``alert``."""
        now = time.time() if now is None else now
        lang = self.language_for(alert)
        labels = {
            "alertname": alertname(alert.kind),
            "severity": alert.kind.ending.severity,  # the row says (sentinel.model.endings)
            "host": clean_label(self.options.get("host") or alert.hostname or "unknown"),
            "run": clean_label(alert.run_name or alert.run_id or "-"),
            "run_id": clean_label(alert.run_id or "-"),
            "source": "run-sentinel",
            # jobs: the job's id and the rank that failed first, where the run set no such labels
            **run_labels(alert.labels, {"job": alert.job.get("id"), "rank": alert.job.get("cause_rank")}),
        }
        # An empty label value means "no such label" to Alertmanager: leave those out.
        labels = {k: v for k, v in labels.items() if v}
        starts = alert.ended if alert.ended is not None and alert.ended <= alert.created else alert.created
        postable: dict[str, Any] = {
            "labels": labels,
            "annotations": {
                "summary": clean_label(headline(alert, lang), 300),
                "description": _text(render_text(alert, lang)),
            },
            "startsAt": rfc3339(starts),
            # From now, not from the event: an alert delivered late (retries) must still fire.
            "endsAt": rfc3339(max(now, starts) + self.resolve_after),
        }
        url = alert.url
        if url and url.startswith(("http://", "https://")):
            postable["generatorURL"] = clean_label(url, 2000)
        return [postable]

    def send(self, alert: Alert) -> str:
        body = self.payload(alert)
        accepted: list[str] = []
        failures: list[DeliveryError] = []
        for url in self.urls:
            try:
                answer = http.post_json(url, body, secrets=self.secrets(), what="Alertmanager")
                accepted.append(self.classify(answer))
            except DeliveryError as exc:
                failures.append(exc)
        if accepted:
            for failure in failures:  # the alert is in; a peer that missed it is worth a line
                log.warning("Alertmanager peer did not take %s: %s", alert.alert_id,
                            redact(failure, self.secrets()))
            return accepted[0] + (f" ({len(accepted)}/{len(self.urls)} peers)" if len(self.urls) > 1 else "")
        if len(failures) == 1:
            raise failures[0]
        permanent = all(exc.permanent for exc in failures)
        waits = [exc.retry_after for exc in failures if exc.retry_after is not None]
        reasons = "; ".join(str(exc) for exc in failures)
        raise DeliveryError(f"no Alertmanager took the alert: {reasons}", permanent=permanent,
                            retry_after=min(waits) if waits and not permanent else None)

    def classify(self, answer: http.Answer) -> str:
        if answer.status == 400:
            body = redact(answer.brief(200), self.secrets())
            raise DeliveryError(f"Alertmanager refused the alert (HTTP 400): {body}", permanent=True)
        http.raise_for_status(answer, what="Alertmanager", secrets=self.secrets())
        return f"Alertmanager: {answer.status}"


def _text(text: str) -> str:
    # Keep line breaks (receivers show them), drop every other control character.
    lines = [clean_label(line, DESCRIPTION_MAX) for line in text.splitlines()]
    joined = "\n".join(lines)
    return joined if len(joined) <= DESCRIPTION_MAX else joined[: DESCRIPTION_MAX - 1] + "…"


def _seconds(value: Any, default: float) -> float:
    if value is None:
        return default
    from sentinel.common.rules import parse_duration

    seconds = parse_duration(value)
    if seconds < 60:
        raise ValueError("must be at least 1m (Alertmanager resolves an alert once it ends)")
    return seconds
