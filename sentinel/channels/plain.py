"""The plain-text layout, for services that show text as it is (ntfy, e-mail, Apprise).

``plain_text`` is one alert: the summary, the facts as "label: value"
lines, the error tail, the link — the title goes where the service shows
titles. ``plain_digest`` lists several alerts, one short block each. Both
fit a size ``limit`` (``sentinel.channels.fit``): a traceback keeps its end.
Shown as it is, possibly in a terminal (``ntfy subscribe``, a console mail
reader), so run-supplied text goes through ``sentinel.common.safetext``: no escape
sequence reaches the reader, and no line break a run name hid.
"""

from __future__ import annotations

from typing import Optional, Sequence

from sentinel.channels.fit import Measure, cut, fit_message, how_many_fit
from sentinel.common.safetext import printable, printable_lines
from sentinel.model.alerts import Alert, AlertKind
from sentinel.model.render import PRODUCT, cap, error_tail, evidence_tail, facts, headline, say, summary
from sentinel.model.render import emoji as kind_emoji
from sentinel.model.render import where as alert_where

SUMMARY_MAX = 600  # characters; a user's message may be longer (then the tail rule applies to it)
FACT_MAX = 160
MESSAGE_MAX = 3000


def plain_text(
    alert: Alert, lang: str, limit: int, measure: Measure = len, tail_lines: int = 20, tail_chars: int = 3000,
    *, stacks: bool = False,
) -> str:
    """The body of one alert in plain text, within ``limit``; with ``stacks``
    the tail holds every thread's stack before the error."""
    pairs = [(label, cap(printable(value), FACT_MAX)) for label, value in facts(alert, lang)]
    said = _lines(summary(alert, lang))
    # At most half the budget: the headline's facts and the tail's end need room too.
    said = cut(
        cap(said, MESSAGE_MAX if alert.kind == AlertKind.MESSAGE else SUMMARY_MAX), limit // 2, measure
    )

    def render(tail: Optional[str], kept: int) -> str:
        lines = [said, ""] if said else []
        lines += [f"{label}: {value}" for label, value in pairs[:kept]]
        if tail:
            lines += ["", f"{say(lang, 'error')}:", tail]
        if alert.url:
            lines += ["", f"{say(lang, 'open')}: {printable(alert.url)}"]
        return "\n".join(lines).strip("\n")

    tail = (evidence_tail if stacks else error_tail)(alert, tail_lines, tail_chars)
    return fit_message(render, _lines(tail), len(pairs), limit, measure)


def _lines(text: Optional[str]) -> str:
    """Multi-line run text (a message, a traceback), each line made printable."""
    return "\n".join(printable_lines(text)) if text else ""


def digest_title(alerts: Sequence[Alert], lang: str) -> str:
    return f"{PRODUCT}: {say(lang, 'digest').format(len(alerts))}"


def digest_item(alert: Alert, lang: str) -> str:
    lines = [f"{kind_emoji(alert.kind)} {cap(printable(headline(alert, lang)), 150)}".strip()]
    said = summary(alert, lang)
    if said:
        lines.append("  " + cap(printable(said.splitlines()[0]), 200))
    where = " · ".join(p for p in (alert.labels.get("project"), alert_where(alert)) if p)
    if where:
        lines.append("  " + cap(printable(where), 120))
    if alert.url and len(alert.url) <= 400:
        lines.append("  " + printable(alert.url))
    return "\n".join(lines)


def plain_digest(alerts: Sequence[Alert], lang: str) -> str:
    """Several alerts, oldest first (pass as many as ``plain_digest_fit`` allows)."""
    return "\n\n".join(digest_item(alert, lang) for alert in alerts)


def plain_digest_fit(alerts: Sequence[Alert], lang: str, limit: int, measure: Measure = len) -> int:
    return how_many_fit(lambda some: plain_digest(some, lang), alerts, limit, measure)
