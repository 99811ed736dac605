"""Fairness: one user's kill-to-alert latency, alone and beside a hostile user.

    sudo python3 benchmarks/fairness.py [--tiny]

Root only (it makes two throw-away local users with ``useradd`` and removes
them). A real root daemon watches a sticky 1777 spool under the open file
limit systemd gives a service (1,024, via ``prlimit``) and delivers to a fake
Bark on 127.0.0.1; its metrics server listens on 127.0.0.1.

Alice runs real ``sentinel.watch`` processes (``tests/victims/watch_victim.py``)
one at a time; each is SIGKILLed once it runs, and the latency is the fake's
arrival stamp of her kill alert minus a ``time.monotonic_ns()`` taken just
before ``os.kill``. Measured twice: quiet, then beside Mallory, who keeps
going for the whole phase:

- a flood of run records naming pids that never existed (100 a second);
- 300 records naming one process of hers and four of its threads
  (1,500 pidfds if they were all watched);
- 300 connections to the metrics port that never finish their request
  (reopened as the daemon cuts them).

Counted: Alice's alerts lost (none may be), and her latency with and without
Mallory (p50, p90, max); the target is Mallory adding at most 1 s at p90.
"""

from __future__ import annotations

import _common

_common.ensure_venv()

import os  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from contextlib import ExitStack  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Optional  # noqa: E402

from _common import Verdict, fmt, table  # noqa: E402

from sentinel.model.alerts import AlertKind  # noqa: E402
from tests.daemon_harness import DaemonProcess, bark_title  # noqa: E402
from tests.fakes import FakeBark  # noqa: E402
from tests.fleet_harness import free_port  # noqa: E402
from tests.users import become, home_for, make_shared_spool, shared_dir, throwaway_user  # noqa: E402
from tests.victims.harness import VICTIMS, WATCH_VICTIM, Victim  # noqa: E402

USER_PYTHON = "/usr/bin/python3"
RECORD_FLOOD = VICTIMS / "record_flood.py"
ROUNDS = {"tiny": 3, "full": 20}
ALERT_TIMEOUT = 30.0
SLOW_CLIENTS = 300
FLOOD_PER_SECOND = 100
ALICE_ALERTS_PER_MINUTE = 120  # budgets.state_alerts_per_user_per_minute here (default 30)


class SlowClients:
    """``count`` connections to ``port`` that never finish a request, reopened when cut."""

    def __init__(self, port: int, count: int) -> None:
        self.port, self.count = port, count
        self.stop = threading.Event()
        self.opened = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        clients: list[socket.socket] = []
        try:
            while not self.stop.is_set():
                alive = []
                for client in clients:
                    try:
                        if client.recv(1, socket.MSG_DONTWAIT | socket.MSG_PEEK) == b"":
                            client.close()  # cut (or refused) by the daemon
                            continue
                    except BlockingIOError:
                        pass
                    except OSError:
                        client.close()
                        continue
                    alive.append(client)
                clients = alive
                while len(clients) < self.count and not self.stop.is_set():
                    try:
                        client = socket.create_connection(("127.0.0.1", self.port), timeout=2)
                        client.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
                    except OSError:
                        break
                    clients.append(client)
                    self.opened += 1
                self.stop.wait(1.0)
        finally:
            for client in clients:
                client.close()

    def __enter__(self) -> SlowClients:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)


def one_round(shared: Path, spool: Path, alice: int, bark: FakeBark, index: int,
              phase: str) -> Optional[float]:
    """Alice's run killed once it runs; ms until its alert arrived (None: it never did)."""
    name = f"alice-{phase}-{index}"
    victim = Victim(USER_PYTHON, WATCH_VICTIM, ["--heartbeat", "0.2", "sleep-forever", "--name", name],
                    home_for(shared, alice) if index == 0 and phase == "quiet" else shared / f"home-{alice}",
                    spool_dir=spool, preexec_fn=become(alice)).start()
    title = bark_title(AlertKind.KILLED, name, signal="SIGKILL")
    with victim:
        victim.ready()
        victim.expect("RUNNING")
        assert victim.proc is not None
        t0 = time.monotonic_ns()
        victim.kill()
        deadline = time.monotonic() + ALERT_TIMEOUT
        while time.monotonic() < deadline:
            arrived = [r for r in bark.received() if r.json().get("title") == title]
            if arrived:
                return (arrived[0].arrival_ns - t0) / 1e6
            time.sleep(0.005)
    return None


def phase_latencies(shared: Path, spool: Path, alice: int, bark: FakeBark, rounds: int,
                    phase: str) -> tuple[list[float], int]:
    latencies, lost = [], 0
    for index in range(rounds):
        latency = one_round(shared, spool, alice, bark, index, phase)
        if latency is None:
            lost += 1
        else:
            latencies.append(latency)
        print(f"{phase} round {index + 1}/{rounds}: {fmt(latency, 0) if latency is not None else 'LOST'} ms",
              flush=True)
    return latencies, lost


