"""One run as the training process sees it: memory, heartbeat thread, final record.

The training thread only ever touches memory here (``note_progress``,
``expect_pause``, ``send``): a daemon thread owns every spool write, so a
``swanlab.log`` or a ``run.beat`` costs a few attribute stores. The thread
rewrites ``beat.json`` every heartbeat interval whether or not anything was
logged, which is how the daemon tells a live process from a dead one.

Process-wide hooks, installed once and shared by every active run:

* ``sys.excepthook`` records an uncaught exception as ``crashed`` (or
  ``aborted`` for KeyboardInterrupt) with the traceback, then chains on.
* ``sys.exit`` is wrapped to *remember* the status (nothing else changes),
  because SwanLab reports ``sys.exit(1)`` as a success.
* ``atexit`` ends any run still open as ``finished``.
* SIGTERM: only when it still has its default disposition and we are on the
  main thread; records ``terminated`` and then dies by the same signal.
* ``os.register_at_fork``: a forked child (a DataLoader worker) forgets the
  parent's runs and its sentry thread, and every write also checks the pid,
  so a child never writes as if it were the run.
* ``faulthandler``, armed into the run directory by ``sentinel.training.stack_dumps``:
  every thread's stack on request (the daemon's stall evidence) and the
  frame of a fatal signal; given back at the run's end.

Each run records two sub-threads for the daemon to watch by thread pidfd
(``RunRecord.watch_threads``): its heartbeat thread and the process's one
sentry thread, which only sleeps on a lock.

A spool that cannot be written (ENOSPC, read-only, permissions) is reported
once on stderr and never raised into training. Stdlib only.
"""

from __future__ import annotations

import atexit
import math
import numbers
import os
import pwd
import signal
import sys
import threading
import time
import traceback
from collections import deque
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import sentinel
from sentinel.common.rules import parse_duration, positive_duration
from sentinel.common.safetext import escape_undecodable
from sentinel.formats import live_file, record_rules, safe_json, spool
from sentinel.host import jobs, pidns
from sentinel.host.procid import ProcessIdentity, thread_start_ticks
from sentinel.model.exit_status import ending_kind
from sentinel.training import output_tail, stack_dumps

DEFAULT_HEARTBEAT_INTERVAL = spool.DEFAULT_HEARTBEAT_INTERVAL
_clock = time.time  # a module global: one lookup fewer on the step hook's path
ENV_HEARTBEAT_INTERVAL = "SENTINEL_HEARTBEAT_INTERVAL"
MIN_HEARTBEAT_INTERVAL = 0.05
# How long process exit may wait for in-process (no daemon) deliveries.
FALLBACK_EXIT_TIMEOUT = 10.0

_reported: set[str] = set()


def report_once(key: str, message: str) -> None:
    """Tell the user on stderr, once per process and ``key``; never raise."""
    if key in _reported:
        return
    _reported.add(key)
    try:
        sys.stderr.write(f"sentinel: {message}\n")
        sys.stderr.flush()
    except Exception:
        pass


def heartbeat_interval_from_env(default: float = DEFAULT_HEARTBEAT_INTERVAL) -> float:
    raw = os.environ.get(ENV_HEARTBEAT_INTERVAL)
    if not raw:
        return default
    try:
        value = positive_duration(raw)
    except ValueError as exc:
        report_once("env-interval", f"ignoring {ENV_HEARTBEAT_INTERVAL}={raw!r}: {exc}")
        return default
    return max(MIN_HEARTBEAT_INTERVAL, value)


def exit_status_code(status: Any) -> int:
    """The process exit status ``sys.exit(status)`` / ``SystemExit(status)`` gives."""
    if status is None:
        return 0
    if isinstance(status, int):
        return int(status)
    return 1  # a message: Python prints it and exits with 1


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except (KeyError, OSError):
        return os.environ.get("USER", "") or str(uid)


def _numeric_scalars(values: Mapping[str, Any], into: dict[str, float]) -> dict[str, float]:
    """Newest numeric values first, then older ones, at most MAX_SCALARS.

    Only plain real numbers: converting a tensor here could force a device
    sync from the heartbeat thread. A NaN or infinite value is left out (JSON
    has no such number) and takes the key's older value with it: an alert
    must not show the last finite loss of a run that has diverged since.
    """
    merged: dict[str, float] = {}
    gone: set[str] = set()
    for key, value in list(values.items()):
        if len(merged) >= spool.MAX_SCALARS:
            break
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            name = escape_undecodable(str(key))
            try:
                number = float(value)
            except (OverflowError, ValueError, TypeError):
                number = math.nan
            if math.isfinite(number):
                merged[name] = number
            else:
                gone.add(name)
    for key, value in into.items():
        if len(merged) >= spool.MAX_SCALARS:
            break
        if key not in gone:
            merged.setdefault(key, value)
    return merged


