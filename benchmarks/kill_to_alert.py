"""Kill-to-alert latency: SIGKILL a watched run, time until the alert reaches the phone.

    python3 benchmarks/kill_to_alert.py [--tiny] [--namespaced]

A real daemon process (the tests' launcher, ``tests/daemon_harness.py``)
delivers to a fake Bark server on 127.0.0.1 (and, in separate runs, to fake
Slack and DingTalk servers enforcing their real rate limits). Victims are
real Python processes using the real callbacks (``sentinel.watch``, and
SwanLab offline with ``SentinelCallback``), started ahead of time and kept
warm, then killed one at a time; the next is killed only after the previous
alert arrived. Latency = the fake's arrival stamp minus
``time.monotonic_ns()`` taken just before ``os.kill`` (one clock for both).
The arrival stamp is the kernel's receive stamp of the request's first
segment (``SO_TIMESTAMPNS``, ``tests/fakes/server.py``): when the alert
reached the server's socket, whatever the fake's Python does after that.

Victims holding 1 GiB of touched memory show the kernel's teardown floor:
for them the time from ``kill()`` until a pidfd turns readable is measured
directly too. A clean finish and an uncaught exception are timed from a
stamp the victim prints just before it finishes.

``--namespaced`` measures only runs in a PID namespace of their own (as in a
container: ``unshare --pid --fork --mount-proc``, root only), killed from the
host by their host pid, and writes its own section of RESULTS.md.
"""

from __future__ import annotations

import _common

_common.ensure_venv()

import contextlib  # noqa: E402
import os  # noqa: E402
import queue  # noqa: E402
import select  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable, Optional  # noqa: E402

from _common import Verdict, fmt, ms, summary, table  # noqa: E402

from sentinel.common import latency_trace  # noqa: E402
from sentinel.daemon.pidfd import thread_pidfds_supported  # noqa: E402
from tests.daemon_harness import DaemonProcess  # noqa: E402
from tests.fakes import FakeBark, FakeDingTalk, FakeService, FakeSlack  # noqa: E402
from tests.victims.harness import Victim, victim_env  # noqa: E402

BENCH_VICTIM = _common.BENCH_DIR / "bench_victim.py"
ALERT_TIMEOUT = 30.0  # one alert not arriving within this is a failure, not a slow sample
READY_TIMEOUT = 120.0
SETTLE = 0.03  # after an alert: let the daemon archive the run before the next kill

FULL = dict(watch_kills=220, swanlab_kills=20, big_kills=20, big_mib=(1024, 4096), finishes=30, raises=30,
            swanlab_finishes=10, slack_kills=20, dingtalk_kills=15, batch=25, swanlab_batch=10, big_batch=4)
# --modest: every row at a modest n, for a shared machine (the full size is for a quiet one)
MODEST = dict(watch_kills=60, swanlab_kills=30, big_kills=4, big_mib=(1024, 4096), finishes=8, raises=8,
              swanlab_finishes=4, slack_kills=5, dingtalk_kills=5, batch=15, swanlab_batch=10, big_batch=4)
TINY = dict(watch_kills=4, swanlab_kills=1, big_kills=2, big_mib=(64,), finishes=2, raises=2,
            swanlab_finishes=1, slack_kills=2, dingtalk_kills=2, batch=4, swanlab_batch=1, big_batch=2)


# ---------------------------------------------------------------- victims


