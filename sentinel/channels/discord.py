"""Discord webhook: one message with an embed.

``POST {webhook_url}?wait=true``: without ``wait`` Discord answers 204 even
for a message it did not save ("when false a message that is not saved
does not return an error"), so a refused alert would vanish in silence.
With it, 200 and the message is the proof.

429 carries ``retry_after`` (JSON, seconds) and ``Retry-After``: retried no
sooner. 404 means the webhook was deleted ("you should not attempt to use
it again"): permanent, as are 401/403 and 400 (a refused message). Limits:
``content`` 2,000 characters; an embed's title 256, description 4,096,
fields 25 × (256, 1,024), and all embeds together 6,000 — a long traceback
is cut from its start to fit. Mentions in a run's name cannot ping anyone
(``allowed_mentions`` is empty).

Pacing: a webhook allows about 5 requests per 2 seconds (the
``X-RateLimit-*`` headers say so); we send at most one every 0.6 s and 28 a
minute, and merge a backlog into digests.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar, Mapping, Optional, Sequence, Tuple
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from sentinel.channels import http
from sentinel.channels.base import Channel, DeliveryError, register
from sentinel.channels.fit import fit_message, how_many_fit
from sentinel.channels.options import check_language, check_str, check_url, unknown_keys
from sentinel.common.redact import redact
from sentinel.model.alerts import Alert
from sentinel.model.endings import Tone
from sentinel.model.render import PRODUCT, cap, error_tail, facts, headline, say, summary
from sentinel.model.render import emoji as kind_emoji
from sentinel.model.render import title as alert_title

MAX_CONTENT = 2000
MAX_EMBED_TOTAL = 6000
MAX_DESCRIPTION = 4096
_EMBED_BUDGET = 5800
HOSTS = ("discord.com", "discordapp.com", "canary.discord.com", "ptb.discord.com")
# Each ending's tone (sentinel.model.endings) in Discord's palette.
COLORS = {Tone.GOOD: 0x2ECC71, Tone.INFO: 0x3498DB, Tone.WARNING: 0xF1C40F, Tone.BAD: 0xE74C3C}
FAILURE_COLOR = COLORS[Tone.BAD]
NO_MENTIONS: dict[str, list[str]] = {"parse": []}


def _escape(text: str) -> str:
    # A value never turns into markup or a ping.
    return (
        text.replace("\\", "\\\\")
        .replace("*", "\\*")
        .replace("_", "\\_")
        .replace("`", "'")
        .replace("~", "\\~")
        .replace("|", "\\|")
        .replace("@", "@\u200b")
    )


def embed_size(embed: Mapping[str, Any]) -> int:
    """Characters that count against Discord's 6,000 per message."""
    size = len(embed.get("title", "")) + len(embed.get("description", ""))
    size += len((embed.get("footer") or {}).get("text", "")) + len(
        (embed.get("author") or {}).get("name", "")
    )
    return size + sum(len(f["name"]) + len(f["value"]) for f in embed.get("fields", []))


def render_embed(alert: Alert, lang: str) -> dict[str, Any]:
    said = _escape(cap(summary(alert, lang), 1000))
    pairs = [
        {"name": cap(label, 256), "value": _escape(cap(value, 200)), "inline": True}
        for label, value in facts(alert, lang)
    ][:25]
    head = cap(headline(alert, lang), 250)

    def render(tail: Optional[str], kept: int) -> str:
        description = said
        if tail:
            code = tail.replace("```", "'''")
            description += f"\n\n**{say(lang, 'error')}**\n```\n{code}\n```"
        embed: dict[str, Any] = {
            "title": f"{kind_emoji(alert.kind)} {head}".strip(),
            "description": description,
            "color": COLORS[alert.kind.ending.tone],
            "fields": pairs[:kept],
            "footer": {"text": f"{PRODUCT} · {cap(alert.alert_id, 120)}"},
        }
        if alert.url and len(alert.url) <= 2000:
            embed["url"] = alert.url
        return json.dumps(embed, ensure_ascii=False)

    def measure(text: str) -> int:
        embed = json.loads(text)
        over = len(embed["description"]) > MAX_DESCRIPTION
        return MAX_EMBED_TOTAL * 2 if over else embed_size(embed)

    fitted = fit_message(render, error_tail(alert, 20, 3500), len(pairs), _EMBED_BUDGET, measure)
    return json.loads(fitted)  # type: ignore[no-any-return]


def render_digest(alerts: Sequence[Alert], lang: str) -> dict[str, Any]:
    items = []
    for alert in alerts:
        item = f"{kind_emoji(alert.kind)} **{_escape(cap(headline(alert, lang), 150))}**"
        said = summary(alert, lang)
        if said:
            item += "\n" + _escape(cap(said.splitlines()[0], 200))
        items.append(item)
    title = f"{PRODUCT}: {say(lang, 'digest').format(len(alerts))}"
    return {
        "title": title,
        "description": "\n".join(items),
        "color": FAILURE_COLOR,
        "footer": {"text": PRODUCT},
    }