class _ReentrantEvent:
    """An event (``set``, ``clear``, ``wait``) whose lock its own thread may
    take again. The SIGTERM handler runs in the training thread between two
    bytecodes, and its ``finish`` wakes the heartbeat thread: if the signal
    landed while that thread was inside ``set()`` of this same event (a log
    call waking the heartbeat thread), ``threading.Event``'s plain lock was
    held by the very thread asking for it, and the process hung for good
    instead of ending. (Its own, not ``Event``'s private ``_cond`` swapped.)"""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.RLock())
        self._flag = False

    def set(self) -> None:
        with self._cond:
            self._flag = True
            self._cond.notify_all()

    def clear(self) -> None:
        with self._cond:
            self._flag = False

    def wait(self, timeout: Optional[float] = None) -> bool:
        """True once set (at once if it is), False if ``timeout`` ran out first."""
        with self._cond:
            return self._cond.wait_for(lambda: self._flag, timeout)


class Recorder:
    """The in-memory state of one run and the thread that writes it down.

    Build one with ``Recorder.open(...)``. Every public method is safe to call
    from any thread, never raises, and does nothing in a forked child.
    """

    def __init__(
        self,
        *,
        spool_root: Path,
        name: str = "",
        labels: Optional[Mapping[str, Any]] = None,
        channels: Sequence[spool.Channel] = (),
        language: Optional[str] = None,
        stall_timeout: Optional[float] = None,
        heartbeat_interval: Optional[float] = None,
        alert_on: Optional[Sequence[str]] = None,
        source: str = "watch",
        handle_sigterm: bool = True,
        capture_output: bool = False,
        stack_dumps: bool = True,
    ) -> None:
        ident = ProcessIdentity.current()
        interval = heartbeat_interval if heartbeat_interval is not None else heartbeat_interval_from_env()
        self.interval = max(MIN_HEARTBEAT_INTERVAL, float(interval))
        self.run_id = spool.new_run_id(ident.pid)
        self.spool_root = Path(spool_root)
        self.paths = spool.RunPaths(self.spool_root, self.run_id)
        uid = os.getuid()
        self.record = spool.RunRecord(
            run_id=self.run_id,
            pid=ident.pid,
            start_ticks=ident.start_ticks,
            boot_id=ident.boot_id,
            hostname=escape_undecodable(os.uname().nodename),  # socket.gethostname(), without socket
            uid=uid,
            user=escape_undecodable(_user_name(uid)),
            # An argv element or directory that is not UTF-8 arrives as lone
            # surrogates, which no UTF-8 file can hold: recorded as \xNN escapes.
            cmdline=[escape_undecodable(arg) for arg in (sys.executable, *sys.argv) if isinstance(arg, str)],
            cwd=escape_undecodable(_cwd()),
            started=time.time(),
            heartbeat_interval=self.interval,
            stall_timeout=float(stall_timeout) if stall_timeout is not None else None,
            name=escape_undecodable(name or ""),
            labels=_labels(labels or {}),
            channels=list(channels),
            language=language,
            source=source,
            version=getattr(sentinel, "__version__", ""),
            job=jobs.from_environ(os.environ, os.getppid()),  # a rank of a launched job, if it is one
            alert_on=list(alert_on) if alert_on is not None else None,
            pidns=pidns.namespace_of(),  # a daemon outside this process's namespace finds it by this
        )
        self.handle_sigterm = handle_sigterm
        # The last printed lines, for ending alerts (sentinel.training.output_tail); None: not captured.
        self._output: Optional[output_tail.OutputTail] = output_tail.shared() if capture_output else None
        self._owner_pid = ident.pid
        # Written by the training thread, read by the heartbeat thread. Plain
        # attribute stores are atomic under the GIL; no lock on the hot path.
        self._last_progress: Optional[float] = None
        self._step: Optional[int] = None
        self._fresh: Optional[Mapping[str, Any]] = None  # the latest scalars as reported
        self._merged_from: Optional[Mapping[str, Any]] = None
        self._scalars: dict[str, float] = {}
        self._pause_until: Optional[float] = None
        self._beat_now = False
        self._live: Optional[live_file.LiveWriter] = None  # made with the run directory
        self._live_tried = False
        # live.bin's records (the values) have one writer at a time: neither thread
        # waits for this lock, each skips a copy the other one is making.
        self._values_lock = threading.Lock()
        self._values_due = 0.0  # the step hook copies the values into live.bin again from then
        self._values_unwritten = False  # reported values live.bin does not hold yet
        # True once the step hook has left values to the heartbeat thread: from
        # then on note_progress takes _values_lock too (before, no other writer).
        self._values_deferred = False
        # faulthandler armed into the run directory (sentinel.training.stack_dumps); off: never tried
        self._stacks_tried = not stack_dumps
        self._stack_dumps = stack_dumps
        # Owned by the heartbeat thread: a sample of each scalar per beat with progress.
        self._history: dict[str, deque[float]] = {}
        self._sampled_progress: Optional[float] = None
        self._outgoing: deque[tuple[float, str]] = deque()
        # Owned by the heartbeat thread (and by finish, under the lock).
        self._lock = threading.RLock()
        self._wake = _ReentrantEvent()
        self._stopping = False
        self._ended = False
        self._record_written = False
        self._beat_seq = 0
        self._msg_seq = 0
        self._thread: Optional[threading.Thread] = None
        self.final: Optional[spool.FinalRecord] = None

    # ------------------------------------------------------------ lifecycle

    @classmethod
    def open(cls, spool_root: Optional[Path] = None, **kwargs: Any) -> Recorder:
        """Create, record and start a run. Never raises on I/O trouble."""
        rec = cls(spool_root=Path(spool_root) if spool_root is not None else spool.spool_dir(), **kwargs)
        rec.start()
        return rec

    def start(self) -> None:
        _install_process_hooks()
        _ACTIVE.append(self)
        if self._output is not None:
            self._output.install()
        if self.handle_sigterm:
            _install_sigterm_handler()
        with self._lock:  # the heartbeat thread waits for the record to be complete
            self._thread = threading.Thread(target=self._run_heartbeat, name="sentinel-heartbeat",
                                            daemon=True)
            self._thread.start()
            self.record.watch_threads = _watch_threads(self._thread)
            self._write_record()
            self._write_beat(time.time())
        if self._stack_dumps:
            # The stack signal's handler runs on the heartbeat thread, not on this one.
            stack_dumps.keep_off_this_thread()
        self._announce_delivery_mode()

    @property
    def is_owner(self) -> bool:
        return os.getpid() == self._owner_pid

    @property
    def ended(self) -> bool:
        return self._ended

    def add_channels(self, channels: Sequence[spool.Channel]) -> None:
        """Alert these channels too (a second callback joined the run)."""
        if not self.is_owner or self._ended:
            return
        with self._lock:
            for channel in channels:
                if channel not in self.record.channels:
                    self.record.channels.append(channel)
            self._record_written = False
            self._write_record()

    def update_labels(self, labels: Mapping[str, Any]) -> None:
        if not self.is_owner or self._ended:
            return
        with self._lock:
            self.record.labels.update(_labels(labels))
            self._record_written = False
            self._write_record()

    # -------------------------------------------------- training-thread API

    def note_progress(
        self, step: Optional[int] = None, scalars: Optional[Mapping[str, Any]] = None,
        when: Optional[float] = None,
    ) -> None:
        """The training code made progress. Memory only: the heartbeat thread
        samples ``scalars`` (the latest report wins) when it next writes, and
        ``live.bin`` gets the step and values at once, by plain memory stores
        into its mapping, so the daemon reads them even after a SIGKILL."""
        now = self._last_progress = time.time() if when is None else when
        if step is not None:
            self._step = step
        if scalars:
            self._fresh = scalars
        live = self._live
        if live is not None:
            try:
                if not self._values_deferred:  # the only writer of live.bin's records
                    live.update(now, step, scalars)
                elif self._values_lock.acquire(False):
                    try:
                        live.update(now, step, scalars)
                    finally:
                        self._values_lock.release()
                else:  # the heartbeat thread is copying values: it writes these next
                    if type(step) is int:
                        live.note_step(now, step)
                    self._values_unwritten = True
                    self._wake.set()
            except Exception:  # a value too large for a float: the next one will do
                pass

    def note_logged(self, step: int, scalars: Optional[Mapping[str, Any]]) -> None:
        """``note_progress`` for the step hook (``sentinel.training.swanlab_log_hook``),
        called on every ``swanlab.log``: ``step`` an int from 0. ``live.bin``
        gets the step and time at once (four stores); the values are copied
        into it at most every ``live_file.VALUES_EVERY`` seconds here, and
        ``VALUES_EVERY`` after the last log by the heartbeat thread. Raises
        what the mapping raises (a step no float holds); the hook catches it."""
        now = self._last_progress = _clock()
        self._step = step
        if scalars:
            self._fresh = scalars
        live = self._live
        if live is not None:
            live.note_step(now, step)
            if now >= self._values_due and self._values_lock.acquire(False):
                try:
                    self._values_due = now + live_file.VALUES_EVERY
                    self._values_unwritten = False
                    live.write_values(now, scalars)
                finally:
                    self._values_lock.release()
            elif not self._values_unwritten:  # once per VALUES_EVERY at most
                # From now on the heartbeat thread writes records too: writers take turns.
                self._values_deferred = True
                self._values_unwritten = True
                self._wake.set()  # the heartbeat thread copies them if no later log does

    def expect_pause(self, seconds: float) -> None:
        """No stall should be reported for ``seconds`` from now."""
        try:
            self._pause_until = time.time() + min(max(0.0, parse_duration(seconds)),
                                                  record_rules.MAX_INTERVAL)
        except (TypeError, ValueError) as exc:
            report_once("expect-pause", f"expect_pause({seconds!r}) is ignored: {exc}")
            return
        self._beat_now = True  # let the daemon know now, not at the next beat
        self._wake.set()

    def send(self, text: str) -> None:
        """Queue a message; the heartbeat thread writes it to the spool at once."""
        if not self.is_owner:
            return
        if self._ended:
            _deliver_orphan_message(self, str(text))
            return
        self._outgoing.append((time.time(), str(text)))
        self._wake.set()

    # ------------------------------------------------------------- ending

    def finish(
        self,
        state: str = "finished",
        *,
        error: Optional[str] = None,
        exit_code: Optional[int] = None,
        signal_name: Optional[str] = None,
    ) -> None:
        """Write the final record (once; later calls are ignored). Never raises."""
        if not self.is_owner:
            return
        try:
            self._finish(state, error, exit_code, signal_name)
        except Exception as exc:  # never into training
            report_once("finish", f"could not end run {self.run_id} cleanly: {exc!r}")

    def _finish(
        self, state: str, error: Optional[str], exit_code: Optional[int], signal_name: Optional[str]
    ) -> None:
        with self._lock:
            if self._ended:
                return
            self._ended = True
            self._stopping = True
            self._wake.set()
            if self in _ACTIVE:
                _ACTIVE.remove(self)
            if state == "finished" and _exit_status is not None:
                # SwanLab (and atexit) call sys.exit(1) a success; the status says otherwise.
                if _exit_status != 0:
                    state, exit_code = "crashed", _exit_status
                    error = error or f"sys.exit({_exit_status})"
                elif exit_code is None:
                    exit_code = 0
            if state not in spool.FINAL_STATES:
                state = "crashed"
            self._merge_scalars()
            self.final = spool.FinalRecord(
                state=state,
                ended=time.time(),
                exit_code=exit_code,
                signal=signal_name,
                error=error,
                step=self._step,
                scalars=dict(self._scalars),
            )
            self._write_record()
            self._flush_messages()
            self._write_beat(self.final.ended)  # the last progress, for readers of beat.json
            self._write(self.paths.final, self.final.to_dict(), durable=True)
            self._live = None  # the final record says it all now
            if self._output is not None and not any(r._output is not None for r in _ACTIVE):
                self._output.uninstall()
            stack_dumps.disarm(self.paths.dir)
            if not _ACTIVE:
                _restore_sigterm_handler()
        self._deliver_final_without_daemon()

    # ------------------------------------------------------ heartbeat thread

    def _run_heartbeat(self) -> None:
        if self._stack_dumps:
            stack_dumps.take_on_this_thread()  # the stack dumps' handler runs here (stack_dumps)
        next_beat = time.monotonic() + self.interval
        while True:
            timeout = next_beat - time.monotonic()
            if self._values_unwritten:  # the step hook's last values, once their copy is due
                timeout = min(timeout, self._values_due - time.time())
            if timeout > 0 and self._wake.wait(timeout):
                self._wake.clear()
            if self._stopping or not self.is_owner:
                return
            try:
                with self._lock:
                    if self._ended:
                        return
                    self._write_record()  # retried until it lands (the spool may come back)
                    self._flush_messages()
                    if time.time() >= self._values_due:
                        self._write_unwritten_values()
                    now = time.monotonic()
                    if now >= next_beat or self._beat_now:
                        self._beat_now = False
                        self._write_beat(time.time())
                        next_beat = max(next_beat + self.interval, now + self.interval / 2)
            except Exception as exc:  # a bug here must not kill the heartbeat
                report_once("heartbeat", f"heartbeat error in run {self.run_id}: {exc!r}")

    def _write_unwritten_values(self) -> None:
        """The values of the last logs into live.bin, when the training thread
        has not copied them (the step hook copies at most every VALUES_EVERY):
        a run that stops logging has its last values there VALUES_EVERY later."""
        live = self._live
        if not self._values_unwritten:
            return
        if live is None:  # no mapping (any more): nothing to copy, and no wake-up for it
            self._values_unwritten = False
            return
        if not self._values_lock.acquire(False):  # the training thread is copying them now
            self._values_due = time.time() + live_file.VALUES_EVERY  # look again then, not at once
            return
        try:
            self._values_unwritten = False
            when = self._last_progress
            if when is not None:
                live.write_values(when, self._fresh)
        except RuntimeError:  # the dict changed while it was read: copied again later
            self._values_due = time.time() + live_file.VALUES_EVERY
            self._values_unwritten = True
        finally:
            self._values_lock.release()

    def _merge_scalars(self) -> None:
        fresh = self._fresh
        if fresh is None or fresh is self._merged_from:
            return
        try:
            self._scalars = _numeric_scalars(fresh, self._scalars)
            self._merged_from = fresh
        except RuntimeError:
            pass  # the dict changed under us; the next beat samples it again

    def _progress(self, now: float) -> spool.Progress:
        self._merge_scalars()
        self._sample_history()
        self._beat_seq += 1
        return spool.Progress(
            beat=now,
            seq=self._beat_seq,
            last_progress=self._last_progress,
            step=self._step if isinstance(self._step, int) else None,
            scalars=dict(self._scalars),
            pause_until=self._pause_until,
            history={key: list(points) for key, points in self._history.items()},
            output=self._output.snapshot() if self._output is not None else [],
        )

    def _sample_history(self) -> None:
        """One point per scalar for each heartbeat that saw progress (a stall adds none)."""
        if self._last_progress is None or self._last_progress == self._sampled_progress:
            return
        self._sampled_progress = self._last_progress
        for key, value in self._scalars.items():
            points = self._history.get(key)
            if points is None:
                if len(self._history) >= spool.MAX_SCALARS:
                    continue
                points = self._history[key] = deque(maxlen=spool.HISTORY_POINTS)
            points.append(value)

    def _write_beat(self, now: float) -> None:
        self._write(self.paths.beat, self._progress(now).to_dict())

    def _write_record(self) -> None:
        if self._record_written:
            return
        # The spool first, on its own: makedirs gives only the leaf the 0700 mode.
        if not (self._ensure_dir(self.spool_root) and self._ensure_dir(self.paths.dir)):
            return
        if not self._stacks_tried and self.is_owner:  # before run.json, which says it is armed
            self._stacks_tried = True
            self.record.stack_signal = stack_dumps.arm(self.paths.dir, report_once)
        if self._write(self.paths.run, self.record.to_dict(), durable=True):
            self._record_written = True
            self._open_live()

    def _open_live(self) -> None:
        if self._live_tried or not self.is_owner:
            return
        self._live_tried = True
        try:
            self._live = live_file.LiveWriter.create(self.paths.dir)
        except (OSError, ValueError) as exc:  # ENOSPC, EROFS...: the run is still watched, from beat.json
            report_once("live", f"cannot map {self.paths.live} ({exc}); heartbeats only: a kill alert "
                                "may show the step of the last heartbeat, not the last step")

    def _flush_messages(self) -> None:
        while self._outgoing:
            when, text = self._outgoing.popleft()
            self._msg_seq += 1
            message = spool.Message(seq=self._msg_seq, time=when, text=text)
            if self.inline_channels() and _daemon_watching(self.spool_root) is False:
                # Sent from here, so not queued too: a daemon started later must not repeat it.
                _deliver_without_daemon(self, message)
                continue
            written = self._ensure_dir(self.paths.messages) and self._write(
                self.paths.message(message.seq), message.to_dict()
            )
            if not written:
                _deliver_without_daemon(self, message)  # the spool failed; still try to tell

    def _ensure_dir(self, path: Path) -> bool:
        try:
            safe_json.make_private_dir(path)
            return True
        except OSError as exc:
            self._report_io(exc)
            return False

    def _write(self, path: Path, data: Mapping[str, Any], *, durable: bool = False) -> bool:
        if not self.is_owner:
            return False
        try:
            safe_json.write_json(path, data, durable=durable)
            return True
        except OSError as exc:
            self._report_io(exc)
        except (ValueError, TypeError) as exc:  # a value JSON cannot hold: a bug, never training's problem
            report_once("spool-encode", f"cannot record run {self.run_id} ({exc}); training continues")
        return False

    def _report_io(self, exc: OSError) -> None:
        report_once(
            "spool-io",
            f"cannot write to the spool {self.spool_root} ({exc.strerror or exc}); "
            "training continues, but this run is not fully watched (reported once)",
        )

    # --------------------------------------------------- delivery mode

    def inline_channels(self) -> list[dict[str, Any]]:
        return [c for c in self.record.channels if isinstance(c, dict)]

    def _announce_delivery_mode(self) -> None:
        if _daemon_watching(self.spool_root) is not False:
            return
        if self.inline_channels():
            report_once(
                "no-daemon",
                f"no sentinel daemon is watching {self.spool_root}: alerts for this run are sent "
                "from this process, so a kill (SIGKILL, OOM) will not be reported",
            )
        else:
            report_once(
                "no-daemon",
                f"no sentinel daemon is watching {self.spool_root}: this run is recorded there, "
                "but only a running daemon (`sentinel daemon`) sends alerts",
            )

    def mark_final_delivered_inline(self) -> None:
        """The fallback sender delivered the ending: say so in final.json, so
        a daemon started later does not send it to the inline channels again."""
        final = self.final
        if final is None or not self.is_owner:
            return
        final.delivered_inline = True
        # No lock: the record no longer changes once ended, and the main thread
        # may hold the lock while it waits for this sender (SIGTERM at exit).
        self._write(self.paths.final, final.to_dict(), durable=True)

    def _deliver_final_without_daemon(self) -> None:
        if self.final is None or not self.inline_channels():
            return
        if _daemon_watching(self.spool_root) is not False:
            return
        try:
            from sentinel.delivery import fallback

            fallback.deliver_final(self.record, self.final, self.inline_channels(), report_once,
                                   on_delivered=self.mark_final_delivered_inline)
        except Exception as exc:
            report_once("fallback", f"could not send this run's end from the process: {exc!r}")


