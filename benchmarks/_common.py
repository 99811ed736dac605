"""What every benchmark shares: the interpreter, arguments, statistics,
machine facts, process clean-up and the RESULTS.md writer.

Each benchmark is a script that prints its tables and replaces its own
section of ``benchmarks/RESULTS.md`` (``--tiny``: a scratch file instead, so
the committed full run is never overwritten by a smoke run).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import re
import resource
import shlex
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence, TypeVar

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = ROOT / "benchmarks"
RESULTS = BENCH_DIR / "RESULTS.md"
VENV = ROOT / ".venv"
VENV_PYTHON = VENV / "bin" / "python"
TINY_RESULTS = Path(tempfile.gettempdir()) / "sentinel-bench-tiny" / "RESULTS.md"

T = TypeVar("T")


def ensure_venv() -> None:
    """Re-run this script with the project's venv python when started with another.

    Benchmarks need the daemon's dependencies (psutil, urllib3,
    pyyaml) and SwanLab; ``tests/run.py`` builds ``.venv`` with all of them.
    """
    if os.environ.get("SENTINEL_BENCH_NO_REEXEC"):
        return
    if VENV_PYTHON.exists() and Path(sys.prefix).resolve() != VENV.resolve():
        os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), *sys.argv])
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))  # `sentinel` and `tests.fakes` from this checkout


# ---------------------------------------------------------------- arguments


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--tiny", action="store_true",
                   help="a tiny size that only proves the script works (CI); results go to a scratch file")
    p.add_argument("--results", type=Path, default=None,
                   help=f"the RESULTS.md to update (default: {RESULTS.relative_to(ROOT)}; "
                        f"with --tiny {TINY_RESULTS})")
    p.add_argument("--summary", type=Path, default=None,
                   help="append the target verdicts as JSON lines here (run_all.py uses it)")
    return p


def results_path(args: argparse.Namespace) -> Path:
    if args.results is not None:
        return Path(args.results)
    return TINY_RESULTS if args.tiny else RESULTS


# ---------------------------------------------------------------- statistics


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (no interpolation: every figure was measured)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * pct // 100))  # ceil(n * p / 100)
    return ordered[min(len(ordered), int(rank)) - 1]


def summary(values: Sequence[float]) -> dict[str, float]:
    return {"n": len(values), "p50": percentile(values, 50), "p90": percentile(values, 90),
            "p99": percentile(values, 99), "max": max(values) if values else float("nan"),
            "min": min(values) if values else float("nan")}


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


def ms(ns: float) -> float:
    return ns / 1e6


def fmt(value: float, digits: int = 2) -> str:
    if value != value:  # NaN
        return "–"
    return f"{value:,.{digits}f}"


# ---------------------------------------------------------------- tables


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A Markdown table (also readable as plain text on a terminal)."""
    rows = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"
    out = [line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in rows]
    return "\n".join(out)


@dataclass
class Verdict:
    """One target: what was measured against what was promised."""

    benchmark: str
    metric: str
    measured: str
    target: str
    met: Optional[bool]  # None: reported only, no target
    note: str = ""

    @property
    def status(self) -> str:
        return {True: "met", False: "**MISSED**", None: "info"}[self.met]


def verdict_table(verdicts: Sequence[Verdict]) -> str:
    return table(["metric", "measured", "target", "status", "note"],
                 [(v.metric, v.measured, v.target, v.status, v.note) for v in verdicts])


# ---------------------------------------------------------------- machine


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _ram_gib() -> float:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    return float("nan")


def _filesystem(path: Path) -> str:
    """The file system type under ``path`` (fsync cost depends on it)."""
    best, kind = "", "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and str(path).startswith(parts[1]) and len(parts[1]) > len(best):
                best, kind = parts[1], f"{parts[2]} ({parts[0]})"
    return kind


