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
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from sentinel.common.safetext import printable, printable_lines
from sentinel.daemon.ns_watch import UNWATCHABLE_FIX
from sentinel.formats import live_file, safe_json, spool
from sentinel.formats.daemon_file import live_daemon
from sentinel.formats.state_dir import StateDir
from sentinel.host import containers, pidns
from sentinel.host.procid import ProcessIdentity, boot_id
from sentinel.model.run_states import RunState, replay

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
    labels: dict[str, str] = field(default_factory=dict)
    channels: list[str] = field(default_factory=list)  # names; an inline channel by its type
    scalars: dict[str, float] = field(default_factory=dict)  # the last metrics
    error: Optional[str] = None  # the error tail of the final record
    path: str = ""  # the run directory
    # The container its live process is in (sentinel.host.containers.ContainerIdentity.as_dict), read
    # from /proc/<pid>/cgroup now; empty on the host, or once the process is gone.
    container: dict[str, str] = field(default_factory=dict)
    # The daemon cannot see the run's process (another PID namespace than it can see into):
    # only its heartbeat and final record are watched. ``fix`` says how to make it watchable.
    unwatchable: bool = False
    fix: Optional[str] = None


@dataclass
class SpoolStatus:
    spool: str
    daemon_pid: Optional[int]
    daemon_alive: bool
    runs: list[RunStatus]
    skipped: list[str]  # "run_id: reason" for records that could not be read
    archived: Optional[int] = None  # ended runs in the daemon's archive (None: not readable)
    dead_letters: Optional[list[dict[str, Any]]] = None  # alerts never delivered (None: not readable)
    mutes: list[dict[str, Any]] = field(default_factory=list)  # active mutes (sentinel mute)

    def to_dict(self) -> dict[str, Any]:
        return {
            "spool": self.spool,
            "daemon": {"pid": self.daemon_pid, "alive": self.daemon_alive},
            "runs": [asdict(r) for r in self.runs],
            "archived": self.archived,
            "skipped": list(self.skipped),
            "dead_letters": self.dead_letters,
            "mutes": self.mutes,
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
    namespaces = _Namespaces()
    journal = _journal_reader(state_path)
    runs: list[RunStatus] = []
    skipped: list[str] = []
    live = live_daemon(spool_path, now)
    unwatchable = set(live.unwatchable) if live is not None else set()
    for run_id in spool.list_run_ids(spool_path):
        _read_into(runs, skipped, spool.RunPaths(spool_path, run_id), journal, now, namespaces,
                   archived=False)
        if runs and runs[-1].run_id == run_id and run_id in unwatchable:
            runs[-1].unwatchable, runs[-1].fix = True, UNWATCHABLE_FIX
    archive = _archive_dirs(state_path)
    for directory in archive or []:
        # Ended a moment ago: still shown, so a killed run does not vanish right after its alert.
        # (The directory changes with every beat, so an older one holds no recent end.)
        if include_archive or _archived_since(directory, now) < RECENT_SECONDS:
            paths = spool.RunPaths(directory.parent, directory.name)
            _read_into(runs, skipped, paths, journal, now, namespaces, archived=True)
            if not include_archive and runs and runs[-1].archived and (
                    runs[-1].ended is None or now - runs[-1].ended >= RECENT_SECONDS):
                runs.pop()
    runs.sort(key=lambda r: (r.started, r.run_id))
    daemon_pid, daemon_alive = (live.pid, True) if live is not None else (None, False)
    return SpoolStatus(str(spool_path), daemon_pid, daemon_alive, runs, skipped,
                       archived=len(archive) if archive is not None else None,
                       dead_letters=_dead_letters(state_path), mutes=_mutes(spool_path, now))


def _mutes(spool_path: Path, now: float) -> list[dict[str, Any]]:
    from sentinel.formats import mutes

    return [{"scope": m.scope, "target": m.target, "what": m.what, "until": m.until, "uid": m.uid}
            for _, m in mutes.read_mutes(spool_path) if m.active(now)]


def _read_into(runs: list[RunStatus], skipped: list[str], paths: spool.RunPaths, journal: Any,
               now: float, namespaces: _Namespaces, archived: bool) -> None:
    # Every user names directories in a shared spool: a run "directory" may be a
    # symlink to anywhere (followed by root where fs.protected_symlinks=0). So
    # it is opened in its parent without following, and read only through that
    # fd (``/proc/self/fd/N/<file>``: the directory opened, whatever its name
    # becomes meanwhile).
    try:
        parent_fd = safe_json.open_dir(paths.dir.parent)
        try:
            dir_fd = safe_json.open_dir(paths.run_id, dir_fd=parent_fd)
        finally:
            os.close(parent_fd)
    except FileNotFoundError:
        return  # a run directory being created (or archived) right now
    except OSError as exc:
        skipped.append(f"{paths.run_id}: {exc.strerror or exc}")
        return
    try:
        held = spool.RunPaths(Path("/proc/self/fd"), str(dir_fd))
        try:
            record, _ = spool.read_run(held.run)
        except FileNotFoundError:
            return
        except (safe_json.SpoolFormatError, OSError) as exc:
            skipped.append(f"{paths.run_id}: {exc}")
            return
        status = _run_status(record, held, journal, now, namespaces, dir_fd)
    finally:
        os.close(dir_fd)
    status.path = str(paths.dir)
    status.archived = archived
    runs.append(status)


RECENT_SECONDS = 600.0


def _archived_since(directory: Path, now: float) -> float:
    try:
        return now - os.lstat(directory).st_mtime
    except OSError:
        return float("inf")


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


def _run_status(record: spool.RunRecord, paths: spool.RunPaths, journal: Any, now: float,
                namespaces: _Namespaces, dir_fd: Optional[int] = None) -> RunStatus:
    live = _optional(lambda run_dir: live_file.read_live(run_dir, dir_fd=dir_fd)[0], paths.dir)
    progress = live_file.with_live(_optional(spool.read_progress, paths.beat), live)
    final = _optional(spool.read_final, paths.final)
    alive_pid = _alive_pid(record, namespaces)
    alive = alive_pid is not None
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
        ended=final.ended if final else (None if alive else last_beat),
        labels=dict(record.labels),
        channels=[c if isinstance(c, str) else f"inline {c.get('type', '?')}" for c in record.channels],
        scalars=dict(final.scalars if final is not None and final.scalars else
                     (progress.scalars if progress else {})),
        error=final.error if final else None,
        path=str(paths.dir),
        container=_container(alive_pid, record),
    )


