"""`sentinel status`: every run in the spool, as the records and the daemon see it.

Read-only: nothing here writes to the spool or the daemon's state. A run's
state comes from, in order of authority: its final record (the process said
how it ended); what the daemon journalled about it (killed, lost, stalled);
and otherwise the process identity (pid + start time + boot id) right now.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

from sentinel import spool
from sentinel.daemon.decide import RunState, replay
from sentinel.daemon_file import live_daemon
from sentinel.procid import ProcessIdentity
from sentinel.safetext import printable
from sentinel.state_dir import StateDir

log = logging.getLogger("sentinel.status")

# Gone without a final record and not (yet) judged by the daemon: not one of
# the daemon's RunStates, because nobody has decided how the run ended.
NOT_JUDGED = "dead"


@dataclass
class RunStatus:
    run_id: str
    name: str
    pid: int
    user: str
    hostname: str
    source: str
    started: float
    state: str  # a daemon RunState value, or NOT_JUDGED
    alive: bool  # the very process of the run exists now
    daemon_state: Optional[str]  # the last state the daemon alerted on (its journal), if readable
    last_beat: Optional[float]
    beat_age: Optional[float]  # seconds since last_beat
    step: Optional[int]
    exit_code: Optional[int]
    signal: Optional[str]
    ended: Optional[float]
    archived: bool = False  # moved out of the spool by the daemon once it ended


@dataclass
class SpoolStatus:
    spool: str
    daemon_pid: Optional[int]
    daemon_alive: bool
    runs: list[RunStatus]
    skipped: list[str]  # "run_id: reason" for records that could not be read
    archived: Optional[int] = None  # ended runs in the daemon's archive (None: not readable)
    dead_letters: Optional[list[dict[str, Any]]] = None  # alerts never delivered (None: not readable)

    def to_dict(self) -> dict[str, Any]:
        return {
            "spool": self.spool,
            "daemon": {"pid": self.daemon_pid, "alive": self.daemon_alive},
            "runs": [asdict(r) for r in self.runs],
            "archived": self.archived,
            "skipped": list(self.skipped),
            "dead_letters": self.dead_letters,
        }


def collect(
    spool_path: Path,
    state_path: Optional[Path] = None,
    now: Optional[float] = None,
    include_archive: bool = False,
) -> SpoolStatus:
    """Read every run under ``spool_path``; ``state_path`` is the daemon's
    state directory: its alert journal is consulted and, with
    ``include_archive``, the ended runs it archived are listed too."""
    now = time.time() if now is None else now
    journal = _journal_reader(state_path)
    runs: list[RunStatus] = []
    skipped: list[str] = []
    for run_id in spool.list_run_ids(spool_path):
        _read_into(runs, skipped, spool.RunPaths(spool_path, run_id), journal, now, archived=False)
    archive = _archive_dirs(state_path)
    if include_archive:
        for directory in archive or []:
            paths = spool.RunPaths(directory.parent, directory.name)
            _read_into(runs, skipped, paths, journal, now, archived=True)
    runs.sort(key=lambda r: (r.started, r.run_id))
    daemon_pid, daemon_alive = _daemon(spool_path)
    return SpoolStatus(str(spool_path), daemon_pid, daemon_alive, runs, skipped,
                       archived=len(archive) if archive is not None else None,
                       dead_letters=_dead_letters(state_path))


def _read_into(runs: list[RunStatus], skipped: list[str], paths: spool.RunPaths, journal: Any,
               now: float, archived: bool) -> None:
    try:
        record, _ = spool.read_run(paths.run)
    except FileNotFoundError:
        return  # a run directory being created (or archived) right now
    except (spool.SpoolFormatError, OSError) as exc:
        skipped.append(f"{paths.run_id}: {exc}")
        return
    status = _run_status(record, paths, journal, now)
    status.archived = archived
    runs.append(status)


def _archive_dirs(state_path: Optional[Path]) -> Optional[list[Path]]:
    """Run directories in the daemon's archive (named ``<run id>`` or
    ``<run id>.<n>``), or None when there is none or it is not ours to read."""
    if state_path is None:
        return None
    root = StateDir(state_path).archive
    try:
        names = os.listdir(root)
    except OSError:
        return None
    return sorted(root / n for n in names if spool.is_run_id(n.split(".", 1)[0]))


def _run_status(record: spool.RunRecord, paths: spool.RunPaths, journal: Any, now: float) -> RunStatus:
    progress = _optional(spool.read_progress, paths.beat)
    final = _optional(spool.read_final, paths.final)
    alive = ProcessIdentity(record.pid, record.start_ticks, record.boot_id).is_running()
    verdict: Optional[RunState] = journal(record.run_id) if journal else None
    if final is not None:
        state = RunState(final.state).value
    elif verdict is not None and verdict.is_terminal:
        state = verdict.value  # the daemon's word outranks a bare process check
    elif alive:
        state = (verdict or RunState.RUNNING).value
    else:
        state = NOT_JUDGED
    last_beat = progress.beat if progress else None
    step = progress.step if progress else None
    if final is not None and final.step is not None:
        step = final.step
    return RunStatus(
        run_id=record.run_id,
        name=record.name or record.labels.get("experiment", ""),
        pid=record.pid,
        user=record.user,
        hostname=record.hostname,
        source=record.source,
        started=record.started,
        state=state,
        alive=alive,
        daemon_state=verdict.value if verdict is not None else None,
        last_beat=last_beat,
        beat_age=max(0.0, now - last_beat) if last_beat is not None else None,
        step=step,
        exit_code=final.exit_code if final else None,
        signal=final.signal if final else None,
        ended=final.ended if final else None,
    )


def _optional(reader: Any, path: Path) -> Any:
    try:
        return reader(path)
    except (FileNotFoundError, spool.SpoolFormatError, OSError):
        return None


def _daemon(spool_path: Path) -> tuple[Optional[int], bool]:
    live = live_daemon(spool_path)
    return (live.pid, True) if live is not None else (None, False)


def _journal_reader(state_path: Optional[Path]) -> Any:
    """A function run_id -> last state alert kind, or None when the daemon's
    journal is absent or not ours to read (the system daemon keeps it 0700).

    Read-only on purpose: constructing an ``Outbox`` would tidy its
    directory (remove temporary files of writes in flight) under a running
    daemon.
    """
    if state_path is None:
        return None
    try:
        from sentinel import outbox as outbox_format

        root = StateDir(state_path).outbox
        if not (root / outbox_format.RUNS_DIR).is_dir():
            return None
    except Exception as exc:  # no journal is a normal answer here, never a failure
        log.debug("daemon journal not readable under %s: %s", state_path, exc)
        return None

    def last_verdict(run_id: str) -> Optional[RunState]:
        """The state the daemon's journal leaves the run in (as the daemon replays it), if any."""
        try:
            state, transitions = replay(a.kind for a in outbox_format.read_journal(root, run_id))
        except Exception as exc:
            log.debug("daemon journal for %s not readable: %s", run_id, exc)
            return None
        return state if transitions else None

    return last_verdict


