"""DingTalk custom robot (自定义机器人): markdown messages to a group.

An HTTP 200 proves nothing: the JSON ``errcode`` must be 0. 130101 means the
robot sent more than 20 messages in a minute and is throttled (for about
10 minutes), so it is retried later; 310000 is a security setting of the
robot refusing us (signature, keyword or IP allow list) and will not heal by
itself. With a ``secret`` every request is signed afresh: timestamp in ms and
base64(HMAC-SHA256(secret, "{timestamp}\\n{secret}")), URL-encoded, valid for
one hour.

The 20/min limit is kept by the delivery workers (``rate_limit``); when a
backlog would exceed it they merge pending alerts into one digest
(``send_digest``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any, Callable, ClassVar, Mapping, Optional, Sequence, Tuple
from urllib.parse import parse_qs, quote_plus, urlsplit

from sentinel.channels import http
from sentinel.channels.base import Channel, DeliveryError, register
from sentinel.channels.options import check_bool, check_language, check_str, check_url, unknown_keys
from sentinel.common.redact import redact
from sentinel.model.alerts import Alert, AlertKind
from sentinel.model.render import PRODUCT, cap, error_tail, facts, headline, say, summary
from sentinel.model.render import emoji as kind_emoji
from sentinel.model.render import title as alert_title
from sentinel.model.render import where as alert_where

MAX_BYTES = 20000
_BUDGET = 18000  # headroom below the service limit for the envelope
# One below the service's 20 per minute, measured over any 60 s: arrival
# times at DingTalk differ from our send times by the network's jitter.
RATE_LIMIT = (19, 60.0)
THROTTLED_FOR = 600.0  # the service throttles an over-eager robot for 10 minutes
ERR_OK = 0
ERR_TOO_FAST = 130101
ERR_SECURITY = 310000
ERR_BUSY = -1


def sign(secret: str, timestamp_ms: int) -> str:
    """The ``sign`` query value for ``timestamp_ms`` (already URL-encoded)."""
    string_to_sign = f"{timestamp_ms}\n{secret}".encode()
    digest = hmac.new(secret.encode("utf-8"), string_to_sign, hashlib.sha256).digest()
    return quote_plus(base64.b64encode(digest))


def signed_url(webhook_url: str, secret: Optional[str], now: float) -> str:
    if not secret:
        return webhook_url
    timestamp_ms = int(round(now * 1000))
    separator = "&" if urlsplit(webhook_url).query else ("" if webhook_url.endswith("?") else "?")
    return f"{webhook_url}{separator}timestamp={timestamp_ms}&sign={sign(secret, timestamp_ms)}"


def explain_security(errmsg: str) -> str:
    """Which robot setting a 310000 points at."""
    text = errmsg.lower()
    if "sign" in text:
        return ("the signature does not match: `secret` must be the robot's 加签 secret (starts with SEC); "
                "remove `secret` if the robot does not use signing")
    if "keyword" in text:
        return ("the robot's custom keyword (自定义关键词) is not in the message: add the keyword "
                "'sentinel' to the robot, every alert contains 'run-sentinel'")
    if "ip" in text and ("whitelist" in text or "white list" in text or "allow" in text):
        return "this machine's IP address is not in the robot's IP allow list (IP地址段)"
    if "timestamp" in text:
        return "the signature timestamp is more than an hour off: check this machine's clock (NTP)"
    return "a security setting of the robot (keyword, 加签 secret or IP allow list) refused the message"


@register
class DingTalkChannel(Channel):
    type_name: ClassVar[str] = "dingtalk"
    max_message_bytes: ClassVar[Optional[int]] = MAX_BYTES
    min_interval: ClassVar[float] = 1.0
    rate_limit: ClassVar[Optional[Tuple[int, float]]] = RATE_LIMIT
    supports_digest: ClassVar[bool] = True
    OPTIONS = ("webhook_url", "secret", "at_mobiles", "at_all", "language")

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
        problems += check_bool(options, "at_all")
        problems += check_language(options)
        mobiles = options.get("at_mobiles")
        if mobiles is not None and not (
            isinstance(mobiles, list) and all(isinstance(m, (str, int)) and str(m).strip() for m in mobiles)
        ):
            problems.append(("at_mobiles", "must be a list of phone numbers"))
        url = options.get("webhook_url")
        if isinstance(url, str) and not problems:
            parts = urlsplit(url)
            if parts.hostname == "oapi.dingtalk.com" and not parse_qs(parts.query).get("access_token"):
                problems.append(("webhook_url", "has no access_token (copy the robot's whole Webhook URL)"))
        return problems

    @classmethod
    def destination_hosts(cls, options: Mapping[str, Any]) -> Optional[list[str]]:
        return [urlsplit(options["webhook_url"]).hostname or ""]

    def secrets(self) -> list[str]:
        values = [self.webhook_url, self.secret]
        values += parse_qs(urlsplit(self.webhook_url).query).get("access_token", [])
        return [v for v in values if v]

    def pace_key(self) -> str:
        # The limit is per robot: two channel entries naming one robot share it.
        return self.destination_key(self.webhook_url)

    def _at(self) -> tuple[Optional[dict], str]:
        mobiles = [str(m).strip() for m in self.options.get("at_mobiles") or []]
        at_all = bool(self.options.get("at_all"))
        if not mobiles and not at_all:
            return None, ""
        # A markdown message only notifies the people it also names in the text.
        mention = " ".join(f"@{m}" for m in mobiles) or "@all"
        return {"atMobiles": mobiles, "isAtAll": at_all}, "\n\n" + mention

    def payload(self, alert: Alert) -> dict[str, Any]:
        title, text = render_markdown(alert, self.language_for(alert))
        return self._envelope(title, text)

    def digest_payload(self, alerts: Sequence[Alert]) -> dict[str, Any]:
        title, text = render_digest_markdown(alerts, self.language_for(alerts[0]))
        return self._envelope(title, text)

    def _envelope(self, title: str, text: str) -> dict[str, Any]:
        at, mention = self._at()
        body: dict[str, Any] = {"msgtype": "markdown", "markdown": {"title": title, "text": text + mention}}
        if at is not None:
            body["at"] = at
        return body

    def digest_size(self, alerts: Sequence[Alert]) -> int:
        """How many of ``alerts`` (oldest first) one digest message can carry."""
        return digest_fit(alerts, self.language_for(alerts[0]))

    def send(self, alert: Alert) -> str:
        return self._post(self.payload(alert))

    def send_digest(self, alerts: Sequence[Alert]) -> str:
        return self._post(self.digest_payload(alerts))

    def _post(self, payload: dict[str, Any]) -> str:
        url = signed_url(self.webhook_url, self.secret, self.clock())
        answer = http.post_json(url, payload, secrets=self.secrets(), what="DingTalk")
        return self.classify(answer)

    def classify(self, answer: http.Answer) -> str:
        http.raise_for_status(answer, what="DingTalk", secrets=self.secrets())
        data = answer.json()
        if not (isinstance(data, dict) and "errcode" in data):
            raise DeliveryError(
                f"DingTalk: HTTP {answer.status} without an errcode "
                f"({redact(answer.brief(80), self.secrets())!r}); check webhook_url",
                permanent=True,
            )
        code = data.get("errcode")
        errmsg = redact(str(data.get("errmsg", "")), self.secrets())
        if code == ERR_OK:
            return f"DingTalk: errcode 0 {errmsg}".rstrip()
        if code == ERR_TOO_FAST:
            raise DeliveryError(f"DingTalk: errcode {code} {errmsg} (robot throttled)",
                                retry_after=THROTTLED_FOR)
        if code == ERR_BUSY:
            raise DeliveryError(f"DingTalk: errcode {code} {errmsg} (service busy)")
        if code == ERR_SECURITY:
            raise DeliveryError(f"DingTalk: errcode {code} {errmsg} — {explain_security(errmsg)}",
                                permanent=True)
        hint = ""
        if "token" in errmsg.lower():
            hint = " — check the access_token in webhook_url (was the robot removed?)"
        raise DeliveryError(f"DingTalk: errcode {code} {errmsg}{hint}", permanent=True)


# ---------------------------------------------------------------- the payload


def _md_escape(text: str) -> str:
    # Values never start a line (so "#" is harmless) and intraword "_" in
    # run names like "lr_3e_4" is no markup; only "*" would turn bold.
    return text.replace("*", "\\*")


def render_markdown(alert: Alert, lang: str = "en", max_bytes: int = _BUDGET) -> tuple[str, str]:
    """DingTalk markdown: (title shown in the notification, text)."""
    title = alert_title(alert, lang)
    lines = [f"### {_md_escape(title)}", ""]
    said = summary(alert, lang)
    if said:
        if alert.kind == AlertKind.MESSAGE:  # the run's own markdown, quoted: not the daemon's words
            lines += ["> " + line for line in said.splitlines()] + [""]
        else:
            lines += [_md_escape(said), ""]
    for label, value in facts(alert, lang):
        lines.append(f"- **{label}**: {_md_escape(value)}")
    tail = error_tail(alert, max_lines=15, max_chars=3000)
    if tail:
        lines += ["", f"**{say(lang, 'error')}**:", ""]
        lines += ["> " + line for line in tail.splitlines()]
    if alert.url:
        lines += ["", f"[{say(lang, 'open')}]({alert.url})"]
    lines += ["", f"<font color=#999999>{PRODUCT}</font>"]
    text = "\n".join(lines)
    return cap(title, 100), _fit_bytes(text, max_bytes)


def _digest_item(alert: Alert, lang: str) -> str:
    item = [f"- {kind_emoji(alert.kind)} **{_md_escape(cap(headline(alert, lang), 150))}**"]
    said = summary(alert, lang)
    if said:
        item.append(f"  {_md_escape(cap(said.splitlines()[0], 200))}")
    where = " · ".join(p for p in (alert.labels.get("project"), alert_where(alert)) if p)
    if where:
        item.append(f"  {_md_escape(cap(where, 120))}")
    tail = error_tail(alert, max_lines=1, max_chars=200)
    if tail:
        item.append(f"  > {tail}")
    if alert.url and len(alert.url) <= 400:
        item.append(f"  [{say(lang, 'open')}]({alert.url})")
    return "\n".join(item)


def digest_fit(alerts: Sequence[Alert], lang: str = "en", max_bytes: int = _BUDGET) -> int:
    """How many of ``alerts`` (oldest first, at least one) fit one digest."""
    used = len(render_digest_markdown(alerts[:1], lang, max_bytes=10**9)[1].encode("utf-8"))
    count = 1
    for alert in alerts[1:]:
        size = len(_digest_item(alert, lang).encode("utf-8")) + 1
        if used + size > max_bytes:
            break
        used += size
        count += 1
    return count


def render_digest_markdown(alerts: Sequence[Alert], lang: str = "en",
                           max_bytes: int = _BUDGET) -> tuple[str, str]:
    """Several alerts for one robot in one DingTalk message, oldest first:
    when a burst would exceed the robot's 20/min, one digest says it all.
    Use ``digest_fit`` to choose how many alerts to pass."""
    title = f"{PRODUCT}: {say(lang, 'digest').format(len(alerts))}"
    lines = [f"### {title}", ""]
    lines += [_digest_item(alert, lang) for alert in alerts]
    lines += ["", f"<font color=#999999>{PRODUCT}</font>"]
    return title, _fit_bytes("\n".join(lines), max_bytes)


def _fit_bytes(text: str, max_bytes: int) -> str:
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return text
    return data[: max_bytes - 3].decode("utf-8", "ignore") + "…"