def _labels(labels: Mapping[str, Any]) -> dict[str, str]:
    return {escape_undecodable(str(k)): escape_undecodable(str(v))
            for k, v in labels.items() if v is not None and v != ""}


def _cwd() -> str:
    try:
        return os.getcwd()
    except OSError:
        return ""


def _daemon_watching(spool_root: Path) -> Optional[bool]:
    """True/False if a daemon is/is not alive; never raises."""
    try:
        from sentinel.formats.daemon_file import daemon_alive

        return daemon_alive(spool_root)
    except Exception:
        return None


def _deliver_without_daemon(rec: Recorder, message: spool.Message) -> None:
    try:
        from sentinel.delivery import fallback

        fallback.deliver_message(rec.record, message, rec.inline_channels(), report_once)
    except Exception as exc:
        report_once("fallback", f"could not send a message from the process: {exc!r}")


def _deliver_orphan_message(rec: Recorder, text: str) -> None:
    """A message after the run ended: no spool record will carry it any more."""
    rec._msg_seq += 1
    _deliver_without_daemon(rec, spool.Message(seq=rec._msg_seq, time=time.time(), text=text))


# ================================================================ process hooks

_ACTIVE: list[Recorder] = []
_hooks_installed = False
_exit_status: Optional[int] = None  # what sys.exit was called with, on the main thread
_previous_excepthook: Callable[..., Any] = sys.excepthook
_original_exit: Callable[..., Any] = sys.exit
_sigterm_installed = False


