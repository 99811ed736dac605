"""Telegram Bot API: ``sendMessage`` to a chat, ``parse_mode=HTML``.

``POST {api_url}/bot<bot_token>/sendMessage`` with ``chat_id`` and ``text``;
``api_url`` is https://api.telegram.org unless a self-hosted Bot API server
is configured. The bot token sits in the URL path: it is masked in every
log line and error.

Every value is HTML-escaped (a traceback's ``<module>`` or ``&`` would make
Telegram refuse the whole message, as SwanLab's plugin lets happen). The
text may be 4,096 characters after entity parsing (Telegram counts UTF-16
units): a long traceback is cut from its start.

Answers are ``{"ok": ...}``: 429 carries ``parameters.retry_after``
(seconds), honoured; 401 (bad token), 403 (the bot was blocked or removed
from the chat) and 400 (chat not found, a refused message) are permanent;
``migrate_to_chat_id`` names the new id of a group that became a
supergroup. Telegram allows about one message a second per chat and 20 a
minute per group: we keep below both and merge a backlog into digests.
"""

from __future__ import annotations

import html
import re
from typing import Any, ClassVar, Mapping, Optional, Sequence, Tuple

from sentinel.channels import http
from sentinel.channels.base import Channel, DeliveryError, register
from sentinel.channels.fit import fit_message, how_many_fit, utf16_len
from sentinel.channels.options import check_language, check_url, unknown_keys
from sentinel.common.redact import redact
from sentinel.model.alerts import Alert
from sentinel.model.render import PRODUCT, cap, error_tail, facts, headline, say, summary
from sentinel.model.render import emoji as kind_emoji
from sentinel.model.render import title as alert_title

DEFAULT_API_URL = "https://api.telegram.org"
MAX_TEXT = 4096  # UTF-16 code units after entity parsing
_BUDGET = 4000
RATE_LIMIT = (19, 60.0)
_TOKEN_RE = re.compile(r"^[0-9]{3,20}:[A-Za-z0-9_-]{20,100}$")
_TAG_RE = re.compile(r"<[^>]*>")


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def shown_length(text: str) -> int:
    """What Telegram counts: the text without tags, entities decoded, in UTF-16 units."""
    return utf16_len(html.unescape(_TAG_RE.sub("", text)))


def render_html(alert: Alert, lang: str, limit: int = _BUDGET) -> str:
    head = f"<b>{_e(cap(alert_title(alert, lang), 250))}</b>"
    said = _e(cap(summary(alert, lang), 1500))
    pairs = [(label, cap(value, 200)) for label, value in facts(alert, lang)]

    def render(tail: Optional[str], kept: int) -> str:
        lines = [head]
        if said:
            lines.append(said)
        lines.append("")
        lines += [f"<b>{_e(label)}</b>: {_e(value)}" for label, value in pairs[:kept]]
        if tail:
            lines += ["", f"<b>{_e(say(lang, 'error'))}</b>", f"<pre>{_e(tail)}</pre>"]
        if alert.url:
            lines += ["", f'<a href="{_e(alert.url)}">{_e(say(lang, "open"))}</a>']
        return "\n".join(lines)

    return fit_message(render, error_tail(alert, 20, 3000), len(pairs), limit, shown_length)


def render_digest(alerts: Sequence[Alert], lang: str) -> str:
    lines = [f"<b>{_e(PRODUCT)}: {_e(say(lang, 'digest').format(len(alerts)))}</b>"]
    for alert in alerts:
        lines.append(f"{kind_emoji(alert.kind)} <b>{_e(cap(headline(alert, lang), 150))}</b>")
        said = summary(alert, lang)
        if said:
            lines.append(_e(cap(said.splitlines()[0], 200)))
    return "\n".join(lines)


