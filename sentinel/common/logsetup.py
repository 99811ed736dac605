"""Logging for the daemon and the CLI: stderr, journald priorities, secrets masked."""

from __future__ import annotations

import logging
import os
import sys
from typing import Mapping, Optional


class JournalFormatter(logging.Formatter):
    """``<N>`` syslog priority prefixes that journald turns into levels; no
    timestamp, journald adds its own."""

    PRIORITIES = {
        logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2,
    }

    def format(self, record: logging.LogRecord) -> str:
        prio = self.PRIORITIES.get(record.levelno, 6)
        text = super().format(record)
        # Each line gets the prefix, so a traceback stays at its level in the journal.
        return "\n".join(f"<{prio}>{line}" for line in text.splitlines() or [""])


class JsonFormatter(logging.Formatter):
    """One JSON object a line, for log shippers: time, level, logger, message
    (and the traceback, if any). Secrets are masked before this, on the handler."""

    def format(self, record: logging.LogRecord) -> str:
        import json

        entry = {"time": round(record.created, 6), "level": record.levelname.lower(),
                 "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


LOG_FORMATS = ("text", "json")


def stderr_is_journal(env: Optional[Mapping[str, str]] = None) -> bool:
    """True if stderr is connected to journald (systemd sets JOURNAL_STREAM
    to the device:inode of that stream)."""
    env = os.environ if env is None else env
    value = env.get("JOURNAL_STREAM")
    if not value:
        return False
    try:
        st = os.fstat(sys.stderr.fileno())
        dev, ino = (int(x) for x in value.split(":"))
    except (OSError, ValueError, AttributeError, TypeError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


def setup_logging(level: str = "info", log_format: str = "text") -> None:
    from sentinel.common.redact import RedactingFilter

    handler = logging.StreamHandler(sys.stderr)
    # On the handler, so every record from any library is masked on its way out.
    handler.addFilter(RedactingFilter())
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    elif stderr_is_journal():
        handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    # Library warnings (warnings.warn) take the same path, so each journal line has a priority.
    logging.captureWarnings(True)
