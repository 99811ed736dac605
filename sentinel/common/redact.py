"""Keep secrets out of every log line, error message and traceback we print.

Two layers, because either alone leaks: the exact values a channel declares
secret (``Channel.secrets()``) are replaced wherever they occur, and a few
well-known shapes are masked even when nobody declared them (query parameters
named like credentials, Slack webhook paths).

A process-wide registry (``register``) lets a logging filter redact records
written by code that never saw the channel (e.g. urllib3 debug lines).
Stdlib only.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Iterable, Optional
from urllib.parse import quote, quote_plus

MASK = "***"

# Values shorter than this are not treated as secrets: masking "a" everywhere
# would destroy every message and protect nothing.
MIN_SECRET_LENGTH = 4

_QUERY_SECRET = re.compile(
    r"(?i)([?&](?:access_token|token|sign|key|secret|api_key|apikey|device_key)=)[^&#\s\"']+"
)
_SLACK_HOOK = re.compile(r"(/services/)[A-Za-z0-9_\-]+/[A-Za-z0-9_\-]+/[A-Za-z0-9_\-]+")
_JSON_SECRET = re.compile(r"(?i)(\"(?:secret|key|device_key|api_key|webhook_url|token)\"\s*:\s*\")[^\"]*(\")")

_lock = threading.RLock()  # a SIGTERM handler's finish may redact in the thread that holds it
_registered: set[str] = set()


def _variants(secret: str) -> set[str]:
    """A secret as it may appear in text: raw, URL-quoted, form-quoted."""
    return {secret, quote(secret, safe=""), quote_plus(secret)}


def redact(text: object, secrets: Iterable[Optional[str]] = ()) -> str:
    """``text`` with every secret (given or registered) and every credential
    shape masked."""
    out = str(text)
    with _lock:
        values = set(_registered)
    for secret in secrets:
        if secret and len(secret) >= MIN_SECRET_LENGTH:
            values.add(secret)
    expanded: set[str] = set()
    for value in values:
        expanded |= _variants(value)
    # Longest first, so a secret containing another is masked whole.
    for value in sorted(expanded, key=len, reverse=True):
        if value and value in out:
            out = out.replace(value, MASK)
    out = _QUERY_SECRET.sub(lambda m: m.group(1) + MASK, out)
    out = _SLACK_HOOK.sub(lambda m: m.group(1) + MASK, out)
    out = _JSON_SECRET.sub(lambda m: m.group(1) + MASK + m.group(2), out)
    return out


def register(secrets: Iterable[Optional[str]]) -> None:
    """Remember values to mask in every later ``redact`` and log record."""
    with _lock:
        for secret in secrets:
            if secret and len(secret) >= MIN_SECRET_LENGTH:
                _registered.add(str(secret))


class RedactingFilter(logging.Filter):
    """A logging filter that masks secrets in the formatted message and in
    any exception text, so a record carries no secret to any handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string is the caller's bug; leave it
            return True
        record.msg = redact(message)
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            # Format the traceback now, redacted; handlers reuse exc_text.
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True