@register
class DiscordChannel(Channel):
    type_name: ClassVar[str] = "discord"
    max_message_bytes: ClassVar[Optional[int]] = None  # characters, not bytes: see the module docstring
    min_interval: ClassVar[float] = 0.6
    rate_limit: ClassVar[Optional[Tuple[int, float]]] = (28, 60.0)
    supports_digest: ClassVar[bool] = True
    OPTIONS = ("webhook_url", "username", "language")

    def __init__(self, name: str, options: Mapping[str, Any], language: str = "en", **kwargs: Any) -> None:
        super().__init__(name, options, language, **kwargs)
        self.webhook_url: str = self.options["webhook_url"]

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> list[tuple[str, str]]:
        problems = unknown_keys(options, cls.OPTIONS)
        problems += check_url(options, "webhook_url", required=True)
        problems += check_str(options, "username")
        problems += check_language(options)
        url = options.get("webhook_url")
        if isinstance(url, str) and not problems:
            parts = urlsplit(url)
            segments = [s for s in parts.path.split("/") if s]
            if parts.hostname in HOSTS and (len(segments) < 4 or segments[-3] != "webhooks"):
                problems.append(
                    (
                        "webhook_url",
                        "is not a webhook URL (expected https://discord.com/api/webhooks/<id>/<token>)",
                    )
                )
        username = options.get("username")
        if isinstance(username, str) and not 1 <= len(username) <= 80:
            problems.append(("username", "must be 1-80 characters"))
        return problems

    @classmethod
    def destination_hosts(cls, options: Mapping[str, Any]) -> Optional[list[str]]:
        return cls.hosts_of(options["webhook_url"])

    def secrets(self) -> list[str]:
        token = urlsplit(self.webhook_url).path.rstrip("/").rsplit("/", 1)[-1]
        return [v for v in (self.webhook_url, token) if v]

    def pace_key(self) -> str:
        return self.destination_key(self.webhook_url)

    def post_url(self) -> str:
        """The webhook URL with ``wait=true`` (a refused message is then an error, not silence)."""
        parts = urlsplit(self.webhook_url)
        query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "wait"]
        return urlunsplit(parts._replace(query=urlencode([*query, ("wait", "true")])))

    def _message(self, content: str, embed: dict[str, Any]) -> dict[str, Any]:
        message: dict[str, Any] = {
            "content": cap(_escape(content), MAX_CONTENT),
            "embeds": [embed],
            "allowed_mentions": NO_MENTIONS,
        }
        if self.options.get("username"):
            message["username"] = self.options["username"]
        return message

    def payload(self, alert: Alert) -> dict[str, Any]:
        lang = self.language_for(alert)
        return self._message(cap(alert_title(alert, lang), 300), render_embed(alert, lang))

    def digest_size(self, alerts: Sequence[Alert]) -> int:
        lang = self.language_for(alerts[0])
        return how_many_fit(lambda some: render_digest(some, lang)["description"], alerts, MAX_DESCRIPTION)

    def send(self, alert: Alert) -> str:
        return self._post(self.payload(alert))

    def send_digest(self, alerts: Sequence[Alert]) -> str:
        lang = self.language_for(alerts[0])
        embed = render_digest(alerts, lang)
        return self._post(self._message(embed["title"], embed))

    def _post(self, payload: dict[str, Any]) -> str:
        answer = http.post_json(self.post_url(), payload, secrets=self.secrets(), what="Discord")
        return self.classify(answer)

    def classify(self, answer: http.Answer) -> str:
        secrets = self.secrets()
        data = answer.json()
        if answer.status in (200, 204):
            message_id = data.get("id") if isinstance(data, dict) else None
            return f"Discord: {answer.status}" + (f" message {message_id}" if message_id else "")
        brief = redact(answer.brief(160), secrets)
        if answer.status == 429:
            retry = data.get("retry_after") if isinstance(data, dict) else None
            header = http.parse_retry_after(answer.headers.get("Retry-After"))
            seconds = max(
                float(retry) if isinstance(retry, (int, float)) and retry == retry else 0.0, header or 0.0
            )
            raise DeliveryError(
                f"Discord: HTTP 429 rate limited: {brief}",
                retry_after=min(seconds, http.MAX_RETRY_AFTER) or None,
            )
        if answer.status == 404:
            raise DeliveryError(
                "Discord: HTTP 404 — the webhook was deleted; create a new one and update webhook_url",
                permanent=True,
            )
        if answer.status in (401, 403):
            raise DeliveryError(
                f"Discord: HTTP {answer.status} — the webhook token is not valid: {brief}", permanent=True
            )
        http.raise_for_status(answer, what="Discord", secrets=secrets)
        raise DeliveryError(f"Discord: HTTP {answer.status} {brief}", permanent=True)