def active_runs() -> list[Recorder]:
    return list(_ACTIVE)


def _install_process_hooks() -> None:
    global _hooks_installed, _previous_excepthook, _original_exit
    if _hooks_installed:
        return
    _hooks_installed = True
    atexit.register(_at_exit)
    _previous_excepthook = sys.excepthook
    sys.excepthook = _excepthook
    _original_exit = sys.exit
    sys.exit = _exit_recording_status  # type: ignore[assignment]


def _exit_recording_status(status: Any = None) -> None:
    """``sys.exit`` as before; the status is only remembered for the final record."""
    global _exit_status
    if threading.current_thread() is threading.main_thread():
        _exit_status = exit_status_code(status)
    _original_exit(status)


def _excepthook(exc_type: type, exc: BaseException, tb: Any) -> None:
    try:
        if _ACTIVE:
            text = "".join(traceback.format_exception(exc_type, exc, tb))
            for rec in list(_ACTIVE):
                if issubclass(exc_type, KeyboardInterrupt):
                    rec.finish("aborted", error=text, signal_name="SIGINT")
                else:
                    rec.finish("crashed", error=text, exit_code=1)
    except Exception:
        pass
    _previous_excepthook(exc_type, exc, tb)


def _at_exit() -> None:
    for rec in list(_ACTIVE):
        rec.finish("finished")
    if "sentinel.delivery.fallback" in sys.modules:
        sys.modules["sentinel.delivery.fallback"].drain(FALLBACK_EXIT_TIMEOUT, report_once)