def machine() -> dict[str, str]:
    try:
        from importlib.metadata import version

        import swanlab  # noqa: F401
        swan = version("swanlab")
    except Exception:
        swan = "not installed"
    return {
        "cpu": _cpu_model(),
        "cores": str(os.cpu_count()),
        "ram": f"{_ram_gib():.1f} GiB",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "swanlab": swan,
        "tmp_fs": _filesystem(Path(tempfile.gettempdir())),
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def machine_line(info: Optional[dict[str, str]] = None) -> str:
    m = info or machine()
    return (f"Machine: {m['cpu']}, {m['cores']} cores, {m['ram']} RAM, Linux {m['kernel']}, "
            f"Python {m['python']}, SwanLab {m['swanlab']}; temp dir on {m['tmp_fs']}; "
            f"load average at start {m['load']}; {m['date']}.")


PARENT_COMMAND_ENV = "SENTINEL_BENCH_PARENT_COMMAND"


def command_line() -> str:
    """The command that produced these numbers, as a reader would type it."""
    script = Path(sys.argv[0]).resolve()
    with contextlib.suppress(ValueError):
        script = script.relative_to(ROOT)
    args, skip = [], False
    for arg in sys.argv[1:]:  # where the results go is not part of the measurement
        if skip:
            skip = False
        elif arg in ("--results", "--summary"):
            skip = True
        elif not arg.startswith(("--results=", "--summary=")):
            args.append(arg)
    return shlex.join(["python3", str(script), *args])


def command_markdown() -> str:
    """``command_line()`` for RESULTS.md, naming run_all.py when it started this script."""
    parent = os.environ.get(PARENT_COMMAND_ENV)
    script = Path(sys.argv[0]).resolve()
    with contextlib.suppress(ValueError):
        script = script.relative_to(ROOT)
    if parent:
        return f"`{parent}` (this part: `{script}`)"
    return f"`{command_line()}`"


# ---------------------------------------------------------------- RESULTS.md


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"


RESULTS_HEAD = """# Benchmark results

Produced by `python3 benchmarks/run_all.py` (what each script measures: the
Benchmarks page, docs/benchmarks.md). Each section below is replaced by its script when it is
rerun on its own; `run_all.py` writes the whole file afresh.
"""


SUMMARY = "summary"
_VERDICTS_RE = re.compile(r"^<!-- verdicts (.*) -->$", re.MULTILINE)


def write_section(path: Path, name: str, body: str) -> None:
    """Replace section ``name`` of ``path`` (or add it: the summary before every
    other section, the rest at the end), then rebuild the summary from the
    verdicts recorded in every section."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = path.read_text(encoding="utf-8") if path.exists() else RESULTS_HEAD
    text = _replace_section(text, name, body)
    if name != SUMMARY:
        text = _replace_section(text, SUMMARY, summary_body(text))
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _replace_section(text: str, name: str, body: str) -> str:
    begin, end = _markers(name)
    block = f"{begin}\n{body.rstrip()}\n{end}\n"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end) + r"\n?", re.DOTALL)
    if pattern.search(text):
        return pattern.sub(lambda _: block, text, count=1)
    first = text.find("<!-- BEGIN ")
    if name == SUMMARY and first >= 0:
        return text[:first] + block + "\n" + text[first:]
    return text.rstrip("\n") + "\n\n" + block


def summary_body(text: str) -> str:
    """The headline table: every target of every section in the file."""
    verdicts = [Verdict(**item) for match in _VERDICTS_RE.finditer(text)
                for item in json.loads(match.group(1))]
    targets = [v for v in verdicts if v.met is not None]
    missed = [v for v in targets if not v.met]
    lines = ["## Headline: every target", ""]
    if targets:
        lines += [verdict_table(targets), "",
                  f"{len(targets) - len(missed)} of {len(targets)} targets met."
                  + (" Every missed target is explained, with its cause and a fix, in its section below."
                     if missed else "")]
    else:
        lines.append("No targets measured yet.")
    return "\n".join(lines)


def publish(args: argparse.Namespace, name: str, title: str, body: str, verdicts: Sequence[Verdict],
            started: float, info: Optional[dict[str, str]] = None) -> None:
    """Print the section, write it into RESULTS.md and the verdicts into --summary."""
    elapsed = time.monotonic() - started
    size = "tiny (CI smoke run: numbers mean nothing)" if args.tiny else "full"
    head = [f"## {title}", "", machine_line(info), "",
            f"Command: {command_markdown()}, {size}; took {elapsed:.0f} s.", ""]
    targets = ["### Targets", "", verdict_table(verdicts), ""] if verdicts else []
    record = f"<!-- verdicts {json.dumps([asdict(v) for v in verdicts], ensure_ascii=False)} -->"
    section = "\n".join(head + targets) + "\n" + body.strip() + "\n" + record + "\n"
    print()
    print(section)
    path = results_path(args)
    write_section(path, name, section)
    print(f"[{name}] section written to {path}")
    if args.summary is not None:
        with open(args.summary, "a", encoding="utf-8") as f:
            for v in verdicts:
                f.write(json.dumps(asdict(v)) + "\n")


# ---------------------------------------------------------------- processes


def raise_nofile(wanted: int) -> int:
    """Raise the soft open-file limit toward ``wanted`` (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(max(soft, wanted), hard) if hard != resource.RLIM_INFINITY else max(soft, wanted)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def kill_and_reap(pids: Iterable[int], timeout: float = 10.0) -> None:
    """SIGKILL our own children by pid and reap them; bounded in time."""
    pids = list(pids)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    for pid in pids:
        while True:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                break
            if done or time.monotonic() > deadline:
                break
            time.sleep(0.002)


def wait_until(predicate: Callable[[], T], timeout: float, interval: float = 0.001,
               what: str = "condition") -> T:
    """Poll ``predicate`` until truthy (returned) or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (threads included) in seconds."""
    raw = Path(f"/proc/{pid}/stat").read_bytes()
    fields = raw[raw.rfind(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_status_kib(pid: int, key: str) -> int:
    """A ``kB`` field of /proc/<pid>/status (VmRSS, VmHWM, ...)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


ANCHORS = """Anchors — how long other tools take to notice a run that died silently:
- Weights & Biases marks a run that stopped sending heartbeats as *crashed* after about 5 minutes.
- SwanLab's server marks a silent run crashed after 30 minutes.
- healthchecks.io (cron-style pings) needs period + grace, each at least 60 s: 2 minutes or more.
"""


# ---------------------------------------------------------------- cheap watched runs


class SleepRuns:
    """Many real processes (``/bin/sleep``) recorded in a spool as watched runs.

    A Python victim per run would cost tens of MB each; ``sleep`` costs a few
    hundred kB, so 10,000 fit on a small box. Each gets a ``run.json`` written
    through ``sentinel.formats.spool`` exactly as a training process writes it (pid,
    start ticks, boot id), so the daemon cannot tell them from real runs.
    Each is its own process group, as separately started jobs are (one
    group of 10,000 would make every exit walk the whole group in the
    kernel); ``close()`` kills and reaps every one by pid.
    """

    def __init__(self, spool: Path, prefix: str, count: int, seconds: int = 3600) -> None:
        import getpass
        import socket

        from sentinel.formats import safe_json
        from sentinel.formats import spool as spool_format
        from sentinel.host.procid import boot_id, start_ticks

        self.spool = Path(spool)
        self.pids: list[int] = []
        self.names: list[str] = []
        self.run_ids: list[str] = []
        safe_json.make_private_dir(self.spool)
        sleep = "/bin/sleep" if Path("/bin/sleep").exists() else "/usr/bin/sleep"
        env = {"PATH": "/usr/bin:/bin"}
        try:
            for _ in range(count):
                self.pids.append(os.posix_spawn(sleep, ["sleep", str(seconds)], env, setpgroup=0))
            host, user, uid = socket.gethostname(), getpass.getuser(), os.getuid()
            cwd, now = os.getcwd(), time.time()
            boot = boot_id()
            for i, pid in enumerate(self.pids):
                ticks = start_ticks(pid)
                if ticks is None:
                    raise RuntimeError(f"sleep process {pid} vanished")
                name = f"{prefix}{i:05d}"
                run_id = spool_format.new_run_id(pid, now)
                record = spool_format.RunRecord(
                    run_id=run_id, pid=pid, start_ticks=ticks, boot_id=boot, hostname=host, uid=uid,
                    user=user,
                    cmdline=["sleep", str(seconds)], cwd=cwd, started=now, heartbeat_interval=10.0,
                    stall_timeout=86400.0, name=name, source="run")
                paths = spool_format.RunPaths(self.spool, run_id)
                safe_json.make_private_dir(paths.dir)
                safe_json.write_json(paths.run, record.to_dict())
                self.names.append(name)
                self.run_ids.append(run_id)
        except BaseException:
            self.close()
            raise

    def kill(self, index: int) -> int:
        """SIGKILL run ``index``; returns time.monotonic_ns() taken just before the kill."""
        t0 = time.monotonic_ns()
        os.kill(self.pids[index], signal.SIGKILL)
        return t0

    def reap(self, index: int) -> None:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pids[index], 0)

    def close(self) -> None:
        kill_and_reap(self.pids)
