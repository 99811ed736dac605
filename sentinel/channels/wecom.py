"""WeCom (企业微信) group robot: markdown (or text) messages to a group.

``POST https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=<key>``. An HTTP
200 proves nothing: the JSON ``errcode`` must be 0. A robot may send 20
messages a minute; 45009 ("api freq out of limit") is retried after a
minute. 93000 is a removed robot or a wrong key: permanent.

``markdown`` content may be 4,096 bytes, ``text`` 2,048 (UTF-8): a long
traceback is cut from its start. ``format: text`` is for ``mentioned_list``
/ ``mentioned_mobile_list`` (``@all`` works), which markdown messages ignore.
"""

from __future__ import annotations

from typing import Any, ClassVar, Mapping, Optional, Sequence, Tuple
from urllib.parse import parse_qs, urlsplit

from sentinel.channels import http
from sentinel.channels.base import Channel, DeliveryError, register
from sentinel.channels.fit import fit_message, how_many_fit, utf8_len
from sentinel.channels.options import check_language, check_url, unknown_keys
from sentinel.channels.plain import digest_title, plain_digest, plain_text
from sentinel.common.redact import redact
from sentinel.model.alerts import Alert
from sentinel.model.endings import Tone
from sentinel.model.render import cap, error_tail, facts, headline, say, summary
from sentinel.model.render import emoji as kind_emoji
from sentinel.model.render import title as alert_title

HOST = "qyapi.weixin.qq.com"
MAX_MARKDOWN_BYTES = 4096
MAX_TEXT_BYTES = 2048
FORMATS = ("markdown", "text")
RATE_LIMIT = (19, 60.0)  # one below 20 a minute, as for DingTalk
THROTTLED_FOR = 60.0
ERR_THROTTLED = 45009
ERR_BAD_URL = 93000
ERR_BUSY = -1
# Each ending's tone (sentinel.model.endings) as a WeCom font colour (green, grey, orange).
COLOR = {Tone.GOOD: "info", Tone.INFO: "comment", Tone.WARNING: "warning", Tone.BAD: "warning"}


def _md(text: str) -> str:
    # WeCom markdown: "*" and "`" would start markup, "<" a <font> tag.
    return text.replace("*", "\\*").replace("`", "'").replace("<", "＜")


def render_markdown(alert: Alert, lang: str, max_bytes: int = MAX_MARKDOWN_BYTES) -> str:
    color = COLOR[alert.kind.ending.tone]
    head = f'### <font color="{color}">{_md(cap(alert_title(alert, lang), 200))}</font>'
    said = _md(cap(summary(alert, lang), 600))
    pairs = [(label, _md(cap(value, 160))) for label, value in facts(alert, lang)]

    def render(tail: Optional[str], kept: int) -> str:
        lines = [head]
        if said:
            lines.append(said)
        lines += [f'> {label}: <font color="comment">{value}</font>' for label, value in pairs[:kept]]
        if tail:
            lines += [f"**{say(lang, 'error')}**:"]
            lines += ["> " + _md(line) for line in tail.splitlines()]
        if alert.url:
            lines.append(f"[{say(lang, 'open')}]({alert.url})")
        return "\n".join(lines)

    return fit_message(render, error_tail(alert, 15, 3000), len(pairs), max_bytes - 16, utf8_len)


def render_markdown_digest(alerts: Sequence[Alert], lang: str) -> str:
    lines = [f"### {_md(digest_title(alerts, lang))}"]
    for alert in alerts:
        lines.append(f"{kind_emoji(alert.kind)} **{_md(cap(headline(alert, lang), 120))}**")
        said = summary(alert, lang)
        if said:
            lines.append(f"> {_md(cap(said.splitlines()[0], 160))}")
    return "\n".join(lines)


