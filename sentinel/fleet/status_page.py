"""``sentinel status`` over HTTP: the same table as a small HTML page, and its JSON.

Served by the metrics server (``sentinel.fleet.metrics``) to local clients only.
Every value on the page comes from run records, hostile input, so every one
is HTML-escaped; the page has no script, and no secret is in a status.

The daemon reads every user's private (0700) run directory; a client of a
TCP port could be any local user, and the server cannot know which. So the
page and its JSON show only what every user may see of a run: its id, name,
user, pid, state, last beat and step. Never its labels, channels, metrics,
error tail (a traceback), directory, nor the dead letters and mutes, nor why
a record could not be read: ``sentinel status``, run by its owner, shows
those. Run directories are opened without following a symlink
(``sentinel.daemon.status``).
"""

from __future__ import annotations

import dataclasses
import html
from typing import Any

from sentinel.daemon import status

HTML_TYPE = "text/html; charset=utf-8"
JSON_TYPE = "application/json; charset=utf-8"
_STYLE = ("body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}"
          "td,th{padding:.2em .8em;text-align:left;border-bottom:1px solid #ddd}"
          "th{background:#f4f4f4}.dead,.killed,.lost,.crashed{color:#b00}.stalled{color:#b60}")


def answer(path: str, config: Any) -> tuple[int, str, bytes]:
    """(HTTP status, content type, body) for ``/``, ``/status`` or ``/status.json``."""
    current = for_everyone(status.collect(config.spool_path(), config.state_path()))
    if path == "/status.json":
        return 200, JSON_TYPE, (status.render_json(current) + "\n").encode("utf-8")
    return 200, HTML_TYPE, render_html(current, config.host).encode("utf-8")


def for_everyone(current: status.SpoolStatus) -> status.SpoolStatus:
    """``current`` less what only a run's owner may read (see the module docstring)."""
    runs = [dataclasses.replace(run, labels={}, channels=[], scalars={}, error=None, path="")
            for run in current.runs]
    skipped = [note.split(":", 1)[0] for note in current.skipped]  # the run id, not the reason
    return dataclasses.replace(current, runs=runs, skipped=skipped, dead_letters=None, mutes=[])


def render_html(current: status.SpoolStatus, host: str) -> str:
    e = html.escape
    daemon = (f"daemon pid {current.daemon_pid} watching" if current.daemon_alive
              else "no daemon is watching this spool")
    rows = []
    for run in current.runs:
        state = run.state
        if run.signal:
            state += f" ({run.signal})"
        elif run.exit_code not in (None, 0):
            state += f" (exit {run.exit_code})"
        beat = "-" if run.beat_age is None else status.format_age(run.beat_age) + " ago"
        step = "-" if run.step is None else str(run.step)
        cells = (run.run_id, run.name or "-", str(run.pid), state, beat, step)
        rows.append(f'<tr class="{e(run.state)}">' + "".join(f"<td>{e(c)}</td>" for c in cells) + "</tr>")
    header = "".join(f"<th>{e(h)}</th>" for h in ("run id", "name", "pid", "state", "last beat", "step"))
    skipped = "".join(f"<li>skipped unreadable run record {e(note)}</li>" for note in current.skipped)
    return (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
        f"<title>run-sentinel: {e(host)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>run-sentinel on {e(host)}</h1>"
        f"<p>spool {e(current.spool)}: {len(current.runs)} run(s); {e(daemon)}. "
        '<a href="/status.json">JSON</a> · <a href="/metrics">metrics</a></p>'
        f"<table><thead><tr>{header}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        + (f"<ul>{skipped}</ul>" if skipped else "")
        + "</body></html>\n"
    )
