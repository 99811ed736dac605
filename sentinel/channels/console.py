"""The embedded default: alerts printed to the daemon's terminal / journal.

A newcomer running ``sentinel daemon`` with no config sees it work at once.
"""

from __future__ import annotations

import sys
import unicodedata
from typing import Any, ClassVar, Mapping, Optional

from sentinel.channels.base import Channel, register
from sentinel.channels.options import check_language, unknown_keys
from sentinel.common.safetext import printable, printable_lines
from sentinel.model.alerts import Alert, AlertKind
from sentinel.model.render import error_tail, facts, say, summary
from sentinel.model.render import title as alert_title

STREAMS = ("stdout", "stderr")


@register
class ConsoleChannel(Channel):
    type_name: ClassVar[str] = "console"
    OPTIONS = ("language", "stream")

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> list[tuple[str, str]]:
        problems = unknown_keys(options, cls.OPTIONS)
        problems += check_language(options)
        stream = options.get("stream")
        if stream is not None and stream not in STREAMS:
            problems.append(("stream", f"must be one of {', '.join(STREAMS)}"))
        return problems

    @classmethod
    def destination_hosts(cls, options: Mapping[str, Any]) -> Optional[list[str]]:
        return []  # the daemon's own output: no network

    def send(self, alert: Alert) -> str:
        name = self.options.get("stream") or "stdout"
        # Looked up at send time: whoever replaced sys.stdout (a test, a
        # service manager's wrapper) gets the text.
        stream = sys.stderr if name == "stderr" else sys.stdout
        print(render_text(alert, self.language_for(alert)) + "\n", file=stream, flush=True)
        return f"printed to {name}"


def render_text(alert: Alert, lang: str = "en") -> str:
    """Plain text for a terminal (the console channel). Run-supplied text is
    ``printable``: no escape sequence or forged line reaches the terminal."""
    lines = [printable(alert_title(alert, lang))]
    said = summary(alert, lang)
    if said:
        lines.append(f"  {printable(said)}" if alert.kind != AlertKind.MESSAGE
                     else _indent("\n".join(printable_lines(said))))
    width = max((_width(label) for label, _ in facts(alert, lang)), default=0)
    for label, value in facts(alert, lang):
        lines.append(f"  {label}{' ' * (width - _width(label))}  {printable(value)}")
    tail = error_tail(alert)
    if tail:
        lines.append(f"  {say(lang, 'error')}:")
        lines.extend("    " + line for line in printable_lines(tail))
    if alert.url:
        lines.append(f"  {say(lang, 'link')}: {printable(alert.url)}")
    return "\n".join(lines)


def _width(text: str) -> int:
    """Terminal columns: CJK characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())
