"""Bark (iOS push): ``POST {server}/push`` with a JSON body.

Success is the JSON ``code`` 200 (bark-server answers ``{code, message,
timestamp}``; an HTTP 200 alone is not the proof). A missing or unknown
device key is answered 400 and will never work; 5xx ("push failed") is
APNs or the server having a bad moment and is retried.

Users configure Bark either as ``server`` + ``key`` or by pasting the URL the
app shows, ``https://api.day.app/<key>`` (``url:``), possibly with the app's
sample text after the key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Optional
from urllib.parse import unquote, urlsplit, urlunsplit

from sentinel.channels import http
from sentinel.channels.base import Channel, DeliveryError, register
from sentinel.channels.options import check_language, check_str, check_url, unknown_keys
from sentinel.common.redact import redact
from sentinel.model.alerts import ALERT_STATES, Alert, AlertKind
from sentinel.model.endings import Urgency
from sentinel.model.render import (
    PRODUCT,
    age,
    cap,
    evidence_fact,
    format_duration,
    format_labels,
    format_scalars,
    last_error_line,
    say,
    summary,
    trend_line,
)
from sentinel.model.render import title as alert_title
from sentinel.model.render import where as alert_where

DEFAULT_SERVER = "https://api.day.app"
LEVELS = ("critical", "timeSensitive", "active", "passive")
BODY_MAX_CHARS = 1000  # APNs payloads are capped at 4 KB
# Failures break through Focus modes; good news waits quietly. A user who
# wants sound through silent mode sets e.g. ``level: {killed: critical}``.
URGENCY_LEVELS = {Urgency.HIGH: "timeSensitive", Urgency.NORMAL: "active", Urgency.LOW: "passive"}
DEFAULT_LEVELS = {kind.value: URGENCY_LEVELS[kind.ending.urgency] for kind in AlertKind}
_LEVEL_KEYS = set(ALERT_STATES) | {"message", "test"}
_KEY_RE = re.compile(r"^[A-Za-z0-9_\-]{4,128}$")


def split_key_url(url: str) -> tuple[str, str]:
    """'https://api.day.app/<key>[/sample text]' -> ('https://api.day.app', key).

    Keys the app generates are 22 characters: the first segment at least 16
    long is the key; failing that, the first one that looks like a key.
    What follows is the app's sample push text, what precedes a self-hosted
    prefix.
    """
    parts = urlsplit(url)
    segments = [unquote(s) for s in parts.path.split("/") if s]
    candidates = [i for i, s in enumerate(segments) if _KEY_RE.match(s)]
    if not candidates:
        raise ValueError("no device key in the URL path")
    long_ones = [i for i in candidates if len(segments[i]) >= 16]
    index = long_ones[0] if long_ones else candidates[0]
    prefix = "/".join(segments[:index])
    server = urlunsplit((parts.scheme, parts.netloc, f"/{prefix}" if prefix else "", "", ""))
    return server, segments[index]


def endpoint(options: Mapping[str, Any]) -> tuple[str, str]:
    """(push URL, device key) from either way of configuring Bark."""
    url = options.get("url")
    server = options.get("server") or DEFAULT_SERVER
    key = options.get("key") or ""
    if url:
        server, key = split_key_url(url)
    elif not key and urlsplit(server).path.strip("/"):
        server, key = split_key_url(server)
    return server.rstrip("/") + "/push", key


@register
class BarkChannel(Channel):
    type_name: ClassVar[str] = "bark"
    max_message_bytes: ClassVar[Optional[int]] = 4096
    OPTIONS = ("server", "key", "url", "level", "group", "icon", "sound", "language", "title")

    def __init__(self, name: str, options: Mapping[str, Any], language: str = "en", **kwargs: Any) -> None:
        super().__init__(name, options, language, **kwargs)
        self.push_url, self.key = endpoint(self.options)

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> list[tuple[str, str]]:
        problems = unknown_keys(options, cls.OPTIONS)
        problems += check_url(options, "server", required=False)
        problems += check_url(options, "url", required=False)
        problems += check_str(options, "key")
        key = options.get("key")
        if isinstance(key, str) and key and not _KEY_RE.match(key):
            problems.append(("key", "must be the device key the Bark app shows (4 to 128 letters, digits, "
                                    "'_' or '-'; or set url: to the URL the app shows)"))
        for key in ("group", "sound", "title"):
            problems += check_str(options, key)
        problems += check_url(options, "icon", required=False)
        problems += check_language(options)
        problems += _check_level(options.get("level"))
        if not problems:
            try:
                _, device_key = endpoint(options)
            except ValueError:
                bad = "url" if options.get("url") else "server"
                problems.append((bad, "has no device key in its path (expected https://api.day.app/<key>)"))
            else:
                if not device_key:
                    problems.append(("key", "required: the device key from the Bark app "
                                            "(or set url: to the URL the app shows)"))
        return problems

    def secrets(self) -> list[str]:
        return [s for s in (self.key, self.options.get("url")) if s]

    @classmethod
    def destination_hosts(cls, options: Mapping[str, Any]) -> Optional[list[str]]:
        # The icon URL is fetched by the phone, not by us.
        return [urlsplit(endpoint(options)[0]).hostname or ""]

    def level_for(self, kind: AlertKind) -> str:
        level = self.options.get("level")
        if isinstance(level, str):
            return level
        if isinstance(level, Mapping) and kind.value in level:
            return str(level[kind.value])
        return DEFAULT_LEVELS[kind.value]

    def payload(self, alert: Alert) -> dict[str, Any]:
        text = render_bark(alert, self.language_for(alert))
        own_title = self.options.get("title")
        if own_title:  # the user's words (SwanLab's ``title=``) lead the line under what happened
            text = BarkText(text.title, cap(" · ".join(p for p in (own_title, text.subtitle) if p), 120),
                            text.body)
        body: dict[str, Any] = {
            "device_key": self.key,
            "title": text.title,
            "subtitle": text.subtitle,
            "body": text.body,
            "level": self.level_for(alert.kind),
            "group": self.options.get("group") or PRODUCT,
            "icon": self.options.get("icon"),
            "sound": self.options.get("sound"),
            "url": alert.url,  # tap opens the SwanLab run
        }
        return {k: v for k, v in body.items() if v not in (None, "")}

    def send(self, alert: Alert) -> str:
        answer = http.post_json(self.push_url, self.payload(alert), secrets=self.secrets(), what="Bark")
        return self.classify(answer)

    def classify(self, answer: http.Answer) -> str:
        data = answer.json()
        if not (isinstance(data, dict) and "code" in data):
            http.raise_for_status(answer, what="Bark", secrets=self.secrets())
            raise DeliveryError(
                f"Bark: HTTP {answer.status} but not a Bark answer "
                f"({redact(answer.brief(80), self.secrets())!r}); check server/url",
                permanent=True,
            )
        code = data.get("code")
        message = redact(str(data.get("message", "")), self.secrets())
        if answer.status == 200 and code == 200:
            return f"Bark: code 200 {message}".rstrip()
        transient = answer.status >= 500 or answer.status == 429 or (isinstance(code, int) and code >= 500)
        if transient:
            raise DeliveryError(
                f"Bark: HTTP {answer.status}, code {code}: {message}",
                retry_after=http.parse_retry_after(answer.headers.get("Retry-After")),
            )
        hint = ""
        if "device key" in message or "device token" in message:
            hint = " — the device key is wrong or unregistered: copy it again from the Bark app (key/url)"
        raise DeliveryError(f"Bark: HTTP {answer.status}, code {code}: {message}{hint}", permanent=True)


@dataclass(frozen=True)
class BarkText:
    title: str
    subtitle: str
    body: str


def render_bark(alert: Alert, lang: str = "en") -> BarkText:
    """A phone notification: title = what happened + run; subtitle = where
    and how long; body = why, the last error line, progress."""
    title = alert_title(alert, lang)
    where = [alert.labels.get("project") or "", alert_where(alert)]
    if alert.kind.is_state and alert.duration is not None:
        where.append(format_duration(alert.duration, lang))
    subtitle = " · ".join(part for part in where if part)
    body: list[str] = []
    said = summary(alert, lang)
    if said:
        body.append(said)
    evidence = evidence_fact(alert, lang)
    if evidence:
        body.append(f"{evidence[0]}: {evidence[1]}")
    if alert.output and alert.kind.is_state:
        body.append(f"{say(lang, 'output')}: {cap(alert.output[-1], 200)}")
    if alert.kind not in (AlertKind.CRASHED, AlertKind.ABORTED):  # there the summary is the error
        last = last_error_line(alert)
        if last:
            body.append(last)
    progress = []
    if alert.step is not None:
        progress.append(f"{say(lang, 'step')} {alert.step:,}")
    if alert.scalars:
        progress.append(format_scalars(alert.scalars, limit=4))
    if progress:
        body.append(" · ".join(progress))
    trend = trend_line(alert)
    if trend:
        body.append(trend)
    if alert.user_labels:
        body.append(format_labels(alert.user_labels, limit=4))
    if alert.kind.is_state and alert.kind != AlertKind.FINISHED:
        life = [f"{say(lang, 'heartbeat')} {age(alert.last_beat, alert.created, lang)}"]
        if alert.pid is not None:
            life.append(f"pid {alert.pid}")
        body.append(" · ".join(life))
    return BarkText(cap(title, 120), cap(subtitle, 120), cap("\n".join(body), BODY_MAX_CHARS))


def _check_level(level: Optional[object]) -> list[tuple[str, str]]:
    if level is None:
        return []
    if isinstance(level, str):
        return [] if level in LEVELS else [("level", f"must be one of {', '.join(LEVELS)}")]
    if isinstance(level, Mapping):
        problems = []
        for state, value in level.items():
            if state not in _LEVEL_KEYS:
                known = ", ".join(sorted(_LEVEL_KEYS))
                problems.append((f"level.{state}", f"unknown alert state (known: {known})"))
            elif value not in LEVELS:
                problems.append((f"level.{state}", f"must be one of {', '.join(LEVELS)}"))
        return problems
    return [("level", "must be a level name or a map of alert state to level")]