class _Namespaces:
    """Processes of other PID namespaces, looked up with one walk of /proc per namespace."""

    def __init__(self) -> None:
        self.own = pidns.namespace_of()
        self._seen: dict[str, dict[pidns.Key, int]] = {}

    def foreign(self, record: spool.RunRecord) -> bool:
        return bool(record.pidns) and record.pidns != self.own

    def alive(self, record: spool.RunRecord) -> bool:
        return self.pid_here(record) is not None

    def pid_here(self, record: spool.RunRecord) -> Optional[int]:
        """The run's process as this process's namespace numbers it, if it lives."""
        if record.boot_id != boot_id():
            return None
        if record.pidns not in self._seen:
            self._seen[record.pidns] = pidns.index({record.pidns})
        return self._seen[record.pidns].get((record.pidns, record.pid, record.start_ticks))


def _alive_pid(record: spool.RunRecord, namespaces: _Namespaces) -> Optional[int]:
    """The run's very process if it exists now, as this process's PID namespace numbers it."""
    if namespaces.foreign(record):
        return namespaces.pid_here(record)  # a run in a container
    alive = ProcessIdentity(record.pid, record.start_ticks, record.boot_id).is_running()
    return record.pid if alive else None


def _container(pid: Optional[int], record: spool.RunRecord) -> dict[str, str]:
    found = containers.identify(pid, record.start_ticks) if pid is not None else None
    return found.as_dict() if found is not None else {}


def _optional(reader: Any, path: Path) -> Any:
    try:
        return reader(path)
    except (FileNotFoundError, safe_json.SpoolFormatError, OSError):
        return None


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
        from sentinel.delivery import outbox as outbox_format

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
    from sentinel.delivery.outbox import DEAD_DIR, read_dead_letters

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


def _state_text(run: RunStatus) -> str:
    state = run.state
    if run.signal:
        state += f" ({run.signal})"
    elif run.exit_code not in (None, 0):
        state += f" (exit {run.exit_code})"
    if run.archived:
        state += ", archived"
    if run.unwatchable:
        state += ", unwatchable"
    return state