def stats_row(phase: str, latencies: list[float], lost: int) -> tuple[object, ...]:
    s = _common.summary(latencies) if latencies else {"n": 0, "p50": float("nan"), "p90": float("nan"),
                                                     "max": float("nan")}
    return (phase, s["n"], lost, fmt(s["p50"], 0), fmt(s["p90"], 0), fmt(s["max"], 0))


def main() -> int:
    args = _common.parser(__doc__.splitlines()[0]).parse_args()
    if os.geteuid() != 0:
        print("fairness: needs root (it makes throw-away users)", file=sys.stderr)
        return 1
    started = time.monotonic()
    rounds = ROUNDS["tiny" if args.tiny else "full"]
    load_before = os.getloadavg()
    port = free_port()
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"sentinel-bench-fair-{os.getpid()}"
    with ExitStack() as stack:
        shared = stack.enter_context(shared_dir())
        alice = stack.enter_context(throwaway_user())
        mallory = stack.enter_context(throwaway_user())
        spool = make_shared_spool(shared)
        bark = stack.enter_context(FakeBark())
        daemon = DaemonProcess(tmp, {"phone": {"type": "bark", "url": bark.key_url}}, spool=spool,
                               metrics={"listen": f"127.0.0.1:{port}"}, rescan_interval="30s",
                               # Alice is killed about once a second: above the default 30 a minute
                               budgets={"state_alerts_per_user_per_minute": ALICE_ALERTS_PER_MINUTE})
        daemon.wrapper = ["prlimit", "--nofile=1024:1024", "--"]
        stack.callback(shutil.rmtree, tmp, True)
        with daemon:
            quiet, quiet_lost = phase_latencies(shared, spool, alice, bark, rounds, "quiet")
            home = shared / f"home-{mallory}"
            home_for(shared, mallory)
            flood_count = FLOOD_PER_SECOND * 3600
            with Victim(USER_PYTHON, RECORD_FLOOD, [str(spool), "self", "300"], home, spool_dir=spool,
                        preexec_fn=become(mallory)).start() as hog:
                hog.ready()
                with Victim(USER_PYTHON, RECORD_FLOOD, [str(spool), "fake", str(flood_count),
                                                         str(FLOOD_PER_SECOND)],
                            home, spool_dir=spool, preexec_fn=become(mallory)).start(), \
                        SlowClients(port, SLOW_CLIENTS) as slow:
                    hostile, hostile_lost = phase_latencies(shared, spool, alice, bark, rounds, "hostile")
                    records = sum(1 for _ in spool.iterdir())
                    fds = len(os.listdir(f"/proc/{daemon.proc.pid}/fd")) if daemon.proc else -1
                    slow_opened = slow.opened
            daemon.stop()
        log = daemon.log()
    load_after = os.getloadavg()
    emfile = "Too many open files" in log
    body = "\n".join([
        "Alice's runs (real `sentinel.watch` processes of a throw-away user) SIGKILLed one at a time; a root",
        "daemon under 1,024 open files on a sticky 1777 spool. *hostile*: beside Mallory's record flood",
        f"({FLOOD_PER_SECOND}/s naming pids that never existed), 300 records naming one process and",
        f"4 threads each, and {SLOW_CLIENTS} never-finished connections to the metrics port (reopened",
        "when cut). Alice's runs are killed about once a second, above the default state alert budget of",
        f"30 a minute: `budgets.state_alerts_per_user_per_minute` is {ALICE_ALERTS_PER_MINUTE} here (for",
        "Mallory too: her excess beyond it is journaled, not sent).",
        "",
        table(["phase", "alerts", "lost", "p50 ms", "p90 ms", "max ms"],
              [stats_row("quiet", quiet, quiet_lost), stats_row("hostile", hostile, hostile_lost)]),
        "",
        f"During the hostile phase: {records} run directories in the spool, {slow_opened} slow",
        f"connections opened, the daemon holding {fds} descriptors of 1,024; \"Too many open files\" in",
        f"its log: {emfile}.",
        f"Load average (1, 5, 15 min) before: {', '.join(f'{x:.2f}' for x in load_before)}; "
        f"after: {', '.join(f'{x:.2f}' for x in load_after)} (2 cores shared with other work).",
        "",
    ])
    p90_quiet = _common.percentile(quiet, 90) if quiet else float("inf")
    p90_hostile = _common.percentile(hostile, 90) if hostile else float("inf")
    added = p90_hostile - p90_quiet
    verdicts = [
        Verdict("fairness", "another user's alerts lost beside a hostile user",
                str(quiet_lost + hostile_lost), "0", quiet_lost + hostile_lost == 0),
        Verdict("fairness", "latency a hostile user adds to another's kill alert (p90)",
                f"{added:.0f} ms", "≤ 1000 ms", added <= 1000.0),
        Verdict("fairness", "daemon out of descriptors", str(emfile), "False", not emfile),
    ]
    _common.publish(args, "fairness", "10. Fairness: another user's alerts beside a hostile user", body,
                    verdicts, started)
    return 0 if all(v.met for v in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
