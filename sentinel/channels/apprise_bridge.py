"""Apprise: the long tail of services (~190), one ``url`` each.

``type: apprise`` with an Apprise URL (``pover://user@token``,
``mailtos://...``, ``matrix://...``, ``json://host/path``; see Apprise's
README). Needs the optional extra: ``pip install 'run-sentinel[apprise]'``;
``apprise`` is imported only here, when such a channel is checked or used.

Apprise keeps nothing durable: a failed notification is retried only
within the call (``?retry=``), in memory, and its throttling sleeps
(``time.sleep``) block the caller. So run-sentinel wraps it: every alert
goes through our outbox first, our delivery worker (its own thread) calls
Apprise once per attempt, and a failure is retried on our schedule, across
daemon restarts, with our pacing (one request a second) and digests for a
backlog. Apprise says only "failed", never why it is permanent, so every
failure is retried until the outbox gives up; the reason it logged is kept
(with secrets masked).
"""

from __future__ import annotations

import concurrent.futures.thread  # noqa: F401  (see _notify: Apprise's plugins import it lazily)
import logging
from typing import Any, ClassVar, Mapping, Sequence

from sentinel.channels.base import Channel, DeliveryError, register
from sentinel.channels.options import check_language, unknown_keys
from sentinel.channels.plain import digest_title, plain_digest, plain_digest_fit, plain_text
from sentinel.common.redact import redact
from sentinel.common.safetext import printable
from sentinel.model.alerts import Alert, AlertKind
from sentinel.model.endings import Tone
from sentinel.model.render import title as alert_title

MAX_TEXT = 4000  # characters: what most services Apprise talks to show in full
INSTALL = "needs the apprise package: pip install 'run-sentinel[apprise]'"


def _apprise() -> Any:
    import apprise  # optional dependency

    return apprise


# Each ending's tone (sentinel.model.endings) as an Apprise notify type.
NOTIFY_TYPES = {Tone.GOOD: "SUCCESS", Tone.INFO: "INFO", Tone.WARNING: "WARNING", Tone.BAD: "FAILURE"}


def _notify_type(apprise: Any, kind: AlertKind) -> Any:
    return getattr(apprise.NotifyType, NOTIFY_TYPES[kind.ending.tone])


@register
class AppriseChannel(Channel):
    type_name: ClassVar[str] = "apprise"
    min_interval: ClassVar[float] = 1.0
    supports_digest: ClassVar[bool] = True
    OPTIONS = ("url", "language")

    def __init__(self, name: str, options: Mapping[str, Any], language: str = "en", **kwargs: Any) -> None:
        super().__init__(name, options, language, **kwargs)
        self.url: str = self.options["url"]

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> list[tuple[str, str]]:
        problems = unknown_keys(options, cls.OPTIONS)
        problems += check_language(options)
        url = options.get("url")
        if url is None or url == "":
            return problems + [("url", "required: an Apprise URL (e.g. pover://user@token)")]
        if not isinstance(url, str) or "://" not in url:
            return problems + [("url", "must be an Apprise URL (scheme://...)")]
        try:
            apprise = _apprise()
        except ImportError:
            return problems + [("url", INSTALL)]
        if not apprise.Apprise().add(url):
            problems.append(("url", "is not a URL Apprise can use (unknown scheme or missing parts)"))
        return problems

    def secrets(self) -> list[str]:
        # The whole URL is a credential; so are its user, password and path parts.
        from urllib.parse import urlsplit

        parts = urlsplit(self.url)
        values = [self.url, parts.username, parts.password, parts.hostname if parts.username else None]
        values += [segment for segment in parts.path.split("/") if len(segment) >= 8]
        return [v for v in values if v]

    def pace_key(self) -> str:
        return self.destination_key(self.url)

    def digest_size(self, alerts: Sequence[Alert]) -> int:
        return plain_digest_fit(alerts, self.language_for(alerts[0]), MAX_TEXT)

    def send(self, alert: Alert) -> str:
        lang = self.language_for(alert)
        title = printable(alert_title(alert, lang))  # Apprise may print it (syslog, a terminal)
        return self._notify(title, plain_text(alert, lang, MAX_TEXT) or title, alert.kind)

    def send_digest(self, alerts: Sequence[Alert]) -> str:
        lang = self.language_for(alerts[0])
        worst = next(
            (a.kind for a in alerts if a.kind not in (AlertKind.FINISHED, AlertKind.MESSAGE)), alerts[0].kind
        )
        return self._notify(digest_title(alerts, lang), plain_digest(alerts, lang), worst)

    def _notify(self, title: str, body: str, kind: AlertKind) -> str:
        try:
            apprise = _apprise()
        except ImportError:
            raise DeliveryError(f"apprise: {INSTALL}", permanent=True) from None
        # The service's plugin itself, not Apprise's dispatcher: that one hands
        # the call to a thread pool, which cannot start while the interpreter
        # exits — when a training process with no daemon sends its run's end.
        plugin = apprise.Apprise.instantiate(self.url)
        if not plugin:
            raise DeliveryError("apprise: the URL is not one Apprise can use", permanent=True)
        with apprise.LogCapture(level=logging.WARNING, fmt="%(levelname)s %(message)s") as captured:
            ok = plugin.notify(body=body, title=title, notify_type=_notify_type(apprise, kind))
            said = captured.getvalue()
        if ok:
            return "apprise: sent"
        reason = " ".join(redact(said, self.secrets()).split())[-300:] or "no reason given"
        raise DeliveryError(f"apprise: not delivered ({reason})")
