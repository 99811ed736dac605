"""Prometheus metrics of one daemon: an HTTP ``/metrics`` and/or a textfile.

Needs ``prometheus_client`` (``pip install 'run-sentinel[prometheus]'``).

Exposed (``host`` is the daemon's ``host:``; per-run series exist only while
the run is running or stalled, for at most ``MAX_RUN_SERIES`` runs)::

    sentinel_build_info{version,host}                        1
    sentinel_up                                              1
    sentinel_start_time_seconds                              when this daemon started
    sentinel_boot_time_seconds                               when this host booted
    sentinel_last_loop_timestamp_seconds                     the main loop's last pass
    sentinel_runs{state}                                     tracked runs by state
    sentinel_run_endings_total{ending}                       alerts raised, by ending
    sentinel_outbox_pending                                  (alert, channel) deliveries not done
    sentinel_deliveries_total{channel,result}                delivered | retry | dead
    sentinel_run_series_dropped                              active runs over the series cap
    sentinel_run_last_progress_timestamp_seconds{run,run_id,project,job,rank}
    sentinel_run_last_beat_timestamp_seconds{...}
    sentinel_run_step{...}

Label values from run records are cleaned and capped (``sentinel.common.fleet_labels``).
Per-run values are read from the runs' beat files when scraped, in the
server's (or the textfile writer's) thread, never in the daemon's loop.

The HTTP server also serves the ``sentinel status`` table as ``/`` (and
``/status``) and ``/status.json``, to clients on loopback addresses only:
``/metrics`` may be opened to a Prometheus server elsewhere, run names and
users stay on the machine. Everything is read-only.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Iterator, Optional

import sentinel
from sentinel.common.fleet_labels import clean_label, run_labels
from sentinel.daemon.config import Budgets
from sentinel.fleet.bounded_http import BoundedHTTPServer, BoundedHTTPServerV6
from sentinel.formats import safe_json, spool
from sentinel.host import jobs
from sentinel.model import endings
from sentinel.model.alerts import Alert, AlertKind
from sentinel.model.observer import FleetObserver

log = logging.getLogger("sentinel.metrics")

MAX_RUN_SERIES = 500  # active runs with per-run series; the rest are counted in run_series_dropped
TEXTFILE_INTERVAL = 10.0  # seconds between textfile rewrites
HTTP_TIMEOUT = 10.0  # a connection's time in all (request and answer), and the idle limit
RUN_STATES = endings.RUN_STATES  # every state a run can be in, from the endings table
ENDINGS = tuple(k.value for k in AlertKind if k.is_state)
_ACTIVE = ("running", "stalled")
RUN_LABEL_NAMES = ("run", "run_id", "project", "job", "rank")


def require_client() -> Any:
    try:
        import prometheus_client
        import prometheus_client.core  # noqa: F401 (the metric families, used as client.core)
    except ImportError:
        raise RuntimeError("metrics need prometheus_client: pip install 'run-sentinel[prometheus]'") from None
    return prometheus_client


@dataclass
class RunView:
    """What the metrics need of one tracked run (a copy: the loop owns the TrackedRun)."""

    run_id: str
    labels: tuple[str, ...]  # values of RUN_LABEL_NAMES
    state: str
    beat_path: Path
    owner_uid: Optional[int]  # in a shared spool: the only uid whose beat file counts
    started: float


def boot_time() -> Optional[float]:
    try:
        with open("/proc/stat", encoding="ascii") as stat_file:
            for line in stat_file:
                if line.startswith("btime "):
                    return float(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


class Metrics(FleetObserver):
    """The observer that keeps the numbers, and the exporters that show them."""

    def __init__(self, config: Any, outbox: Any = None, *, status_source: Any = None) -> None:
        self.client = require_client()
        self.config = config
        self.outbox = outbox
        self.host = clean_label(config.host)
        self.started = time.time()
        self.boot_time = boot_time()
        self.last_loop: Optional[float] = None
        self.runs: dict[str, RunView] = {}
        self.endings: dict[str, int] = dict.fromkeys(ENDINGS, 0)
        self.deliveries: dict[tuple[str, str], int] = {}
        self.lock = threading.Lock()
        self.registry = self.client.CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))
        self.server: Optional[BoundedHTTPServer] = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._textfile_error: Optional[str] = None

    # ------------------------------------------------------------ hooks (the daemon's thread)

    def run_tracked(self, run: Any, shared_spool: bool) -> None:
        record = run.record
        labels = run_labels(record.labels, jobs.labels(record.job))  # jobs: the launcher's job and rank
        view = RunView(
            run_id=run.run_id,
            labels=(clean_label(record.name or record.labels.get("experiment") or run.run_id),
                    clean_label(run.run_id), labels["project"], labels["job"], labels["rank"]),
            state=run.state.value, beat_path=run.paths.beat,
            owner_uid=run.owner_uid if shared_spool else None, started=record.started,
        )
        with self.lock:
            self.runs[run.run_id] = view

    def run_changed(self, run: Any, alert: Optional[Alert]) -> None:
        with self.lock:
            view = self.runs.get(run.run_id)
            if view is not None:
                view.state = run.state.value
            if alert is not None and alert.kind.value in self.endings:
                self.endings[alert.kind.value] += 1

    def run_forgotten(self, run_id: str) -> None:
        with self.lock:
            self.runs.pop(run_id, None)

    def loop_pass(self, now: float) -> None:
        self.last_loop = now

    def delivery_result(self, channel: str, result: str, count: int = 1) -> None:
        key = (clean_label(channel), result)
        with self.lock:
            self.deliveries[key] = self.deliveries.get(key, 0) + count

    # ------------------------------------------------------------ exporters

    def start(self) -> Metrics:
        metrics = self.config.metrics
        if metrics.listen is not None:
            self.server = _make_server(self, metrics.listen)
            self._spawn("sentinel-metrics-http", self.server.serve_forever)
            log.info("metrics on http://%s:%d/metrics", *self.server.server_address[:2])
        if metrics.textfile is not None:
            self.write_textfile()  # at once: node_exporter sees the daemon from its first scrape
            self._spawn("sentinel-metrics-textfile", self._textfile_loop)
        return self

    def _spawn(self, name: str, target: Any) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def close(self) -> None:
        self._stop.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
        for thread in self._threads:
            thread.join(5.0)

    def exposition(self) -> bytes:
        return bytes(self.client.generate_latest(self.registry))

    def write_textfile(self) -> None:
        """Atomically replace the textfile (prometheus_client writes a temporary file and renames it)."""
        path = self.config.metrics.textfile
        try:
            self.client.write_to_textfile(str(path), self.registry)
        except OSError as exc:
            reason = f"{exc.strerror or exc}"
            if reason != self._textfile_error:  # once per distinct trouble, not every 10 s
                log.error("cannot write the metrics textfile %s: %s", path, reason)
            self._textfile_error = reason
            return
        if self._textfile_error is not None:
            log.info("metrics textfile %s written again", path)
            self._textfile_error = None

    def _textfile_loop(self) -> None:
        while not self._stop.wait(TEXTFILE_INTERVAL):
            self.write_textfile()

    # ------------------------------------------------------------ the numbers

    def snapshot(self) -> tuple[list[RunView], dict[str, int], dict[tuple[str, str], int]]:
        with self.lock:
            return ([RunView(**vars(v)) for v in self.runs.values()], dict(self.endings),
                    dict(self.deliveries))


class _Collector:
    """Builds every metric family at collection time from the observer's snapshot."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Any]:
        m = self.metrics
        core = m.client.core
        runs, endings, deliveries = m.snapshot()

        def gauge(name: str, doc: str, value: Optional[float]) -> Any:
            family = core.GaugeMetricFamily(name, doc)
            if value is not None:
                family.add_metric([], value)
            return family

        info = core.GaugeMetricFamily("sentinel_build_info", "run-sentinel's version and this daemon's host",
                                      labels=["version", "host"])
        info.add_metric([getattr(sentinel, "__version__", "0"), m.host], 1)
        yield info
        yield gauge("sentinel_up", "1 while the daemon answers", 1)
        yield gauge("sentinel_start_time_seconds", "When this daemon started (Unix time)", m.started)
        yield gauge("sentinel_boot_time_seconds", "When this host booted (Unix time)", m.boot_time)
        yield gauge("sentinel_last_loop_timestamp_seconds", "The main loop's last pass (Unix time)",
                    m.last_loop)
        by_state = core.GaugeMetricFamily("sentinel_runs", "Tracked runs by state", labels=["state"])
        counts = dict.fromkeys(RUN_STATES, 0)
        for view in runs:
            counts[view.state] = counts.get(view.state, 0) + 1
        for state, count in counts.items():
            by_state.add_metric([state], count)
        yield by_state
        ended = core.CounterMetricFamily("sentinel_run_endings", "Alerts raised, by how the run ended "
                                         "(or stalled / recovered)", labels=["ending"])
        for ending, count in endings.items():
            ended.add_metric([ending], count)
        yield ended
        pending = m.outbox.pending_count() if m.outbox is not None else None
        yield gauge("sentinel_outbox_pending", "Deliveries (alert, channel) not done yet", pending)
        delivered = core.CounterMetricFamily("sentinel_deliveries", "Delivery attempts by channel and result",
                                             labels=["channel", "result"])
        for (channel, result), count in sorted(deliveries.items()):
            delivered.add_metric([channel, result], count)
        yield delivered
        yield from self._per_run(core, runs)

    def _per_run(self, core: Any, runs: list[RunView]) -> Iterator[Any]:
        active = [v for v in runs if v.state in _ACTIVE]
        shown = active[:MAX_RUN_SERIES]
        yield core.GaugeMetricFamily("sentinel_run_series_dropped",
                                     f"Active runs without per-run series (more than {MAX_RUN_SERIES})",
                                     value=len(active) - len(shown))
        progress_family = core.GaugeMetricFamily(
            "sentinel_run_last_progress_timestamp_seconds",
            "When an active run last reported progress (its start if never)", labels=list(RUN_LABEL_NAMES))
        beat_family = core.GaugeMetricFamily("sentinel_run_last_beat_timestamp_seconds",
                                             "An active run's last heartbeat", labels=list(RUN_LABEL_NAMES))
        step_family = core.GaugeMetricFamily("sentinel_run_step", "An active run's last reported step",
                                             labels=list(RUN_LABEL_NAMES))
        for view in shown:
            progress = _read_beat(view)
            last = view.started
            if progress is not None and progress.last_progress is not None:
                last = progress.last_progress
            progress_family.add_metric(list(view.labels), last)
            if progress is not None:
                beat_family.add_metric(list(view.labels), progress.beat)
                if progress.step is not None:
                    step_family.add_metric(list(view.labels), progress.step)
        yield progress_family
        yield beat_family
        yield step_family