class BenchVictim:
    """``benchmarks/bench_victim.py`` with a stdin to command it and a stdout pump."""

    def __init__(self, tmp: Path, spool: Path, name: str, api: str = "watch", hold_mib: int = 0) -> None:
        self.name = name
        argv = [sys.executable, str(BENCH_VICTIM), "--name", name, "--api", api]
        if hold_mib:
            argv += ["--hold-mib", str(hold_mib)]
        self.stderr = open(tmp / f"{name}.stderr", "wb")  # noqa: SIM115 (closed in close())
        self.proc = subprocess.Popen(argv, cwd=str(tmp), env=victim_env(tmp, spool), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.stderr)
        self.lines: queue.Queue[str] = queue.Queue()
        self._pump = threading.Thread(target=self._read, daemon=True)
        self._pump.start()
        self.run_id: Optional[str] = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.put(raw.decode("utf-8", "replace").rstrip("\n"))
        self.lines.put("")

    def expect(self, word: str, timeout: float = READY_TIMEOUT) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"victim {self.name}: no {word!r} in {timeout:.0f} s") from None
            if line == "" and self.proc.poll() is not None:
                err = Path(self.stderr.name).read_text(errors="replace")[-2000:]
                raise RuntimeError(f"victim {self.name} exited before {word!r}:\n{err}")
            if line.startswith(word):
                return line

    def ready(self) -> str:
        self.run_id = self.expect("READY").split()[1]
        return self.run_id

    def command(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text.encode() + b"\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        for stream in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                if stream is not None:
                    stream.close()
        self.stderr.close()


@dataclass
class Warm:
    """A started victim, whatever kind: its pid, name and how to clean it up."""

    name: str
    pid: int
    close: Callable[[], None]
    victim: Any = None
    memory_kib: int = 0


def start_tests_watch(tmp: Path, spool: Path, name: str) -> Warm:
    v = Victim.watch(tmp, "sleep-forever", "--name", name, "--period", "0.5", spool_dir=spool).start()
    return Warm(name, v.pid, v.kill, v)


def start_tests_swanlab(tmp: Path, spool: Path, name: str) -> Warm:
    v = Victim.swanlab(sys.executable, tmp, "sleep-forever", "--name", name, "--period", "0.5",
                       spool_dir=spool).start()
    return Warm(name, v.pid, v.kill, v)


def start_bench(tmp: Path, spool: Path, name: str, api: str = "watch", hold_mib: int = 0) -> Warm:
    v = BenchVictim(tmp, spool, name, api, hold_mib)
    return Warm(name, v.pid, v.close, v)


def wait_ready(warm: Warm) -> None:
    v = warm.victim
    if isinstance(v, Victim):
        v.ready(READY_TIMEOUT)
        v.expect("RUNNING", READY_TIMEOUT)
    else:
        v.ready()
    with contextlib.suppress(OSError, KeyError):
        warm.memory_kib = _common.proc_status_kib(warm.pid, "VmRSS")


# ---------------------------------------------------------------- measuring


@dataclass
class Samples:
    label: str
    channel: str
    alert_ns: list[int] = field(default_factory=list)
    pidfd_ns: list[int] = field(default_factory=list)
    memory_kib: list[int] = field(default_factory=list)
    note: str = ""
    kill_ns: list[int] = field(default_factory=list)  # the kill's own stamp (for the daemon's trace)
    run_ids: list[Optional[str]] = field(default_factory=list)
    stages: list[Optional[dict[str, int]]] = field(default_factory=list)  # the daemon's trace, per kill


def wait_new_request(fake: FakeService, before: int, name: str) -> int:
    """Arrival stamp of the first request after ``before`` (checked to be about ``name``)."""
    if not fake.wait_for(lambda reqs: len(reqs) > before, ALERT_TIMEOUT):
        raise TimeoutError(f"no alert for {name} within {ALERT_TIMEOUT:.0f} s")
    request = fake.received()[before]
    body = request.body.decode("utf-8", "replace")
    if name not in body:
        raise RuntimeError(f"the alert after killing {name} is about another run: {body[:300]}")
    return request.arrival_ns


def settle(spool: Path, run_id: Optional[str]) -> None:
    """Wait until the daemon archived the run (its last step for a dead run)."""
    if run_id:
        with contextlib.suppress(TimeoutError):
            _common.wait_until(lambda: not (spool / run_id).exists(), 10.0, 0.002, "archiving")
    time.sleep(SETTLE)


def run_id_of(warm: Warm) -> Optional[str]:
    return getattr(warm.victim, "run_id", None)


def kill_one(fake: FakeService, spool: Path, warm: Warm, samples: Samples, with_pidfd: bool) -> None:
    before = len(fake.received())
    pidfd = os.pidfd_open(warm.pid) if with_pidfd else None
    try:
        t0 = time.monotonic_ns()
        os.kill(warm.pid, signal.SIGKILL)
        if pidfd is not None:
            select.select([pidfd], [], [], ALERT_TIMEOUT)
            samples.pidfd_ns.append(time.monotonic_ns() - t0)
    finally:
        if pidfd is not None:
            os.close(pidfd)
    arrival = wait_new_request(fake, before, warm.name)
    samples.alert_ns.append(arrival - t0)
    samples.memory_kib.append(warm.memory_kib)
    samples.kill_ns.append(t0)
    samples.run_ids.append(run_id_of(warm))
    warm.close()
    settle(spool, run_id_of(warm))


QUIET = 0.7  # no other run was archived (its directory moved out of the spool) just before


def finish_one(fake: FakeService, spool: Path, warm: Warm, samples: Samples, how: str) -> None:
    before = len(fake.received())
    victim: BenchVictim = warm.victim
    if how.endswith("-quiet"):
        time.sleep(QUIET)  # no other run ended in the last 0.7 s
        how = how[: -len("-quiet")]
    victim.command(how)
    t0 = int(victim.expect("T ").split()[1])
    arrival = wait_new_request(fake, before, warm.name)
    samples.alert_ns.append(arrival - t0)
    if how != "finish-live":
        with contextlib.suppress(subprocess.TimeoutExpired):
            victim.proc.wait(30)
    warm.close()
    settle(spool, run_id_of(warm))


def in_batches(count: int, batch: int, start: Callable[[int], Warm],
               act: Callable[[Warm], None], pause: Callable[[], None] = lambda: None) -> None:
    """Start ``batch`` victims, wait until all are warm, act on each in turn; repeat."""
    done = 0
    while done < count:
        size = min(batch, count - done)
        pool: list[Warm] = []
        try:
            for i in range(size):
                pool.append(start(done + i))
            for warm in pool:
                wait_ready(warm)
            for warm in pool:
                pause()
                act(warm)
                done += 1
        finally:
            for warm in pool:
                with contextlib.suppress(Exception):
                    warm.close()


class Spacer:
    """Keeps kills at least ``gap`` seconds apart, for channels paced per second."""

    def __init__(self, gap: float) -> None:
        self.gap = gap
        self.last = 0.0

    def __call__(self) -> None:
        wait = self.last + self.gap - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self.last = time.monotonic()


# ---------------------------------------------------------------- scenarios


def trace_path(tmp: Path, name: str) -> Path:
    return tmp / f"{name}-latency-trace.jsonl"


def with_daemon(tmp: Path, name: str, channels: dict[str, dict[str, Any]]) -> DaemonProcess:
    # Default rescan interval (30 s): as deployed, not the tests' 2 s. The daemon stamps each
    # alert's stages (``sentinel.common.latency_trace``) into a file read once the kills are done.
    return DaemonProcess(tmp / name, channels, rescan_interval="30s",
                         daemon_env={latency_trace.ENV: str(trace_path(tmp, name))}).start()


def attach_trace(tmp: Path, name: str, samples: list[Samples]) -> None:
    """Each kill's stages as the daemon stamped them (its state alert's, matched by run id)."""
    trace = latency_trace.read(str(trace_path(tmp, name)))
    by_run = {alert_id.rsplit(".", 2)[0]: stages for alert_id, stages in trace.items()}
    for s in samples:
        s.stages = [by_run.get(run_id) if run_id else None for run_id in s.run_ids]


def warm_up(fake: FakeService, daemon: DaemonProcess, out: Optional[list[Samples]], channel: str) -> None:
    """The first alert after start-up pays for importing the HTTP stack: measured apart."""
    s = Samples("first alert after daemon start (cold: imports the HTTP stack)", channel)
    in_batches(1, 1, lambda i: start_tests_watch(daemon.tmp, daemon.spool, f"warm{channel}"),
               lambda w: kill_one(fake, daemon.spool, w, s, with_pidfd=False))
    if out is not None:
        out.append(s)


def bark_scenarios(tmp: Path, size: dict[str, int], out: list[Samples]) -> None:
    with FakeBark().keep_connections() as bark:
        daemon = with_daemon(tmp, "bark", {"phone": {"type": "bark", "url": bark.key_url}})
        spool, vtmp = daemon.spool, daemon.tmp
        try:
            warm_up(bark, daemon, out, "Bark")
            s = Samples("kill, sentinel.watch victim (small)", "Bark")
            in_batches(size["watch_kills"], size["batch"],
                       lambda i: start_tests_watch(vtmp, spool, f"kw{i:04d}"),
                       lambda w: kill_one(bark, spool, w, s, with_pidfd=True))
            out.append(s)
            print(f"  {s.label}: {len(s.alert_ns)} kills", flush=True)

            s = Samples("kill, SwanLab offline + SentinelCallback", "Bark")
            in_batches(size["swanlab_kills"], size["swanlab_batch"],
                       lambda i: start_tests_swanlab(vtmp, spool, f"ks{i:04d}"),
                       lambda w: kill_one(bark, spool, w, s, with_pidfd=True))
            out.append(s)
            print(f"  {s.label}: {len(s.alert_ns)} kills", flush=True)

            for mib in size["big_mib"]:
                s = Samples(f"kill, sentinel.watch victim holding {mib} MiB", "Bark")
                batch = max(1, size["big_batch"] * 1024 // max(mib, 1024))  # at most ~4 GiB held at once
                in_batches(size["big_kills"], batch,
                           lambda i, mib=mib: start_bench(vtmp, spool, f"kb{mib}-{i:04d}", hold_mib=mib),
                           lambda w, s=s: kill_one(bark, spool, w, s, with_pidfd=True))
                out.append(s)
                print(f"  {s.label}: {len(s.alert_ns)} kills", flush=True)

            for how, count, api in (("finish", size["finishes"], "watch"),
                                    ("finish-live-quiet", size["finishes"], "watch"),
                                    ("finish-live", size["finishes"], "watch"),
                                    ("raise", size["raises"], "watch"),
                                    ("finish", size["swanlab_finishes"], "swanlab"),
                                    ("raise", size["swanlab_finishes"], "swanlab")):
                what = "uncaught exception" if how == "raise" else "clean finish"
                call = {("finish", "watch"): "run.finish(), then the process exits",
                        ("finish-live-quiet", "watch"): "run.finish(), the process lives on (spool only), "
                                                        "no other run ended in the last 0.7 s",
                        ("finish-live", "watch"): "run.finish(), the process lives on (spool only), "
                                                  "another run was archived just before",
                        ("raise", "watch"): "raise in `with watch()`",
                        ("finish", "swanlab"): "swanlab.finish()",
                        ("raise", "swanlab"): "uncaught raise (SwanLab's excepthook)"}[(how, api)]
                s = Samples(f"{what}, {api}: {call}", "Bark")
                in_batches(count, size["batch"] if api == "watch" else size["swanlab_batch"],
                           lambda i, how=how, api=api: start_bench(vtmp, spool,
                                                                   f"f{how[0]}{how[-1]}{len(how)}{api[0]}{i:04d}",
                                                                   api),
                           lambda w, how=how, s=s: finish_one(bark, spool, w, s, how))
                out.append(s)
                print(f"  {s.label}: {len(s.alert_ns)} runs", flush=True)
        finally:
            if daemon.alive():
                daemon.stop()
            attach_trace(tmp, "bark", out)


def paced_scenarios(tmp: Path, size: dict[str, int], out: list[Samples]) -> None:
    if not size["slack_kills"] and not size["dingtalk_kills"]:
        return
    with FakeSlack() as slack:
        daemon = with_daemon(tmp, "slack", {"ops": {"type": "slack", "webhook_url": slack.webhook_url}})
        try:
            s = Samples("kill, sentinel.watch victim (small)", "Slack",
                        note="kills >= 1.1 s apart (Slack: 1 message/s per webhook)")
            warm_up(slack, daemon, None, "Slack")
            spacer = Spacer(1.1)
            in_batches(size["slack_kills"], size["batch"],
                       lambda i: start_tests_watch(daemon.tmp, daemon.spool, f"kl{i:04d}"),
                       lambda w: kill_one(slack, daemon.spool, w, s, with_pidfd=False), spacer)
            out.append(s)
            s.note += f"; 429 answers: {sum(1 for r in slack.received() if r.status == 429)}"
            print(f"  {s.label} -> Slack: {len(s.alert_ns)} kills", flush=True)
        finally:
            if daemon.alive():
                daemon.stop()
    with FakeDingTalk() as robot:
        daemon = with_daemon(tmp, "dingtalk", {"team": {"type": "dingtalk", "webhook_url": robot.webhook_url,
                                                         "secret": robot.secret}})
        try:
            s = Samples("kill, sentinel.watch victim (small)", "DingTalk",
                        note="kills >= 1.1 s apart, fewer than 20 a minute (the robot's limit)")
            warm_up(robot, daemon, None, "DingTalk")
            spacer = Spacer(1.1 if size["dingtalk_kills"] < 19 else 3.1)
            in_batches(size["dingtalk_kills"], size["batch"],
                       lambda i: start_tests_watch(daemon.tmp, daemon.spool, f"kd{i:04d}"),
                       lambda w: kill_one(robot, daemon.spool, w, s, with_pidfd=False), spacer)
            out.append(s)
            too_fast = sum(1 for r in robot.received() if b"130101" in r.answer)
            s.note += f"; 130101 answers: {too_fast}"
            print(f"  {s.label} -> DingTalk: {len(s.alert_ns)} kills", flush=True)
        finally:
            if daemon.alive():
                daemon.stop()


# ---------------------------------------------------------------- report


def stage_spans(s: Samples) -> dict[str, dict[str, float]]:
    """Each stage's summary (ms) for the kills of ``s`` the daemon's trace covers."""
    spans: dict[str, list[float]] = {name: [] for _, _, name in STAGE_SPANS}
    for kill, alert, stages in zip(s.kill_ns, s.alert_ns, s.stages):
        if stages is None:
            continue
        marks = {**stages, "kill": kill, "arrival": kill + alert}
        for start, end, name in STAGE_SPANS:
            if start in marks and end in marks:
                spans[name].append(ms(marks[end] - marks[start]))
    return {name: summary(values) for name, values in spans.items() if values}


def miss_explanation(s: Samples, p50_target: float, p99_target: float) -> str:
    """Why ``s`` missed its latency target, stage by stage (the daemon's own stamps)."""
    total = summary([ms(x) for x in s.alert_ns])
    spans = stage_spans(s)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    parts = [f"**{s.label}** (target p50 <= {p50_target:g} / p99 <= {p99_target:g} ms; measured "
             f"p50 {fmt(total['p50'])} / p99 {fmt(total['p99'])} ms; load average at the end {load})."]
    if not spans:
        return parts[0] + " No stage stamps were taken (the daemon's trace is missing).\n"
    seen, share = spans.get(STAGE_SPANS[0][2]), spans.get(STAGE_SPANS[-1][2])
    kernel = summary([ms(x) for x in s.pidfd_ns]) if s.pidfd_ns else None
    if seen is not None:
        earlier = (f", where the process pidfd turns readable only after {fmt(kernel['p50'])} ms: the "
                   "thread pidfd of the victim's sleeping sub-thread is the earlier, still certain signal"
                   if kernel is not None else "")
        parts.append(f"The daemon sees the death {fmt(seen['p50'])} ms after the kill (p50){earlier}.")
    inner = [(name, st) for (_, _, name), st in ((span, spans.get(span[2])) for span in STAGE_SPANS[1:-1])
             if st is not None]
    if share is not None and inner:
        worst50 = max(inner, key=lambda item: item[1]["p50"])
        worst99 = max(inner, key=lambda item: item[1]["p99"])
        parts.append(f"The daemon's share is p50 {fmt(share['p50'])} / p99 {fmt(share['p99'])} ms; "
                     f"its largest stage at the median is `{worst50[0]}` ({fmt(worst50[1]['p50'])} ms) "
                     f"and in the tail `{worst99[0]}` ({fmt(worst99[1]['p99'])} ms). "
                     "`picked → request` is rendering, the connection and the request's way over "
                     "loopback (the arrival is the kernel's receive stamp, not the fake's Python). "
                     "A tail spread over every stage, with a load average above the 2 cores, is CPU "
                     "contention: rerun on a quiet machine before reading it as the daemon's.")
    return " ".join(parts) + "\n"


def latency_verdicts(s: Samples, st: dict[str, float], p50: float, p99: float) -> list[Verdict]:
    note = f"n = {st['n']}; max {fmt(st['max'])} ms"
    return [Verdict("kill_to_alert", f"{s.label} p50 ({s.channel})", f"{fmt(st['p50'])} ms", f"<= {p50:g} ms",
                    st["p50"] <= p50, note),
            Verdict("kill_to_alert", f"{s.label} p99 ({s.channel})", f"{fmt(st['p99'])} ms", f"<= {p99:g} ms",
                    st["p99"] <= p99, note)]


SWANLAB_TARGET = (2.5, 8.0)  # kill→alert p50, p99 ms for SwanLab victims (issue 21)
# The daemon's stages (``sentinel.common.latency_trace``), from the kill to the request at the fake.
STAGE_SPANS = (("kill", "woke", "kill → the daemon's epoll wakes (the kernel, then the loop's thread)"),
               ("woke", "decided", "woke → decided (the run's files read once, the ending known)"),
               ("decided", "built", "decided → alert built"),
               ("built", "handed", "built → handed to delivery (in the outbox's memory; workers woken)"),
               ("handed", "picked", "handed → a worker picks it up"),
               ("picked", "arrival", "picked → request at the fake (render, HTTP, loopback)"),
               ("woke", "arrival", "the daemon's share: woke → request at the fake"))


def stage_breakdown(samples: list[Samples]) -> str:
    """Per kill row: each stage's p50 / p99, from the daemon's own stamps."""
    rows = []
    for s in samples:
        if s.channel != "Bark" or not s.label.startswith("kill") or not any(s.stages):
            continue
        for name, st in stage_spans(s).items():
            rows.append((s.label, name, st["n"], fmt(st["p50"], 3), fmt(st["p99"], 3)))
    if not rows:
        return ""
    return table(["victim", "stage", "n", "p50 ms", "p99 ms"], rows)


def report(samples: list[Samples]) -> tuple[str, list[Verdict]]:
    rows = []
    for s in samples:
        st = summary([ms(x) for x in s.alert_ns])
        rows.append((s.label, s.channel, st["n"], fmt(st["p50"]), fmt(st["p90"]), fmt(st["p99"]),
                     fmt(st["max"]), s.note))
    latency = table(["what (time from the call / kill to the HTTP request at the fake)", "channel", "n",
                     "p50 ms", "p90 ms", "p99 ms", "max ms", "note"], rows)

    floor_rows = []
    for s in samples:
        if not s.pidfd_ns:
            continue
        pid = summary([ms(x) for x in s.pidfd_ns])
        alert = summary([ms(x) for x in s.alert_ns])
        rss = summary([k / 1024 for k in s.memory_kib])
        after = summary([ms(a - p) for a, p in zip(s.alert_ns, s.pidfd_ns)])
        floor_rows.append((s.label, fmt(rss["p50"], 0), pid["n"], fmt(pid["p50"]), fmt(pid["p99"]),
                           fmt(pid["max"]), fmt(alert["p50"]), fmt(alert["p99"]), fmt(after["p50"]),
                           fmt(after["p99"])))
    floor = table(["victim", "RSS MiB", "n", "kill→pidfd p50", "p99", "max", "kill→alert p50", "p99",
                   "pidfd→alert p50", "p99"], floor_rows)

    miss_note: list[str] = []
    small = next(s for s in samples if s.channel == "Bark" and "(small)" in s.label)
    st = summary([ms(x) for x in small.alert_ns])
    kernel = summary([ms(x) for x in small.pidfd_ns])
    daemon = summary([ms(a - p) for a, p in zip(small.alert_ns, small.pidfd_ns)])
    split = (f"kernel kill→pidfd p50 {fmt(kernel['p50'])} / p99 {fmt(kernel['p99'])} ms, "
             f"daemon pidfd→alert p50 {fmt(daemon['p50'])} / p99 {fmt(daemon['p99'])} ms")
    verdicts = [
        Verdict("kill_to_alert", "kill→alert p50, small watch victims (Bark)", f"{fmt(st['p50'])} ms",
                "<= 5 ms", st["p50"] <= 5.0, f"n = {st['n']}; {split}"),
        Verdict("kill_to_alert", "kill→alert p99, small watch victims (Bark)", f"{fmt(st['p99'])} ms",
                "<= 20 ms", st["p99"] <= 20.0, f"max {fmt(st['max'])} ms; {split}"),
    ]
    if st["p50"] > 5.0 or st["p99"] > 20.0:
        miss_note.append(miss_explanation(small, 5.0, 20.0))
    targeted = {small.label}
    for s in samples:
        if s.channel != "Bark" or not s.alert_ns:
            continue
        sst = summary([ms(x) for x in s.alert_ns])
        if s.label.startswith("kill, SwanLab"):
            verdicts += latency_verdicts(s, sst, *SWANLAB_TARGET)
            if sst["p50"] > SWANLAB_TARGET[0] or sst["p99"] > SWANLAB_TARGET[1]:
                miss_note.append(miss_explanation(s, *SWANLAB_TARGET))
        elif " holding " in s.label:
            verdicts += latency_verdicts(s, sst, 5.0, 15.0)
            early = sum(1 for a, p in zip(s.alert_ns, s.pidfd_ns) if a < p)
            share = 100.0 * early / len(s.alert_ns)
            verdicts.append(Verdict("kill_to_alert",
                                    f"{s.label}: alert before the process pidfd turns readable",
                                    f"{share:.0f} % ({early}/{len(s.alert_ns)})", ">= 95 %", share >= 95.0,
                                    "both timed on the same kill"))
        elif s.label.startswith("clean finish, swanlab"):
            verdicts += latency_verdicts(s, sst, 20.0, 50.0)
        else:
            continue
        targeted.add(s.label)
    for s in samples:
        if s.label in targeted and s.channel == "Bark":
            continue
        sst = summary([ms(x) for x in s.alert_ns])
        verdicts.append(Verdict("kill_to_alert", f"{s.label} ({s.channel})",
                                f"p50 {fmt(sst['p50'])} / p99 {fmt(sst['p99'])} ms", "–", None,
                                f"n = {sst['n']}"))
    threads = "used" if thread_pidfds_supported() else "not available (or switched off): process pidfds only"
    body = "\n".join([
        f"Kernel {os.uname().release}; thread pidfds (PIDFD_THREAD + PIDFD_GET_INFO): {threads}.", "",
        *(["### Why a latency target is missed", "", *miss_note, ""] if miss_note else []),
        "### Latency", "", latency, "",
        "### The kernel's teardown floor", "",
        "`kill→pidfd` is measured by the benchmark itself (a pidfd of the victim, opened before the kill, "
        "turns readable): the time the kernel needs to tear the process down before *anyone* can know it "
        "died. It grows with the address space; the daemon's own share is `pidfd→alert`.", "",
        floor, "",
        "### The daemon's share, stage by stage", "",
        "Each alert's way through the daemon, from stamps it takes itself (`sentinel.common.latency_trace`, "
        "switched on by `SENTINEL_LATENCY_TRACE` in the benchmark's daemon; written after the answer, "
        "so not on the path). All stamps are CLOCK_MONOTONIC, the same clock as the benchmark's kill and "
        "the fake's arrival (the kernel's receive stamp of the request's first segment). `woke` is "
        "the end of the epoll wait in which the death was seen: a thread "
        "pidfd of the victim's long-lived sub-thread (recorded in `run.json`), readable as soon as that "
        "thread is gone, or the process pidfd, whichever came first.", "",
        stage_breakdown(samples), "",
        "A clean finish reaches the daemon two ways, whichever comes first: the final record "
        "(`final.json`, through inotify) and the process's exit (pidfd). When the process lives on after "
        "`finish()` only the spool path is left: the daemon's own inotify reader "
        "(`sentinel/daemon/spool_watcher.py`, no hold on unpaired moves) wakes the loop, which reads the "
        "final record. The two `lives on` rows show that spool path in a quiet spool and right after "
        "another run was archived (its directory moved out of the spool).",
        "",
        "How: each daemon's first alert is sent by a warm-up kill (the first delivery imports the HTTP "
        "stack; the Bark figure is shown above as `cold`, not counted in the other rows). Victims are "
        "started ahead of time and kept warm (each prints READY), then killed one at a "
        "time, each after the previous alert arrived, so spawn cost is not in the numbers. The daemon "
        "runs with its default rescan interval (30 s) and the retry schedule of the tests' launcher; "
        "each state alert's first request goes out before its record is written to the durable outbox "
        "(renamed into place right after; its fsync follows off the loop; the run is not archived "
        "before). The Bark fake answers HTTP/1.1 and keeps each connection open for the next request, "
        "as a real server does (persistent connections are HTTP/1.1's default, RFC 9112 section 9.3); "
        "the Slack and DingTalk fakes answer HTTP/1.0, a new connection per alert.", "",
        _common.ANCHORS,
    ])
    return body, verdicts


# ---------------------------------------------------------------- runs in a PID namespace

UNSHARE = ["unshare", "--pid", "--fork", "--mount-proc"]
NS_FULL = dict(watch_kills=60, swanlab_kills=20, batch=10, swanlab_batch=5)
NS_TINY = dict(watch_kills=2, swanlab_kills=1, batch=2, swanlab_batch=1)


def start_namespaced(tmp: Path, spool: Path, name: str, api: str) -> Warm:
    if api == "swanlab":
        v = Victim.swanlab(sys.executable, tmp, "sleep-forever", "--name", name, "--period", "0.5",
                           spool_dir=spool)
    else:
        v = Victim.watch(tmp, "sleep-forever", "--name", name, "--period", "0.5", spool_dir=spool)
    v.argv = [*UNSHARE, *v.argv]
    v.start()
    return Warm(name, v.pid, v.kill, v)


def unshare_child(pid: int) -> int:
    def child() -> Optional[int]:
        with contextlib.suppress(OSError, ValueError, IndexError):
            return int(Path(f"/proc/{pid}/task/{pid}/children").read_text().split()[0])
        return None
    return _common.wait_until(child, 10.0, 0.002, "unshare's child")


def kill_namespaced(fake: FakeService, daemon: DaemonProcess, warm: Warm, samples: Samples) -> None:
    """Kill the namespaced process by its host pid, once the daemon has found it."""
    warm.pid = unshare_child(warm.pid)
    _common.wait_until(lambda: f"is pid {warm.pid} here" in daemon.log(), 30.0, 0.005, "the daemon's lookup")
    kill_one(fake, daemon.spool, warm, samples, with_pidfd=True)


def namespaced_scenarios(tmp: Path, size: dict[str, int], out: list[Samples]) -> int:
    """Returns how many of the runs the daemon watched through thread pidfds."""
    with FakeBark().keep_connections() as bark:
        daemon = with_daemon(tmp, "bark-ns", {"phone": {"type": "bark", "url": bark.key_url}})
        spool, vtmp = daemon.spool, daemon.tmp
        try:
            warm_up(bark, daemon, None, "Bark")
            for api, label, count, batch in (
                    ("watch", "kill, sentinel.watch victim (small)", "watch_kills", "batch"),
                    ("swanlab", "kill, SwanLab offline + SentinelCallback", "swanlab_kills",
                     "swanlab_batch")):
                label += " in a PID namespace"
                s = Samples(label, "Bark")
                in_batches(size[count], size[batch],
                           lambda i, api=api: start_namespaced(vtmp, spool, f"n{api[0]}{i:04d}", api),
                           lambda w, s=s: kill_namespaced(bark, daemon, w, s))
                out.append(s)
                print(f"  {s.label}: {len(s.alert_ns)} kills", flush=True)
            return daemon.log().count("the thread-pidfd path, for a containerised run")
        finally:
            daemon.stop()


NS_TARGETS = {"watch": (5.0, 20.0), "swanlab": (3.0, 10.0)}  # the host runs' targets (section 1)


def namespaced_report(samples: list[Samples], thread_path: int) -> tuple[str, list[Verdict]]:
    rows, verdicts = [], []
    for s in samples:
        st = summary([ms(x) for x in s.alert_ns])
        pid = summary([ms(x) for x in s.pidfd_ns])
        before = sum(1 for a, p in zip(s.alert_ns, s.pidfd_ns) if a <= p)
        rows.append((s.label, st["n"], fmt(st["p50"]), fmt(st["p90"]), fmt(st["p99"]), fmt(st["max"]),
                     fmt(pid["p50"]), f"{before}/{st['n']}"))
        p50, p99 = NS_TARGETS["swanlab" if "SwanLab" in s.label else "watch"]
        verdicts += latency_verdicts(s, st, p50, p99)
    runs = sum(len(s.alert_ns) for s in samples)  # the warm-up run is a host run
    missed = [v for v in verdicts if v.met is False]
    why = [] if not missed else [
        "### Why a latency target is missed here", "",
        "The kernel alone took the `kill→pidfd` times in the table above (from `kill()` until a pidfd "
        "of the victim turned readable, on the same kills), already at or above the targets; the load "
        f"average was {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores when the kills ended (the "
        "machine line gives it at the start). Once a namespaced run is found, the daemon watches it "
        "with the very code and pidfds of a host run (section 1), so the difference is put down to "
        "the machine's load (an inference: host runs were not measured beside them under the same "
        "load). Fix: rerun on an idle machine to compare with section 1.", ""]
    body = "\n".join([
        "### Latency", "",
        table(["what (kill of the host pid → the HTTP request at the fake)", "n", "p50 ms", "p90 ms",
               "p99 ms", "max ms", "kill→pidfd p50 ms", "alert before pidfd"], rows), "",
        f"The daemon (on the host) watched {thread_path} of {runs} namespaced runs through thread pidfds "
        "(its log says \"the thread-pidfd path, for a containerised run\"), after finding each run's "
        "process by (PID namespace, innermost NSpid, start ticks) on its lookup thread.", "",
        "How: each victim runs under `unshare --pid --fork --mount-proc` and records pid 1 and its "
        "namespace; it is killed (SIGKILL to its host pid) only once the daemon has logged the lookup, "
        "so the numbers are the watch itself, not the lookup. Targets are those of the host runs in "
        "section 1.", "", *why,
    ])
    return body, verdicts


def main() -> int:
    parser = _common.parser(__doc__.splitlines()[0])
    parser.add_argument("--namespaced", action="store_true",
                        help="only runs in a PID namespace of their own (needs root and unshare)")
    parser.add_argument("--modest", action="store_true",
                        help="every row at a modest n (60 small and 30 SwanLab kills, 4 per large victim, "
                             "a few of the rest): for a machine others use too")
    args = parser.parse_args()
    if args.namespaced:
        return main_namespaced(args)
    started = time.monotonic()
    info = _common.machine()
    size = TINY if args.tiny else MODEST if args.modest else FULL
    tmp = Path(tempfile.mkdtemp(prefix="sentinel-bench-k2a-"))
    samples: list[Samples] = []
    try:
        print("kill_to_alert: Bark", flush=True)
        bark_scenarios(tmp, size, samples)
        print("kill_to_alert: Slack and DingTalk", flush=True)
        paced_scenarios(tmp, size, samples)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    body, verdicts = report(samples)
    _common.publish(args, "kill_to_alert", "1. Kill-to-alert latency", body, verdicts, started, info)
    return 0


def main_namespaced(args: Any) -> int:
    started = time.monotonic()
    info = _common.machine()
    tmp = Path(tempfile.mkdtemp(prefix="sentinel-bench-k2a-ns-"))
    samples: list[Samples] = []
    try:
        print("kill_to_alert: runs in a PID namespace (Bark)", flush=True)
        thread_path = namespaced_scenarios(tmp, NS_TINY if args.tiny else NS_FULL, samples)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    body, verdicts = namespaced_report(samples, thread_path)
    _common.publish(args, "kill_to_alert_pidns", "1b. Kill-to-alert latency, runs in a PID namespace",
                    body, verdicts, started, info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
