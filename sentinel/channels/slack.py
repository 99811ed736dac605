"""Slack incoming webhook: ``text`` (notification and fallback) + Block Kit ``blocks``.

200 ``ok`` is success, and only that body: a 200 with an error is not.
429 (with Retry-After) and 5xx are transient. The
4xx answers Slack documents for webhooks name a configuration that will not
heal by itself, so they are permanent, each with what to do about it.
Slack allows about one message per second per webhook (``min_interval``);
a larger backlog is merged into digests (``send_digest``) by the delivery
workers rather than trickled out over minutes.
"""

from __future__ import annotations

from typing import Any, ClassVar, Mapping, Optional, Sequence
from urllib.parse import urlsplit

from sentinel.channels import http
from sentinel.channels.base import Channel, DeliveryError, register
from sentinel.channels.options import check_language, check_url, unknown_keys
from sentinel.common.redact import redact
from sentinel.model.alerts import Alert, AlertKind
from sentinel.model.render import PRODUCT, cap, error_tail, facts, say, summary
from sentinel.model.render import title as alert_title
from sentinel.model.render import where as alert_where

SECTION_MAX = 3000
HEADER_MAX = 150
# Block Kit allows 50 blocks a message: a header, the items, a context line.
DIGEST_MAX = 48

ERRORS = {
    "invalid_payload": "Slack could not understand the message; please report this as a run-sentinel bug",
    "no_text": "Slack got a message without text; please report this as a run-sentinel bug",
    "invalid_blocks": "Slack refused the message layout; please report this as a run-sentinel bug",
    "invalid_blocks_format": "Slack refused the message layout; please report this as a run-sentinel bug",
    "user_not_found": "the user this webhook posts as does not exist",
    "action_prohibited": "the workspace restricts this webhook; ask a Slack admin",
    "invalid_token": "the webhook's token is no longer valid; create a new incoming webhook",
    "no_service": "the webhook was removed or disabled; create a new one and update webhook_url",
    "no_service_id": "the webhook URL is incomplete; copy it again from Slack",
    "no_team": "the Slack workspace no longer exists",
    "team_disabled": "the Slack workspace is disabled",
    "channel_not_found": "the webhook's channel no longer exists; create a webhook for another channel",
    "channel_is_archived": "the webhook's channel is archived; unarchive it or use another channel",
    "posting_to_general_channel_denied": "only admins may post to this channel",
}


@register
class SlackChannel(Channel):
    type_name: ClassVar[str] = "slack"
    min_interval: ClassVar[float] = 1.0
    supports_digest: ClassVar[bool] = True
    OPTIONS = ("webhook_url", "language")

    def __init__(self, name: str, options: Mapping[str, Any], language: str = "en", **kwargs: Any) -> None:
        super().__init__(name, options, language, **kwargs)
        self.webhook_url: str = self.options["webhook_url"]

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> list[tuple[str, str]]:
        problems = unknown_keys(options, cls.OPTIONS)
        problems += check_url(options, "webhook_url", required=True)
        problems += check_language(options)
        return problems

    @classmethod
    def destination_hosts(cls, options: Mapping[str, Any]) -> Optional[list[str]]:
        return [urlsplit(options["webhook_url"]).hostname or ""]

    def secrets(self) -> list[str]:
        # The path after /services/ is the credential.
        path_parts = [p for p in self.webhook_url.split("/services/", 1)[-1].split("/") if len(p) >= 8]
        return [self.webhook_url, *path_parts]

    def pace_key(self) -> str:
        return self.destination_key(self.webhook_url)

    def payload(self, alert: Alert) -> dict[str, Any]:
        return render_slack(alert, self.language_for(alert))

    def send(self, alert: Alert) -> str:
        return self._post(self.payload(alert))

    def digest_size(self, alerts: Sequence[Alert]) -> int:
        """How many of ``alerts`` (oldest first) one digest message can carry."""
        return min(len(alerts), DIGEST_MAX)

    def send_digest(self, alerts: Sequence[Alert]) -> str:
        return self._post(render_slack_digest(alerts, self.language_for(alerts[0])))

    def _post(self, payload: dict[str, Any]) -> str:
        answer = http.post_json(self.webhook_url, payload, secrets=self.secrets(), what="Slack")
        return self.classify(answer)

    def classify(self, answer: http.Answer) -> str:
        body = redact(answer.brief(120), self.secrets())
        error = body.strip()
        if 200 <= answer.status < 300:
            if error == "ok":
                return f"Slack: {answer.status} {body}".rstrip()
            # A 2xx with an error body is no delivery: a documented error is
            # as permanent as with its 4xx; anything else (a proxy's page) is retried.
            if error in ERRORS:
                raise DeliveryError(f"Slack: HTTP {answer.status} {error} — {ERRORS[error]}", permanent=True)
            raise DeliveryError(f"Slack: HTTP {answer.status} but not ok: {error!r}")
        if answer.status == 429 or answer.status >= 500:
            http.raise_for_status(answer, what="Slack", secrets=self.secrets())
        if error in ERRORS:
            raise DeliveryError(f"Slack: HTTP {answer.status} {error} — {ERRORS[error]}", permanent=True)
        http.raise_for_status(answer, what="Slack", secrets=self.secrets())
        raise DeliveryError(f"Slack: HTTP {answer.status} {error}", permanent=True)  # 1xx: not reached