@register
class WeComChannel(Channel):
    type_name: ClassVar[str] = "wecom"
    max_message_bytes: ClassVar[Optional[int]] = MAX_MARKDOWN_BYTES
    min_interval: ClassVar[float] = 1.0
    rate_limit: ClassVar[Optional[Tuple[int, float]]] = RATE_LIMIT
    supports_digest: ClassVar[bool] = True
    OPTIONS = ("webhook_url", "format", "mentioned_list", "mentioned_mobile_list", "language")

    def __init__(self, name: str, options: Mapping[str, Any], language: str = "en", **kwargs: Any) -> None:
        super().__init__(name, options, language, **kwargs)
        self.webhook_url: str = self.options["webhook_url"]
        self.format: str = self.options.get("format") or "markdown"

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> list[tuple[str, str]]:
        problems = unknown_keys(options, cls.OPTIONS)
        problems += check_url(options, "webhook_url", required=True)
        problems += check_language(options)
        if options.get("format") not in (None, *FORMATS):
            problems.append(("format", f"must be one of {', '.join(FORMATS)}"))
        for key in ("mentioned_list", "mentioned_mobile_list"):
            value = options.get(key)
            if value is not None and not (
                isinstance(value, list)
                and value
                and all(isinstance(v, (str, int)) and str(v).strip() for v in value)
            ):
                problems.append((key, 'must be a list of user ids / phone numbers ("@all" for everyone)'))
            elif value is not None and options.get("format") != "text":
                problems.append((key, "works only with format: text (markdown messages cannot mention)"))
        url = options.get("webhook_url")
        if isinstance(url, str) and not problems:
            parts = urlsplit(url)
            if parts.hostname == HOST and not parse_qs(parts.query).get("key"):
                problems.append(("webhook_url", "has no key (copy the robot's whole Webhook URL)"))
        return problems

    @classmethod
    def destination_hosts(cls, options: Mapping[str, Any]) -> Optional[list[str]]:
        return cls.hosts_of(options["webhook_url"])

    def secrets(self) -> list[str]:
        values = [self.webhook_url, *parse_qs(urlsplit(self.webhook_url).query).get("key", [])]
        return [v for v in values if v]

    def pace_key(self) -> str:
        return self.destination_key(self.webhook_url)

    def payload(self, alert: Alert) -> dict[str, Any]:
        lang = self.language_for(alert)
        if self.format == "text":
            head = cap(alert_title(alert, lang), 200) + "\n"
            return self._text(head + plain_text(alert, lang, MAX_TEXT_BYTES - utf8_len(head), utf8_len))
        return {"msgtype": "markdown", "markdown": {"content": render_markdown(alert, lang)}}

    def _text(self, text: str) -> dict[str, Any]:
        body: dict[str, Any] = {"content": text}
        for key in ("mentioned_list", "mentioned_mobile_list"):
            if self.options.get(key):
                body[key] = [str(v).strip() for v in self.options[key]]
        return {"msgtype": "text", "text": body}

    def _digest(self, alerts: Sequence[Alert]) -> dict[str, Any]:
        lang = self.language_for(alerts[0])
        if self.format == "text":
            return self._text(digest_title(alerts, lang) + "\n\n" + plain_digest(alerts, lang))
        return {"msgtype": "markdown", "markdown": {"content": render_markdown_digest(alerts, lang)}}

    def digest_size(self, alerts: Sequence[Alert]) -> int:
        limit = MAX_TEXT_BYTES if self.format == "text" else MAX_MARKDOWN_BYTES
        return how_many_fit(
            lambda some: self._digest(some)[self.format]["content"], alerts, limit - 16, utf8_len
        )

    def send(self, alert: Alert) -> str:
        return self._post(self.payload(alert))

    def send_digest(self, alerts: Sequence[Alert]) -> str:
        return self._post(self._digest(alerts))

    def _post(self, payload: dict[str, Any]) -> str:
        answer = http.post_json(self.webhook_url, payload, secrets=self.secrets(), what="WeCom")
        return self.classify(answer)

    def classify(self, answer: http.Answer) -> str:
        http.raise_for_status(answer, what="WeCom", secrets=self.secrets())
        data = answer.json()
        if not (isinstance(data, dict) and "errcode" in data):
            raise DeliveryError(
                f"WeCom: HTTP {answer.status} without an errcode "
                f"({redact(answer.brief(80), self.secrets())!r}); check webhook_url",
                permanent=True,
            )
        code = data.get("errcode")
        errmsg = redact(str(data.get("errmsg", "")), self.secrets()).split(", hint:")[0]
        if code == 0:
            return f"WeCom: errcode 0 {errmsg}".rstrip()
        if code == ERR_THROTTLED:
            raise DeliveryError(
                f"WeCom: errcode {code} {errmsg} (robot throttled)", retry_after=THROTTLED_FOR
            )
        if code == ERR_BUSY:
            raise DeliveryError(f"WeCom: errcode {code} {errmsg} (service busy)")
        hint = (
            " — the robot was removed or the key is wrong: copy its Webhook URL again"
            if code == ERR_BAD_URL
            else ""
        )
        raise DeliveryError(f"WeCom: errcode {code} {errmsg}{hint}", permanent=True)
