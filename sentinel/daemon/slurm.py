"""Scheduler endings: did Slurm end this job (time limit, scancel, preemption, node failure)?

A Slurm job ending by the scheduler looks like any SIGTERM to the process
(then SIGKILL after ``KillWait``), so the run alone would say
"terminated". What the host can see tells the cases apart:

* ``scontrol show job -o <id>`` (when Slurm's tools are installed): while
  the job's processes die it shows ``JobState=COMPLETING`` — the base state
  is hidden behind that flag — with ``Reason=TimeLimit`` for a time limit;
  once done, ``TIMEOUT``, ``CANCELLED``, ``PREEMPTED``, ``NODE_FAIL``, or
  ``PENDING`` with a higher ``Restarts`` count for a job that was requeued
  (preempted with ``PreemptMode=REQUEUE``). So the job is asked again until
  its state settles, within ``SETTLE_SECONDS``.
* Without ``scontrol``: a SIGTERM at or after the job's end time (from
  ``SLURM_JOB_END_TIME`` where Slurm sets it) is the time limit.

Queries run on one background thread (``SlurmOracle``): ``scontrol`` talks
to slurmctld over the network and must never hold up the daemon's loop.
Nothing here runs for a run that is not a Slurm job.
"""

from __future__ import annotations

import logging
import queue
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Callable, Mapping, Optional

from sentinel.model.alerts import AlertKind
from sentinel.model.endings import Reason

log = logging.getLogger("sentinel.daemon.slurm")

SETTLE_SECONDS = 20.0  # how long to keep asking while the job is COMPLETING
_RETRY = 0.5
_QUERY_TIMEOUT = 5.0
_END_TIME_SLACK = 5.0  # Slurm signals at its time-limit check, not to the second
_FIELDS = ("JobId", "JobName", "JobState", "Reason", "Restarts", "TimeLimit", "StartTime", "EndTime")


@dataclass(frozen=True)
class SlurmEnding:
    kind: AlertKind
    reason: Reason

    @property
    def detail(self) -> str:
        """The reason in English (logs, tests)."""
        return self.reason.text("en") or ""


def parse_show_job(text: str) -> dict[str, str]:
    """The fields of ``scontrol show job -o`` output we use (one line, ``Key=Value`` words)."""
    out: dict[str, str] = {}
    for word in text.split():
        key, sep, value = word.partition("=")
        if sep and key in _FIELDS and key not in out:
            out[key] = value[:128]
    return out


def classify(job: Mapping[str, str], restarts_before: int) -> Optional[SlurmEnding]:
    """How Slurm ended the job, from ``scontrol`` fields; None if it did not (or not yet)."""
    state = job.get("JobState", "")
    reason = job.get("Reason", "")
    limit = job.get("TimeLimit", "")
    if state in ("TIMEOUT", "DEADLINE") or (state == "COMPLETING" and reason == "TimeLimit"):
        return SlurmEnding(AlertKind.TIME_LIMIT, Reason("slurm_time_limit", {"limit": limit})
                           if limit else Reason("slurm_time_limit_unknown"))
    if state == "PREEMPTED":
        return SlurmEnding(AlertKind.PREEMPTED, Reason("slurm_preempted"))
    restarts = job.get("Restarts", "")
    if state in ("PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "RUNNING") and \
            restarts.isdigit() and int(restarts) > restarts_before:
        return SlurmEnding(AlertKind.PREEMPTED, Reason("slurm_requeued", {"restarts": restarts}))
    if state == "CANCELLED":
        return SlurmEnding(AlertKind.CANCELLED, Reason("slurm_cancelled"))
    if state in ("NODE_FAIL", "BOOT_FAIL"):
        return SlurmEnding(AlertKind.NODE_FAILURE, Reason("slurm_node_failure",
                                                          {"state": state, "reason": reason or "?"}))
    return None


def is_settled(job: Mapping[str, str]) -> bool:
    """The state says how the job ended (no flag hides it any more)."""
    return job.get("JobState", "") not in ("", "COMPLETING", "RUNNING", "SIGNALING", "STAGE_OUT",
                                           "CONFIGURING", "SUSPENDED", "STOPPED")


def by_end_time(end_time: Optional[float], signal_name: Optional[str], ended: float) -> Optional[SlurmEnding]:
    """Without ``scontrol``: a SIGTERM at the job's end time is its time limit."""
    if end_time is None or signal_name != "SIGTERM" or ended < end_time - _END_TIME_SLACK:
        return None
    return SlurmEnding(AlertKind.TIME_LIMIT, Reason("slurm_end_time"))


def env_time(value: Optional[str]) -> Optional[float]:
    return float(value) if value and value.isdigit() else None


class SlurmOracle:
    """Asks ``scontrol`` about ended jobs on a thread; answers are read by the loop."""

    def __init__(self, wake: Callable[[], None], scontrol: Optional[str] = None) -> None:
        self.scontrol = scontrol or shutil.which("scontrol")
        self._wake = wake
        self._answers: dict[tuple[str, int], Optional[dict[str, str]]] = {}
        self._lock = threading.Lock()
        self._queue: queue.Queue[Optional[tuple[str, int]]] = queue.Queue()
        self._thread: Optional[threading.Thread] = None

    @property
    def available(self) -> bool:
        return self.scontrol is not None

    def ask(self, job_id: str, restarts_before: int) -> None:
        """Start finding out how ``job_id`` ended (once per attempt of the job)."""
        key = (job_id, restarts_before)
        if not self.available or not job_id.replace("_", "").isdigit():
            return
        with self._lock:
            if key in self._answers:
                return
            self._answers[key] = None
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name="sentinel-slurm", daemon=True)
            self._thread.start()
        self._queue.put(key)

    def answer(self, job_id: str, restarts_before: int) -> tuple[bool, dict[str, str]]:
        """(done, fields): done once the query settled or gave up (fields may be empty)."""
        with self._lock:
            value = self._answers.get((job_id, restarts_before), {})
        return value is not None, value or {}

    def _serve(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            fields = self._settle(*item)
            with self._lock:
                self._answers[item] = fields  # {} when nothing could be learned
            self._wake()

    def _settle(self, job_id: str, restarts_before: int) -> dict[str, str]:
        deadline = time.monotonic() + SETTLE_SECONDS
        fields: dict[str, str] = {}
        while True:
            fields = self._show(job_id) or fields
            if fields and (is_settled(fields) or classify(fields, restarts_before) is not None):
                return fields
            if time.monotonic() >= deadline:
                return fields
            time.sleep(_RETRY)  # a background thread, polling an external service

    def _show(self, job_id: str) -> Optional[dict[str, str]]:
        assert self.scontrol is not None
        try:
            out = subprocess.run([self.scontrol, "show", "job", "-o", job_id], capture_output=True,
                                 text=True, timeout=_QUERY_TIMEOUT, check=False)
        except (OSError, subprocess.SubprocessError) as exc:
            log.info("scontrol show job %s failed: %s", job_id, exc)
            return None
        if out.returncode != 0:
            return None
        return parse_show_job(out.stdout)

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