def _read_beat(view: RunView) -> Optional[spool.Progress]:
    """The run's beat file as the daemon would accept it (no symlinks, the run's own in a shared spool)."""
    try:
        data, st = safe_json.read_json(view.beat_path)
        if view.owner_uid is not None and st.st_uid != view.owner_uid:
            return None
        return spool.Progress.from_dict(data)
    except (OSError, safe_json.SpoolFormatError, ValueError, TypeError):
        return None


# ---------------------------------------------------------------- HTTP


def _is_loopback(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or bool(mapped and mapped.is_loopback)


def _make_server(metrics: Metrics, listen: tuple[str, int]) -> BoundedHTTPServer:
    from sentinel.fleet import status_page

    class Handler(BaseHTTPRequestHandler):
        server_version = "run-sentinel"
        sys_version = ""
        timeout = HTTP_TIMEOUT

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            self._answer(send_body=True)

        def do_HEAD(self) -> None:  # noqa: N802
            self._answer(send_body=False)

        def _answer(self, send_body: bool) -> None:
            path = self.path.split("?", 1)[0]
            try:
                if path == "/metrics":
                    status, kind, body = 200, metrics.client.CONTENT_TYPE_LATEST, metrics.exposition()
                elif path in ("/", "/status", "/status.json"):
                    if not _is_loopback(self.client_address[0]):
                        status, kind, body = 403, "text/plain; charset=utf-8", b"status: local clients only\n"
                    else:
                        status, kind, body = status_page.answer(path, metrics.config)
                else:
                    status, kind, body = 404, "text/plain; charset=utf-8", b"not found: see /metrics\n"
            except Exception:
                log.exception("metrics HTTP request %s failed", path)
                status, kind, body = 500, "text/plain; charset=utf-8", b"internal error\n"
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            if send_body:
                self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            log.debug("metrics HTTP %s: " + format, self.client_address[0], *args)

    address, port = listen
    server_class = BoundedHTTPServerV6 if ":" in address else BoundedHTTPServer
    budgets = getattr(metrics.config, "budgets", None) or Budgets()
    server = server_class((address, port), Handler, max_connections=budgets.http_connections,
                          max_per_peer=budgets.http_connections_per_peer, deadline=HTTP_TIMEOUT)
    os.set_inheritable(server.fileno(), False)
    return server
