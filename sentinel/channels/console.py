"""The embedded default: alerts printed to the daemon's terminal / journal.

A newcomer running ``sentinel daemon`` with no config sees it work at once.
"""

from __future__ import annotations

import sys
from typing import Any, ClassVar, Mapping

from sentinel.alerts import Alert
from sentinel.channels.base import Channel
from sentinel.channels.options import check_language, language_for, unknown_keys
from sentinel.render import render_text

STREAMS = ("stdout", "stderr")


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

    def send(self, alert: Alert) -> str:
        name = self.options.get("stream") or "stdout"
        # Looked up at send time: whoever replaced sys.stdout (a test, a
        # service manager's wrapper) gets the text.
        stream = sys.stderr if name == "stderr" else sys.stdout
        print(render_text(alert, language_for(self, alert)) + "\n", file=stream, flush=True)
        return f"printed to {name}"