def _dead_letters(state_path: Optional[Path]) -> Optional[list[dict[str, Any]]]:
    """The daemon's dead letters (alerts it gave up on), or None if not ours to read."""
    if state_path is None:
        return None
    from sentinel.outbox import DEAD_DIR, read_dead_letters

    root = StateDir(state_path).outbox
    if not os.access(root / DEAD_DIR, os.R_OK | os.X_OK):
        return None
    return [{"alert_id": d.alert_id, "run_id": d.run_id, "channel": d.channel, "reason": d.reason,
             "attempts": d.attempts, "dead_at": d.dead_at} for d in read_dead_letters(root)]


# ---------------------------------------------------------------- output


def format_age(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f}m"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def render_json(status: SpoolStatus) -> str:
    return json.dumps(status.to_dict(), indent=2, ensure_ascii=False)


def render_table(status: SpoolStatus) -> str:
    daemon = (
        f"daemon pid {status.daemon_pid} watching" if status.daemon_alive
        else "no daemon is watching this spool (start one: sentinel daemon)"
    )
    lines = [f"spool {status.spool}: {len(status.runs)} run(s); {daemon}"]
    shown_archived = any(r.archived for r in status.runs)
    if status.archived and not shown_archived:
        lines.append(f"{status.archived} ended run(s) archived by the daemon: sentinel status --all")
    if status.runs:
        header = ("RUN ID", "NAME", "PID", "STATE", "LAST BEAT", "STEP")
        rows = [header]
        for run in status.runs:
            state = run.state
            if run.signal:
                state += f" ({run.signal})"
            elif run.exit_code not in (None, 0):
                state += f" (exit {run.exit_code})"
            if run.archived:
                state += ", archived"
            rows.append((run.run_id, printable(run.name) or "-", str(run.pid), printable(state),
                         format_age(run.beat_age) + (" ago" if run.beat_age is not None else ""),
                         "-" if run.step is None else str(run.step)))
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        for row in rows:
            lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
    for letter in status.dead_letters or []:
        lines.append(printable(f"NOT delivered to {letter['channel']}: alert {letter['alert_id']} "
                               f"({letter['reason']})"))
    for note in status.skipped:
        lines.append(f"skipped unreadable run record {printable(note)}")
    return "\n".join(lines)
