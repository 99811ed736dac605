"""Label values for Prometheus and Alertmanager from hostile run records.

Run names, projects, job names and ranks are whatever a training script
wrote. As label values they must be valid UTF-8 without control characters
(no terminal escapes, no line breaks for the text exposition format) and
short: a 10 kB run name would otherwise reach every scrape and notification.
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Optional

LABEL_VALUE_MAX = 128
# C0 and C1 controls, DEL, and the Unicode line/paragraph separators and bidi overrides.
_UNSAFE_RE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")

# The run labels that become alert and metric labels (run records' ``labels``).
RUN_LABELS = ("project", "job", "rank")


def clean_label(value: Any, limit: int = LABEL_VALUE_MAX) -> str:
    """``value`` as a safe label value: controls replaced, at most ``limit`` characters."""
    text = _UNSAFE_RE.sub("?", str(value if value is not None else ""))
    text = text.encode("utf-8", "replace").decode("utf-8", "replace")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def run_labels(labels: Mapping[str, Any], known: Optional[Mapping[str, Any]] = None) -> dict[str, str]:
    """``project``, ``job`` and ``rank`` of a run (empty strings where the run has none):
    its own labels, else what else is ``known`` of it (the job and rank its launcher named)."""
    known = known or {}
    return {key: clean_label(labels.get(key) or known.get(key) or "") for key in RUN_LABELS}