@register
class TelegramChannel(Channel):
    type_name: ClassVar[str] = "telegram"
    min_interval: ClassVar[float] = 1.0
    rate_limit: ClassVar[Optional[Tuple[int, float]]] = RATE_LIMIT
    supports_digest: ClassVar[bool] = True
    OPTIONS = ("bot_token", "chat_id", "api_url", "message_thread_id", "language")

    def __init__(self, name: str, options: Mapping[str, Any], language: str = "en", **kwargs: Any) -> None:
        super().__init__(name, options, language, **kwargs)
        self.bot_token: str = str(self.options["bot_token"]).strip()
        self.chat_id: str = str(self.options["chat_id"]).strip()
        self.api_url: str = (self.options.get("api_url") or DEFAULT_API_URL).rstrip("/")

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> list[tuple[str, str]]:
        problems = unknown_keys(options, cls.OPTIONS)
        token = options.get("bot_token")
        if token is None or token == "":
            problems.append(("bot_token", "required: the token @BotFather gave (123456:ABC...)"))
        elif not isinstance(token, str) or not _TOKEN_RE.match(token.strip()):
            problems.append(
                (
                    "bot_token",
                    "is not a bot token (expected digits, ':', then letters, as @BotFather gives it)",
                )
            )
        chat = options.get("chat_id")
        if chat is None or chat == "":
            problems.append(("chat_id", "required: a chat id (123456789, -100...) or @channelusername"))
        elif (
            isinstance(chat, bool)
            or not isinstance(chat, (str, int))
            or not re.match(r"^(-?[0-9]{1,20}|@[A-Za-z0-9_]{4,64})$", str(chat).strip())
        ):
            problems.append(("chat_id", "must be a numeric chat id or @channelusername"))
        problems += check_url(options, "api_url", required=False)
        thread = options.get("message_thread_id")
        if thread is not None and (isinstance(thread, bool) or not isinstance(thread, int) or thread <= 0):
            problems.append(("message_thread_id", "must be a positive integer (a forum topic's id)"))
        problems += check_language(options)
        return problems

    @classmethod
    def destination_hosts(cls, options: Mapping[str, Any]) -> Optional[list[str]]:
        return cls.hosts_of(options.get("api_url") or DEFAULT_API_URL)

    def secrets(self) -> list[str]:
        return [self.bot_token]

    def pace_key(self) -> str:
        # The limits are per chat (and per bot).
        key = f"{self.api_url}|{self.bot_token}|{self.chat_id}"
        return self.destination_key(key)

    def _call(self, text: str) -> dict[str, Any]:
        call: dict[str, Any] = {"chat_id": self.chat_id, "text": text, "parse_mode": "HTML"}
        if self.options.get("message_thread_id"):
            call["message_thread_id"] = self.options["message_thread_id"]
        return call

    def payload(self, alert: Alert) -> dict[str, Any]:
        return self._call(render_html(alert, self.language_for(alert)))

    def digest_size(self, alerts: Sequence[Alert]) -> int:
        lang = self.language_for(alerts[0])
        return how_many_fit(lambda some: render_digest(some, lang), alerts, _BUDGET, shown_length)

    def send(self, alert: Alert) -> str:
        return self._post(self.payload(alert))

    def send_digest(self, alerts: Sequence[Alert]) -> str:
        return self._post(self._call(render_digest(alerts, self.language_for(alerts[0]))))

    def _post(self, call: dict[str, Any]) -> str:
        url = f"{self.api_url}/bot{self.bot_token}/sendMessage"
        answer = http.post_json(url, call, secrets=self.secrets(), what="Telegram")
        return self.classify(answer)

    def classify(self, answer: http.Answer) -> str:
        data = answer.json()
        if not isinstance(data, dict) or "ok" not in data:
            http.raise_for_status(answer, what="Telegram", secrets=self.secrets())
            raise DeliveryError(
                f"Telegram: HTTP {answer.status} but not a Bot API answer "
                f"({redact(answer.brief(80), self.secrets())!r}); check api_url",
                permanent=True,
            )
        if data.get("ok") is True:
            message_id = (data.get("result") or {}).get("message_id")
            return f"Telegram: ok, message {message_id}"
        code = data.get("error_code", answer.status)
        description = redact(str(data.get("description", "")), self.secrets())
        found = data.get("parameters")
        parameters: dict[str, Any] = found if isinstance(found, dict) else {}
        if code == 429 or answer.status == 429:
            retry = parameters.get("retry_after")
            seconds = float(retry) if isinstance(retry, (int, float)) and retry == retry else None
            raise DeliveryError(
                f"Telegram: {code} {description}",
                retry_after=min(max(0.0, seconds), http.MAX_RETRY_AFTER) if seconds else None,
            )
        if isinstance(code, int) and code >= 500:
            raise DeliveryError(f"Telegram: {code} {description}")
        hint = ""
        if parameters.get("migrate_to_chat_id") is not None:
            hint = f" — the group became a supergroup: set chat_id to {parameters['migrate_to_chat_id']}"
        elif code == 401:
            hint = " — the bot token is wrong or was revoked: ask @BotFather for the current one"
        elif code == 403:
            hint = " — the bot was blocked or removed from the chat: add it again (or /start it)"
        elif "chat not found" in description:
            hint = " — check chat_id, and that the bot is a member of that chat"
        raise DeliveryError(f"Telegram: {code} {description}{hint}", permanent=True)