def _install_sigterm_handler() -> None:
    """Only where it changes nothing else: SIGTERM still default, main thread."""
    global _sigterm_installed
    if _sigterm_installed or threading.current_thread() is not threading.main_thread():
        return
    try:
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return
        signal.signal(signal.SIGTERM, _on_sigterm)
        _sigterm_installed = True
    except (ValueError, OSError):
        pass


def _restore_sigterm_handler() -> None:
    global _sigterm_installed
    if not _sigterm_installed or threading.current_thread() is not threading.main_thread():
        return
    try:
        if signal.getsignal(signal.SIGTERM) is _on_sigterm:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        _sigterm_installed = False
    except (ValueError, OSError):
        pass


def _on_sigterm(signum: int, frame: Any) -> None:
    try:
        for rec in list(_ACTIVE):
            rec.finish(ending_kind("SIGTERM") or "terminated", signal_name="SIGTERM")
        if "sentinel.delivery.fallback" in sys.modules:
            sys.modules["sentinel.delivery.fallback"].drain(FALLBACK_EXIT_TIMEOUT, report_once)
    finally:
        # Die exactly as the default disposition would have made us die.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
        os._exit(128 + signal.SIGTERM)  # not reached: the signal is fatal now


def _forget_runs_in_child() -> None:
    global _sentry
    for rec in _ACTIVE:
        rec._live = None  # the mapping is shared with the parent: never write the parent's steps
    _ACTIVE.clear()
    _sentry = None  # the parent's sentry thread does not exist here
    stack_dumps.forget_in_child()


# ------------------------------------------------------------ watched threads

_sentry: Optional[list[int]] = None  # [tid, start_ticks] of this process's sentry thread
_sentry_lock = threading.Lock()


def _thread_identity(tid: Optional[int]) -> Optional[list[int]]:
    ticks = thread_start_ticks(os.getpid(), tid) if tid else None
    return [tid, ticks] if tid and ticks is not None else None


def _sentry_identity() -> Optional[list[int]]:
    """This process's sentry: a thread that only sleeps, started once.

    With the heartbeat thread it gives the daemon two sub-threads to watch:
    either may be the last thread of a dying process (which pays for
    unmapping its memory), rarely both. Blocked on a lock it costs nothing.
    """
    global _sentry
    with _sentry_lock:
        if _sentry is None:
            thread = threading.Thread(target=threading.Event().wait, name="sentinel-sentry", daemon=True)
            thread.start()
            _sentry = _thread_identity(thread.native_id)
        return _sentry


def _watch_threads(heartbeat: threading.Thread) -> list[list[int]]:
    found = [_thread_identity(heartbeat.native_id), _sentry_identity()]
    return [pair for pair in found if pair is not None]


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_runs_in_child)