def _clock(seconds: float) -> str:
    """'3:04:05' / '2 days, 3:04:05', as supervisorctl shows an uptime."""
    total = int(max(0.0, seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{days} day{'s' if days != 1 else ''}, {text}" if days else text


def _uptime(run: RunStatus, now: float) -> str:
    if run.ended is None:
        return f"uptime {_clock(now - run.started)}"
    return f"ended {format_age(now - run.ended)} ago"


def _fit(rows: list[tuple[str, ...]], width: int, flexible: int) -> list[tuple[str, ...]]:
    """Shorten column ``flexible`` (with "…") until each row fits ``width`` columns."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    excess = sum(widths) + 2 * (len(widths) - 1) - width
    if excess <= 0:
        return rows
    room = max(8, widths[flexible] - excess)
    return [tuple(cell if i != flexible or len(cell) <= room else cell[:room - 1] + "…"
                  for i, cell in enumerate(row)) for row in rows]


def render_table(status: SpoolStatus, now: Optional[float] = None, width: Optional[int] = None) -> str:
    now = time.time() if now is None else now
    width = shutil.get_terminal_size((120, 24)).columns if width is None else width
    daemon = (
        f"daemon pid {status.daemon_pid} watching" if status.daemon_alive
        else "no daemon is watching this spool (start one: sentinel daemon)"
    )
    lines = [f"spool {status.spool}: {len(status.runs)} run(s); {daemon}"]
    shown_archived = sum(1 for r in status.runs if r.archived)
    if status.archived and shown_archived < status.archived:
        lines.append(f"{status.archived - shown_archived} more ended run(s) archived by the daemon: "
                     "sentinel status --all")
    if status.runs:
        header: tuple[str, ...] = ("NAME", "STATE", "PID", "UPTIME", "STEP", "LAST BEAT", "RUN ID")
        rows = [header]
        for run in status.runs:
            rows.append((printable(run.name) or "-", printable(_state_text(run)), str(run.pid),
                         _uptime(run, now), "-" if run.step is None else str(run.step),
                         format_age(run.beat_age) + (" ago" if run.beat_age is not None else ""),
                         run.run_id))
        rows = _fit(rows, width, flexible=0)
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        for row in rows:
            lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
    for letter in status.dead_letters or []:
        lines.append(printable(f"NOT delivered to {letter['channel']}: alert {letter['alert_id']} "
                               f"({letter['reason']})"))
    for mute in status.mutes:
        until = "until unmuted" if mute["until"] is None else f"for {format_age(mute['until'] - now)} more"
        what = "every alert" if mute["what"] == "all" else "stall alerts"
        lines.append(printable(f"muted: {what} of {mute['scope']} {mute['target']!r} {until} "
                               f"(by uid {mute['uid']})"))
    for note in status.skipped:
        lines.append(f"skipped unreadable run record {printable(note)}")
    return "\n".join(lines)


def find_run(status: SpoolStatus, wanted: str) -> list[RunStatus]:
    """The runs ``wanted`` names: a run id, a run id's start, or a run name."""
    exact = [r for r in status.runs if wanted in (r.run_id, r.name)]
    return exact or [r for r in status.runs if r.run_id.startswith(wanted)]


def render_detail(run: RunStatus, alerts: list[Any], now: Optional[float] = None) -> str:
    """Everything known about one run, for ``sentinel status RUN``."""
    now = time.time() if now is None else now
    facts = [
        ("Run", f"{printable(run.name) or '-'} ({run.run_id})"),
        ("State", printable(_state_text(run))),
        ("PID", f"{run.pid} on {printable(run.user)}@{printable(run.hostname)}"
                f"{'' if run.alive else ' (gone)'}"),
        *([("Container", printable(containers.label_of(run.container)))] if run.container else []),
        ("Started", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run.started))),
        ("Uptime" if run.ended is None else "Ended", _uptime(run, now)),
        ("Step", "-" if run.step is None else f"{run.step:,}"),
        ("Metrics", ", ".join(f"{printable(k)}={v:.4g}" for k, v in run.scalars.items()) or "-"),
        ("Last beat", format_age(run.beat_age) + (" ago" if run.beat_age is not None else "")),
        ("Labels", ", ".join(f"{printable(k)}={printable(v)}" for k, v in run.labels.items()) or "-"),
        ("Channels", ", ".join(printable(c) for c in run.channels) or "the daemon's defaults"),
        ("Directory", printable(run.path)),
    ]
    width = max(len(label) for label, _ in facts)
    lines = [f"{label.ljust(width)}  {value}" for label, value in facts]
    if run.unwatchable:
        lines.append("Unwatchable: the daemon cannot see this run's process (another PID namespace); "
                     "only its heartbeat and final record are watched (a silent run is reported lost). "
                     f"To watch it: {run.fix}")
    if run.error:
        lines.append("Error:")
        lines.extend("  " + line for line in printable_lines(run.error.strip())[-15:])
    lines.append(f"Alerts ({len(alerts)}):" if alerts else "Alerts: none yet")
    for alert in alerts:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(alert.created))
        lines.append(f"  {when}  {alert.kind.value}  {alert.alert_id}")
    return "\n".join(lines)
