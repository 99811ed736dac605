"""Lark / Feishu (飞书) custom bot: rich-text ``post`` messages to a group.

Both hosts work (``open.feishu.cn``, ``open.larksuite.com``; also
``open.larkoffice.com``): the webhook URL says which. An HTTP 200 proves
nothing: the JSON ``code`` must be 0. 11232 means the bot is throttled
(100 messages a minute, 5 a second per bot) and is retried later; 19021 is
a bad or expired signature, 19024 a missing custom keyword, 19001 an
unknown token — configuration that will not heal by itself.

With a ``secret`` (签名校验) every request carries ``timestamp`` (seconds)
and ``sign`` in the JSON body: base64(HMAC-SHA256 with the key
"{timestamp}\\n{secret}" over an empty message), valid for an hour.

The body may be at most 20 KB: a long traceback is cut from its start, so
the headline and the traceback's last lines arrive.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any, Callable, ClassVar, Mapping, Optional, Sequence, Tuple
from urllib.parse import urlsplit

from sentinel.channels import http
from sentinel.channels.base import Channel, DeliveryError, register
from sentinel.channels.fit import fit_message, how_many_fit, utf8_len
from sentinel.channels.options import check_language, check_str, check_url, unknown_keys
from sentinel.channels.plain import digest_item, digest_title
from sentinel.common.redact import redact
from sentinel.model.alerts import Alert
from sentinel.model.render import PRODUCT, cap, error_tail, facts, say, summary
from sentinel.model.render import title as alert_title

HOSTS = ("open.feishu.cn", "open.larksuite.com", "open.larkoffice.com")
HOOK_PATH = "/open-apis/bot/v2/hook/"
MAX_BODY_BYTES = 20 * 1024
_BUDGET = 18 * 1024  # the JSON body; headroom for the signature fields
# Below the service's 5 a second and 100 a minute, measured from answers.
MIN_INTERVAL = 0.25
RATE_LIMIT = (95, 60.0)
THROTTLED_FOR = 60.0
ERR_THROTTLED = 11232
ERR_SIGNATURE = 19021
ERR_KEYWORD = 19024
ERR_TOKEN = 19001


def sign(secret: str, timestamp: int) -> str:
    """The ``sign`` body field: the string is the HMAC *key*, the message is empty."""
    key = f"{timestamp}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()


def _post_body(title: str, lines: Sequence[Sequence[dict[str, str]]], lang: str) -> dict[str, Any]:
    locale = "zh_cn" if lang == "zh" else "en_us"
    return {"msg_type": "post", "content": {"post": {locale: {"title": title, "content": list(lines)}}}}


def _text(text: str) -> list[dict[str, str]]:
    return [{"tag": "text", "text": text}]


def render_post(alert: Alert, lang: str, max_bytes: int = _BUDGET) -> dict[str, Any]:
    """One alert as a Lark ``post``: title, summary, facts, the error tail, the link."""
    title = cap(alert_title(alert, lang), 200)
    said = cap(summary(alert, lang), 3000)
    pairs = [(label, cap(value, 300)) for label, value in facts(alert, lang)]

    def render(tail: Optional[str], kept: int) -> str:
        lines = [_text(said)] if said else []
        lines += [_text(f"{label}: {value}") for label, value in pairs[:kept]]
        if tail:
            lines.append(_text(f"{say(lang, 'error')}:"))
            lines += [_text(line) for line in tail.splitlines()]
        if alert.url:
            lines.append([{"tag": "a", "text": say(lang, "open"), "href": alert.url}])
        lines.append(_text(PRODUCT))
        return json.dumps(_post_body(title, lines, lang), ensure_ascii=False)

    body = fit_message(render, error_tail(alert, 20, 6000), len(pairs), max_bytes, utf8_len)
    return json.loads(body)  # type: ignore[no-any-return]


def render_digest(alerts: Sequence[Alert], lang: str) -> dict[str, Any]:
    lines = []
    for alert in alerts:
        lines += [_text(line) for line in digest_item(alert, lang).splitlines()]
        lines.append(_text(""))
    lines.append(_text(PRODUCT))
    return _post_body(digest_title(alerts, lang), lines, lang)


@register
class LarkChannel(Channel):
    type_name: ClassVar[str] = "lark"
    max_message_bytes: ClassVar[Optional[int]] = MAX_BODY_BYTES
    min_interval: ClassVar[float] = MIN_INTERVAL
    rate_limit: ClassVar[Optional[Tuple[int, float]]] = RATE_LIMIT
    supports_digest: ClassVar[bool] = True
    OPTIONS = ("webhook_url", "secret", "language")

    def __init__(self, name: str, options: Mapping[str, Any], language: str = "en", **kwargs: Any) -> None:
        super().__init__(name, options, language, **kwargs)
        self.webhook_url: str = self.options["webhook_url"]
        self.secret: Optional[str] = self.options.get("secret") or None
        self.clock: Callable[[], float] = time.time  # signing time; tests move it

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> list[tuple[str, str]]:
        problems = unknown_keys(options, cls.OPTIONS)
        problems += check_url(options, "webhook_url", required=True)
        problems += check_str(options, "secret")
        problems += check_language(options)
        url = options.get("webhook_url")
        if isinstance(url, str) and not problems:
            parts = urlsplit(url)
            if parts.hostname in HOSTS and not (
                parts.path.startswith(HOOK_PATH) and parts.path[len(HOOK_PATH) :]
            ):
                problems.append(
                    (
                        "webhook_url",
                        f"has no bot token (expected https://{parts.hostname}"
                        f"{HOOK_PATH}<token>; copy the bot's whole webhook URL)",
                    )
                )
        return problems

    @classmethod
    def destination_hosts(cls, options: Mapping[str, Any]) -> Optional[list[str]]:
        return cls.hosts_of(options["webhook_url"])

    def secrets(self) -> list[str]:
        token = urlsplit(self.webhook_url).path.rsplit("/", 1)[-1]
        return [v for v in (self.webhook_url, token, self.secret) if v]

    def pace_key(self) -> str:
        # The limit is per bot: two channel entries naming one bot (lark or feishu) share it.
        return self.destination_key(self.webhook_url, "lark")

    def payload(self, alert: Alert) -> dict[str, Any]:
        return render_post(alert, self.language_for(alert))

    def digest_size(self, alerts: Sequence[Alert]) -> int:
        lang = self.language_for(alerts[0])
        return how_many_fit(
            lambda some: json.dumps(render_digest(some, lang), ensure_ascii=False), alerts, _BUDGET, utf8_len
        )

    def send(self, alert: Alert) -> str:
        return self._post(self.payload(alert))

    def send_digest(self, alerts: Sequence[Alert]) -> str:
        return self._post(render_digest(alerts, self.language_for(alerts[0])))

    def _post(self, payload: dict[str, Any]) -> str:
        if self.secret:
            timestamp = int(self.clock())
            payload = {"timestamp": str(timestamp), "sign": sign(self.secret, timestamp), **payload}
        answer = http.post_json(self.webhook_url, payload, secrets=self.secrets(), what="Lark")
        return self.classify(answer)

    def classify(self, answer: http.Answer) -> str:
        http.raise_for_status(answer, what="Lark", secrets=self.secrets())
        data = answer.json()
        if not (isinstance(data, dict) and ("code" in data or "StatusCode" in data)):
            raise DeliveryError(
                f"Lark: HTTP {answer.status} but not a bot's answer "
                f"({redact(answer.brief(80), self.secrets())!r}); check webhook_url",
                permanent=True,
            )
        code = data.get("code", data.get("StatusCode"))
        msg = redact(str(data.get("msg", data.get("StatusMessage", ""))), self.secrets())
        if code == 0:
            return f"Lark: code 0 {msg}".rstrip()
        if code == ERR_THROTTLED:
            raise DeliveryError(f"Lark: code {code} {msg} (bot throttled)", retry_after=THROTTLED_FOR)
        hints: dict[Any, str] = {
            ERR_SIGNATURE: "the signature is refused: `secret` must be the bot's 签名校验 secret, and this "
            "machine's clock must be right (NTP); remove `secret` if the bot does not sign",
            ERR_KEYWORD: "the bot's custom keyword (自定义关键词) is not in the message: add the keyword "
            "'sentinel' to the bot, every alert contains 'run-sentinel'",
            ERR_TOKEN: "the webhook token is unknown: was the bot removed? copy its webhook URL again",
        }
        hint = hints.get(code, "")
        raise DeliveryError(f"Lark: code {code} {msg}" + (f" — {hint}" if hint else ""), permanent=True)


@register
class FeishuChannel(LarkChannel):
    """``type: feishu``: the same bot under its Chinese name."""

    type_name: ClassVar[str] = "feishu"
