"""What the dependencies named in the original design would cost against what serves instead.

    python3 benchmarks/deps_cost.py [--tiny]

* import time (``python -X importtime``, cumulative, median of several fresh
  interpreters) of requests vs urllib3 (the HTTP client every channel uses),
  watchdog's inotify observer vs the daemon's own ctypes inotify reader
  (``sentinel.daemon.spool_watcher``), psutil and PyYAML;
* threads a started watchdog observer adds (the daemon's reader adds none:
  its fd sits in the main loop's epoll);
* one JSON POST on a kept-alive loopback connection, requests.Session vs
  urllib3.PoolManager, to an HTTP/1.1 server on 127.0.0.1.

Reported only (no targets): docs/dependencies.md cites these figures.
"""

from __future__ import annotations

import _common

_common.ensure_venv()

import json  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer  # noqa: E402
from typing import Any  # noqa: E402

from _common import Verdict, fmt, percentile, table  # noqa: E402

# label -> (what the process has imported already, the import measured). The
# daemon's reader is measured on top of what the daemon imports anyway (its
# package and the spool format), so only its own cost counts.
IMPORTS = {
    "requests": ("", "requests"),
    "urllib3": ("", "urllib3"),
    "watchdog (inotify observer)": ("", "watchdog.observers.inotify"),
    "sentinel.daemon.spool_watcher (ctypes inotify)": ("sentinel.daemon, sentinel.formats.spool",
                                                       "sentinel.daemon.spool_watcher"),
    "psutil": ("", "psutil"),
    "yaml (PyYAML)": ("", "yaml"),
}
_LINE = re.compile(r"import time:\s+\d+\s+\|\s+(\d+)\s+\|( *)\S")


_MARK = "colorsys"  # a small stdlib module nothing here imports: where the measured import starts


def import_us(prelude: str, module: str) -> float:
    """What ``import module`` adds to a fresh interpreter that imported ``prelude``:
    the cumulative times of the top-level imports it triggers."""
    code = f"{'import ' + prelude + '; ' if prelude else ''}import {_MARK}; import {module}"
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", code],
                          capture_output=True, text=True, timeout=60, cwd=_common.ROOT, check=True)
    lines = done.stderr.splitlines()
    start = next(i for i, line in enumerate(lines) if line.rstrip().endswith("| " + _MARK)) + 1
    return sum(float(m.group(1)) for m in map(_LINE.match, lines[start:]) if m and len(m.group(2)) <= 1)


def watchdog_threads() -> int:
    from watchdog.events import FileSystemEventHandler
    from watchdog.observers.inotify import InotifyObserver

    before = threading.active_count()
    with tempfile.TemporaryDirectory() as directory:
        observer = InotifyObserver()
        observer.schedule(FileSystemEventHandler(), directory, recursive=True)
        observer.start()
        try:
            return threading.active_count() - before
        finally:
            observer.stop()
            observer.join(10)


class _Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = 1 << 16  # the answer leaves in one write (two would meet Nagle and a delayed ACK)
    disable_nagle_algorithm = True

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


def post_times(count: int) -> dict[str, list[float]]:
    import requests
    import urllib3

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    body = json.dumps({"text": "Killed: resnet50", "step": 12345}).encode()
    headers = {"Content-Type": "application/json"}
    pool = urllib3.PoolManager()
    session = requests.Session()
    clients = {
        "urllib3.PoolManager": lambda: pool.request("POST", url, body=body, headers=headers,
                                                    timeout=10).status,
        "requests.Session": lambda: session.post(url, data=body, headers=headers, timeout=10).status_code,
    }
    times: dict[str, list[float]] = {name: [] for name in clients}
    try:
        for _ in range(count):  # interleaved, so drift in load hits both alike
            for name, post in clients.items():
                started = time.perf_counter_ns()
                assert post() == 200
                times[name].append((time.perf_counter_ns() - started) / 1000)
    finally:
        session.close()
        pool.clear()
        server.shutdown()
        server.server_close()
        thread.join(10)
    return times


def main() -> None:
    args = _common.parser(__doc__.splitlines()[0]).parse_args()
    started = time.monotonic()
    info = _common.machine()
    repeats, posts = (2, 50) if args.tiny else (9, 2000)
    imports = {label: [import_us(*what) for _ in range(repeats)] for label, what in IMPORTS.items()}
    import_rows = [(label, fmt(_common.median(values) / 1000, 1)) for label, values in imports.items()]
    threads = watchdog_threads()
    times = post_times(posts)
    post_rows = [(name, fmt(_common.median(v), 0), fmt(percentile(v, 99), 0)) for name, v in times.items()]
    body = "\n".join([
        f"### Import time (median of {repeats} fresh interpreters, `-X importtime`, top-level sum)", "",
        table(["module", "ms"], import_rows), "",
        "### Threads", "",
        f"A started watchdog `InotifyObserver` adds {threads} threads; the daemon's own reader adds 0 "
        "(its inotify fd is in the main loop's epoll).", "",
        f"### One JSON POST on a kept-alive loopback connection ({posts} each, interleaved)", "",
        table(["client", "median µs", "p99 µs"], post_rows), "",
    ])
    verdicts = [
        Verdict("deps_cost", "requests import", import_rows[0][1] + " ms", "-", None, "not a dependency"),
        Verdict("deps_cost", "urllib3 POST median", post_rows[0][1] + " µs", "-", None),
    ]
    _common.publish(args, "deps_cost", "12. Dependencies: what they would cost", body, verdicts, started,
                    info)


if __name__ == "__main__":
    main()