# ---------------------------------------------------------------- the payload


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def render_slack(alert: Alert, lang: str = "en") -> dict:
    """Slack: ``text`` (notification + fallback) and Block Kit ``blocks``."""
    title = alert_title(alert, lang)
    said = summary(alert, lang)
    text = f"{title} — {said}" if said else title
    blocks: list[dict] = [
        {"type": "header",
         "text": {"type": "plain_text", "text": cap(title, HEADER_MAX), "emoji": True}}
    ]
    if said:
        shown = _slack_escape(said)
        if alert.kind == AlertKind.MESSAGE:  # the run's words, quoted: not the daemon's
            shown = "\n".join("> " + line for line in shown.splitlines())
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": cap(shown, SECTION_MAX)}})
    fields = [
        {"type": "mrkdwn", "text": cap(f"*{label}*\n{_slack_escape(value)}", 2000)}
        for label, value in facts(alert, lang)
    ][:10]  # Block Kit allows at most 10 fields per section
    if fields:
        blocks.append({"type": "section", "fields": fields})
    tail = error_tail(alert, max_lines=20, max_chars=SECTION_MAX - 10)
    if tail:
        code = _slack_escape(tail).replace("```", "ˋˋˋ")  # a fence inside would end the block
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"```{code}```"}})
    if alert.url:
        blocks.append({"type": "actions", "elements": [
            {"type": "button", "text": {"type": "plain_text", "text": say(lang, "open")}, "url": alert.url}
        ]})
    blocks.append({"type": "context", "elements": [
        {"type": "mrkdwn", "text": _slack_escape(f"{PRODUCT} · {alert.alert_id}")}
    ]})
    return {"text": cap(text, 3000), "blocks": blocks}


def render_slack_digest(alerts: Sequence[Alert], lang: str = "en") -> dict:
    """Several alerts in one Slack message, oldest first: a backlog that
    pacing (one message a second) would spread over minutes arrives at once.
    Pass at most ``DIGEST_MAX`` alerts."""
    title = f"{PRODUCT}: {say(lang, 'digest').format(len(alerts))}"
    blocks: list[dict] = [{"type": "header", "text": {"type": "plain_text", "text": title, "emoji": True}}]
    lines = []
    for alert in alerts[:DIGEST_MAX]:
        head = alert_title(alert, lang)
        said = summary(alert, lang)
        where = " · ".join(p for p in (alert.labels.get("project"), alert_where(alert)) if p)
        item = f"*{_slack_escape(cap(head, 150))}*"
        if said:
            item += "\n" + _slack_escape(cap(said.splitlines()[0], 300))
        if where:
            item += "\n" + _slack_escape(cap(where, 120))
        if alert.url and len(alert.url) <= 400:
            item += f"\n<{alert.url}|{say(lang, 'open')}>"
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": cap(item, SECTION_MAX)}})
        lines.append(head)
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": PRODUCT}]})
    text = f"{title} — " + "; ".join(lines)
    return {"text": cap(text, 3000), "blocks": blocks}
