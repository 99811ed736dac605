"""Fairness on a shared host: nothing one user does denies another user's alert
or queues it behind the attacker's flood.

Real throw-away users (``useradd``), their real processes, a real root
daemon on a sticky 1777 spool (under systemd's default 1,024 open files
where the attack is about descriptors) and a fake Bark on 127.0.0.1.
Mallory floods; Alice's run is SIGKILLed; each test asserts Alice's alert
arrives, and where the claim is about order, that it comes before
Mallory's flood is drained (orders and counts, not durations).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from sentinel.daemon.budgets import RefusedRuns, UserBudgets
from sentinel.daemon.config import Budgets, Config, ConfigError, parse_config
from sentinel.daemon.loop import ADMIT_PER_PASS, RESCAN_SLICE, Daemon
from sentinel.delivery.outbox import Outbox
from sentinel.formats import safe_json, spool
from sentinel.host.procid import boot_id
from sentinel.model.alerts import Alert, AlertKind
from tests.daemon_harness import DaemonProcess, bark_title, wait_for_push
from tests.fakes import FakeBark
from tests.fleet_harness import free_port
from tests.processes import Launcher
from tests.user_victims import user_run
from tests.users import (
    become,
    home_for,
    make_shared_spool,
    shared_for_user_python,  # noqa: F401  (the fixture "shared")
)
from tests.victims.harness import VICTIMS, Victim
from tests.waiting import wait_for

K = AlertKind
KILL = "SIGKILL"
USER_PYTHON = "/usr/bin/python3"
RECORD_FLOOD = VICTIMS / "record_flood.py"
# What systemd gives a service unless told otherwise: the limit the attacks were run under.
SERVICE_NOFILE = ["prlimit", "--nofile=1024:1024", "--"]


def record_flood(shared: Path, spool: Path, uid: int, mode: str, count: int) -> Victim:
    """``uid`` writes ``count`` run records by hand (see ``tests/victims/record_flood.py``)."""
    return Victim(USER_PYTHON, RECORD_FLOOD, [str(spool), mode, str(count)], home_for(shared, uid),
                  spool_dir=spool, preexec_fn=become(uid)).start()


def phone_channels(phone: FakeBark) -> dict[str, dict[str, str]]:
    return {"phone": {"type": "bark", "url": phone.key_url}}


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


# ---------------------------------------------------------------- state alerts


def test_fake_deaths_neither_claim_a_kill_nor_queue_before_another_users_alert(
        tmp_path: Path, shared: Path, mallory: int, alice: int) -> None:
    """Mallory writes 200 records naming pids that never existed. None is
    reported as a kill; 50 (her state alert budget) are sent, the rest only
    journaled, the refusal logged once. Alice's kill alert, decided after all
    200 while the channel hangs, is sent right after the alerts of Mallory's
    already tried: before her backlog is drained (users are served in turn)."""
    spool = make_shared_spool(shared)
    budget = 50
    with FakeBark() as phone:
        with DaemonProcess(tmp_path / "d", phone_channels(phone), spool=spool,
                           budgets={"state_alerts_per_user_per_minute": budget}) as daemon:
            with user_run(shared, spool, alice, "sleep-forever", "--name", "victim") as victim:
                victim.ready()
                victim.expect("RUNNING")
                phone.hold_after(0)  # every request hangs until released: Mallory's alerts queue up
                with record_flood(shared, spool, mallory, "fake", 200) as flood:
                    flood.ready()
                    wait_for(lambda: daemon.log().count("running -> killed") >= 200, 60,
                             what="all 200 fake records decided")
                    victim.kill()
                    wait_for(lambda: daemon.log().count("running -> killed") >= 201, 30,
                             what="Alice's kill decided")
                    tried = {r.json()["title"] for r in phone.received()}  # Mallory's, in flight or failed
                    phone.release()
                    wait_for_push(phone, K.KILLED, "victim", signal=KILL)
                    wait_for(lambda: sum("fake-" in p["title"] for p in phone.pushes) >= budget, 60,
                             what="Mallory's alerts within budget")
            daemon.stop()
        killed = bark_title(K.KILLED, "victim", signal=KILL)
        assert killed not in tried
        order = [p["title"] for p in phone.pushes if p["title"] == killed or "fake-" in p["title"]]
        assert sum("fake-" in t for t in order) == budget  # the other 150 journaled, not sent
        assert order.index(killed) <= len(tried), (len(tried), order.index(killed))
        assert len(tried) < budget // 2  # so the order above is about the queue, not the hang
        fake_titles = [t for t in order if "fake-" in t]
        assert all("never seen running" in t and "Killed" not in t for t in fake_titles), fake_titles
        log = daemon.log()
        assert log.count(f"uid {mallory}: ") == 1, log  # the refusal logged once, not 150 times


def test_a_flood_of_new_records_does_not_hold_back_another_users_admission(
        tmp_path: Path, shared: Path, mallory: int, alice: int) -> None:
    """Mallory writes 2,000 records at once; Alice writes one after them. Alice's
    is admitted (and its ending decided) in the first pass, before Mallory's
    flood: new runs are admitted a few per loop pass, each user in turn, not in
    arrival order. The daemon is stopped (SIGSTOP: busy) while both write, so
    that every record waits for it: else how many of Mallory's it decided while
    her flood was still being written (a race of two processes on a loaded
    machine, once over 1,000) would decide Alice's place, not the admission."""
    spool = make_shared_spool(shared)
    with FakeBark() as phone:
        with DaemonProcess(tmp_path / "d", phone_channels(phone), spool=spool) as daemon:
            assert daemon.proc is not None
            os.killpg(daemon.proc.pid, signal.SIGSTOP)  # its own session: the whole daemon waits
            try:
                with record_flood(shared, spool, mallory, "fake", 2000) as flood:
                    flood.ready()
                    with record_flood(shared, spool, alice, "fake", 1) as hers:
                        hers.ready()
                        os.killpg(daemon.proc.pid, signal.SIGCONT)
                        wait_for(lambda: daemon.log().count("running -> killed") >= 2001, 120,
                                 what="all 2,001 records decided")
            finally:
                os.killpg(daemon.proc.pid, signal.SIGCONT)
            daemon.stop()
        owners = {entry.name: entry.stat().st_uid for entry in (daemon.state / "archive").iterdir()}
        [alices] = [run_id for run_id, uid in owners.items() if uid == alice]
        decided = [line for line in daemon.log().splitlines() if "running -> killed" in line]
        at = next(n for n, line in enumerate(decided) if alices in line)
        assert at < ADMIT_PER_PASS, at  # in arrival order it would be the 2,001st


def test_a_restart_reconciles_one_users_backlog_without_holding_back_another_users_alert(
        tmp_path: Path, shared: Path, mallory: int, alice: int) -> None:
    """Mallory leaves 1,500 records in the spool while the daemon is down; it
    starts again and Alice's run is SIGKILLed as soon as it is READY. Alice's
    alert is decided while Mallory's backlog is still being reconciled: a
    restart admits the runs it finds a slice per loop pass, each user in turn,
    and the loop handles exits meanwhile (it used to read every run before
    READY). Each of Mallory's runs, dead while the daemon was down, still gets
    its one alert; Alice's none twice."""
    spool = make_shared_spool(shared)
    count = 1500
    with FakeBark() as phone:
        daemon = DaemonProcess(tmp_path / "d", phone_channels(phone), spool=spool)
        with daemon, user_run(shared, spool, alice, "sleep-forever", "--name", "victim") as victim:
            victim.ready()
            victim.expect("RUNNING")
            daemon.stop()
            with record_flood(shared, spool, mallory, "fake", count) as flood:
                flood.ready(120)  # all written while no daemon watched
                mallorys = [entry.name for entry in os.scandir(spool)
                            if entry.is_dir() and entry.stat().st_uid == mallory]
                assert len(mallorys) == count
                daemon.start()
                victim.kill()
                seen = {bark_title(K.KILLED, "victim", signal=KILL), bark_title(K.KILLED, "victim")}
                wait_for(lambda: any(p["title"] in seen for p in phone.pushes), 60, what="Alice's alert")
                restart = daemon.logs[-1].read_text(errors="replace").splitlines()
                decided = [line for line in restart if "running -> killed" in line]
                at = next(n for n, line in enumerate(decided) if victim.run_id in line)
                # Read all before READY, Mallory's 1,500 would all come first.
                assert at < count // 2, at
                wait_for(lambda: "every run in the spool reconciled" in daemon.logs[-1].read_text(), 120,
                         what="the restart's backlog reconciled")
            daemon.stop()
        restart = daemon.logs[-1].read_text(errors="replace").splitlines()
        done = next(n for n, line in enumerate(restart) if "every run in the spool reconciled" in line)
        alices = next(n for n, line in enumerate(restart) if victim.run_id in line and "-> killed" in line)
        assert alices < done
        journals = Outbox(daemon.state / "outbox")  # read once the daemon stopped
        assert all([a.kind for a in journals.journal(run_id)] == [K.KILLED] for run_id in mallorys)
        assert victim.run_id is not None
        assert [a.kind for a in journals.journal(victim.run_id)] == [K.KILLED]
        assert sum(p["title"] in seen for p in phone.pushes) == 1


def _fake_record(spool_dir: Path, uid: int, pid: int, index: int) -> str:
    """A record of ``uid`` naming a pid no process has, written here and handed to ``uid``."""
    run_id = spool.new_run_id(pid, 1_700_000_000.0 + index)
    paths = spool.RunPaths(spool_dir, run_id)
    safe_json.make_private_dir(paths.dir)
    record = spool.RunRecord(
        run_id=run_id, pid=pid, start_ticks=1, boot_id=boot_id(), hostname=socket.gethostname(),
        uid=uid, user=f"u{uid}", cmdline=["python"], cwd="/", started=1_700_000_000.0,
        heartbeat_interval=3600.0, name=f"fake-{index}")
    safe_json.write_json(paths.run, record.to_dict())
    os.chown(paths.run, uid, uid)
    os.chown(paths.dir, uid, uid)
    return run_id


def test_runs_only_a_rescan_finds_are_admitted_each_user_in_turn(
        tmp_path: Path, mallory: int, alice: int) -> None:
    """Runs that inotify never reported (its queue overflowed under load, or no
    watch was left: how the flood test above once saw Alice's run come 1,000th)
    are found by the rescan, which lists them in directory order. They join the
    admission queue, each user in turn: Alice's one run, listed after Mallory's
    1,000 (written first: tmpfs lists the newest first), is admitted in the
    pass that lists it, not after every run of Mallory's listed before it."""
    with tempfile.TemporaryDirectory(prefix="sn-shared-", dir="/dev/shm") as parent:
        spool_dir = make_shared_spool(Path(parent))
        pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
        alices = _fake_record(spool_dir, alice, pid_max + 2000, 2000)
        mallorys = [_fake_record(spool_dir, mallory, pid_max + 1 + n, n) for n in range(1000)]
        listed = [entry.name for entry in os.scandir(spool_dir)]
        position = listed.index(alices)
        config = Config(spool=spool_dir, state_dir=tmp_path / "state", default_channels=[])
        safe_json.make_private_dir(tmp_path / "state")
        daemon = Daemon(config, Outbox(tmp_path / "state" / "outbox"), kmsg_path=str(tmp_path / "no-kmsg"))
        try:
            daemon.start_rescan(1_700_000_100.0)  # no inotify watch: as if its queue had overflowed
            passes = 0
            while not daemon.outbox.journal(alices) and passes <= len(listed):  # bounded
                daemon.continue_rescan(1_700_000_100.0)
                daemon.admit_queued(1_700_000_100.0)
                passes += 1
            before = sum(1 for run_id in mallorys if daemon.outbox.journal(run_id))
        finally:
            daemon.close()
    [alert] = Outbox(tmp_path / "state" / "outbox").journal(alices)
    assert alert.kind is K.KILLED and alert.reason == "never_seen_alive"
    # Listed in pass position // RESCAN_SLICE + 1, admitted in that pass's turn.
    assert passes <= position // RESCAN_SLICE + 1, (passes, position)
    assert before <= ADMIT_PER_PASS * passes, (before, position)
    assert position < RESCAN_SLICE or before < position, (before, position)


# ---------------------------------------------------------------- pidfds and open files


def test_records_naming_one_process_cannot_take_every_descriptor(
        tmp_path: Path, shared: Path, mallory: int, alice: int) -> None:
    """Under 1,024 open files, Mallory's 300 records each name her one process
    and four of its threads (1,500 pidfds if all were watched). Her excess is
    deferred and logged once; Alice's run, started after, is watched and its
    kill alerted; the daemon never runs out of descriptors."""
    spool = make_shared_spool(shared)
    with FakeBark() as phone:
        daemon = DaemonProcess(tmp_path / "d", phone_channels(phone), spool=spool)
        daemon.wrapper = SERVICE_NOFILE
        with daemon:
            assert daemon.proc is not None
            with record_flood(shared, spool, mallory, "self", 300) as flood:
                flood.ready()
                with user_run(shared, spool, alice, "sleep-forever", "--name", "victim") as victim:
                    victim.ready()
                    victim.expect("RUNNING")
                    assert open_fds(daemon.proc.pid) < 1000
                    victim.kill()
                    wait_for_push(phone, K.KILLED, "victim", signal=KILL)
            daemon.stop()
        log = daemon.log()
        assert "Too many open files" not in log
        assert log.count(f"uid {mallory}: ") >= 1  # her excess, named by her uid
        assert log.count("runs deferred until some of its runs end") == 1, log  # once, not 180 times


# ---------------------------------------------------------------- the HTTP server


def test_slow_http_clients_cannot_take_every_descriptor(tmp_path: Path, shared: Path, alice: int) -> None:
    """120 clients open connections to the metrics port and trickle their
    request a byte every 2 s, never finishing it, against a daemon allowed
    100 open files (connections are slow to open here, ~0.15 s each: the
    attack is scaled down with the limit). A bounded number is served at
    once, the rest refused and counted; Alice's run, started meanwhile, is
    watched and alerted."""
    pytest.importorskip("prometheus_client", reason="pip install 'run-sentinel[prometheus]'")
    spool = make_shared_spool(shared)
    port = free_port()
    clients: list[socket.socket] = []
    stop = threading.Event()

    def trickle() -> None:  # the attack's pace (a byte every 2 s keeps a per-read timeout from firing)
        while not stop.wait(2.0):
            for client in list(clients):
                with contextlib.suppress(OSError):
                    client.send(b"X")

    trickler = threading.Thread(target=trickle, daemon=True)
    trickler.start()
    with FakeBark() as phone:
        daemon = DaemonProcess(tmp_path / "d", phone_channels(phone), spool=spool,
                               metrics={"listen": f"127.0.0.1:{port}"},
                               budgets={"http_connections": 16, "http_connections_per_peer": 16})
        daemon.wrapper = ["prlimit", "--nofile=100:100", "--"]
        try:
            with daemon:
                assert daemon.proc is not None
                for _ in range(120):
                    client = socket.create_connection(("127.0.0.1", port), timeout=5)
                    clients.append(client)
                    client.sendall(b"GET /metrics HTTP/1.1\r\nX-Pad: ")  # and never the line's end
                with user_run(shared, spool, alice, "sleep-forever", "--name", "victim") as victim:
                    victim.ready()
                    victim.expect("RUNNING")
                    assert open_fds(daemon.proc.pid) < 100 - 16  # 16 connections at most, not 120
                    victim.kill()
                    wait_for_push(phone, K.KILLED, "victim", signal=KILL)
                daemon.stop()
        finally:
            stop.set()
            trickler.join(10)
            for client in clients:
                client.close()
        log = daemon.log()
        assert "Too many open files" not in log
        refusals = log.count("connection(s) refused: at most 16 at once, 16 per peer")
        assert 1 <= refusals <= 3, refusals  # counted and logged once a minute, not once each


# Mallory's client: SHARE connections that never finish their request, then one more,
# which must be refused; prints what the extra one was answered, holds the rest until stdin closes.
HOLD_CONNECTIONS = """
import socket, sys
port, share = int(sys.argv[1]), int(sys.argv[2])
held = []
for _ in range(share):
    client = socket.create_connection(("127.0.0.1", port), timeout=10)
    client.sendall(b"GET /metrics HTTP/1.1\\r\\nX-Pad: ")
    held.append(client)
extra = socket.create_connection(("127.0.0.1", port), timeout=10)
print("EXTRA", extra.recv(100).split(b"\\r\\n")[0].decode(), flush=True)
sys.stdin.read()
"""
# Alice's client: one whole request, its status line printed.
ONE_REQUEST = """
import socket, sys
client = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
client.sendall(b"GET /metrics HTTP/1.0\\r\\n\\r\\n")
print("STATUS", client.recv(100).split(b"\\r\\n")[0].decode(), flush=True)
"""


def test_one_users_idle_connections_do_not_deny_another_user_the_metrics_port(
        tmp_path: Path, shared: Path, mallory: int, alice: int, launch: Launcher) -> None:
    """All local users connect from 127.0.0.1: a per-address cap let one of
    them take every slot. Mallory holds her share of idle connections (her
    next one is refused, so they are counted); Alice, another local user, is
    still answered: the share is per uid (the owner of the client socket)."""
    pytest.importorskip("prometheus_client", reason="pip install 'run-sentinel[prometheus]'")
    spool = make_shared_spool(shared)
    port = free_port()
    share = 4  # min(http_connections_per_peer, http_connections // 4)
    phone = FakeBark()
    with phone, DaemonProcess(tmp_path / "d", phone_channels(phone), spool=spool,
                              metrics={"listen": f"127.0.0.1:{port}"},
                              budgets={"http_connections": 16, "http_connections_per_peer": 4}) as daemon:
        holder = launch([USER_PYTHON, "-c", HOLD_CONNECTIONS, str(port), str(share)],
                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                        cwd=home_for(shared, mallory), preexec_fn=become(mallory))
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline().strip() == "EXTRA HTTP/1.0 503 Service Unavailable"
            answer = subprocess.run([USER_PYTHON, "-c", ONE_REQUEST, str(port)], capture_output=True,
                                    text=True, timeout=60, cwd=home_for(shared, alice),
                                    preexec_fn=become(alice))
            assert answer.stdout.strip() == "STATUS HTTP/1.0 200 OK", answer
            # Mallory's connections still held: hers were not cut to make room for Alice
            assert holder.poll() is None
        finally:
            launch.kill_all()  # her connections closed before the daemon stops
        daemon.stop()
    assert "Traceback" not in daemon.log()


# ---------------------------------------------------------------- bookkeeping


def test_refused_runs_are_remembered_per_user_within_a_bound() -> None:
    """A million refused ids of one user cost at most the bound, and evict only that user's own."""
    refused = RefusedRuns(limit=1000)
    refused.add("alice-run", 1001)
    for n in range(20_000):
        refused.add(f"m{n}", 1002)
    assert len(refused) == 1001
    assert "alice-run" in refused and "m19999" in refused and "m0" not in refused


def test_a_users_budget_never_refuses_another_user() -> None:
    budgets = UserBudgets(Budgets(runs_per_user=2, state_alerts_per_user_per_minute=1))
    for n in range(2):
        assert budgets.room_for(f"m{n}", 1002, 5, 0.0)
        budgets.tracked(f"m{n}", 1002, 5)
    assert not budgets.room_for("m2", 1002, 5, 0.0) and budgets.is_deferred("m2")
    assert budgets.room_for("a0", 1001, 5, 0.0)
    assert budgets.send_state_alert(1002, 0.0) and not budgets.send_state_alert(1002, 1.0)
    assert budgets.send_state_alert(1001, 1.0)
    budgets.release("m0")
    assert budgets.room_for("m2", 1002, 5, 2.0) and not budgets.is_deferred("m2")
    assert budgets.send_state_alert(1002, 61.0)  # a minute later


def test_state_alerts_are_sent_by_user_in_turn(tmp_path: Path) -> None:
    """Three users' queued state alerts on one channel go out round-robin:
    Mallory's backlog of 6 delays Alice's and Bob's by one send each."""
    outbox = Outbox(tmp_path / "outbox")
    users = ["mallory"] * 6 + ["alice", "bob", "alice"]
    for n, user in enumerate(users):
        outbox.enqueue(Alert(alert_id=f"{user}-{n}", kind=K.KILLED, created=0.0, run_id=f"run-{n}",
                             run_name=f"r{n}", text="", user=user), ["phone"])
    sent = []
    while pending := outbox.pending("phone", limit=1):
        sent.append(pending[0].alert.alert_id)
        outbox.mark_delivered(pending[0].alert.alert_id, "phone", "ok", 0.0)
    assert [s.split("-")[0] for s in sent] == ["mallory", "alice", "bob", "mallory", "alice",
                                               "mallory", "mallory", "mallory", "mallory"]
    assert [s for s in sent if s.startswith("mallory")] == [f"mallory-{n}" for n in range(6)]  # in order


def test_one_users_alerts_and_messages_do_not_starve_another_users_messages(tmp_path: Path) -> None:
    """Mallory has 50 state alerts and 100 messages queued (and more state
    alerts keep coming); Alice's run sent two messages and was then killed:
    her kill alert waits behind her own messages only, and users take turns
    over messages too, so all three go out within Alice's first three turns
    (before: behind every state alert and every earlier message of Mallory's)."""
    outbox = Outbox(tmp_path / "outbox")

    def alert(user: str, n: int, kind: AlertKind, run_id: str) -> None:
        outbox.enqueue(Alert(alert_id=f"{user}-{n}", kind=kind, created=0.0, run_id=run_id,
                             run_name=run_id, text=f"{user} {n}", user=user), ["phone"])

    for n in range(100):
        alert("mallory", n, K.MESSAGE, "mallory-chatty")
    for n in range(100, 150):
        alert("mallory", n, K.KILLED, f"mallory-fake-{n}")
    alert("alice", 0, K.MESSAGE, "alice-run")
    alert("alice", 1, K.MESSAGE, "alice-run")
    alert("alice", 2, K.KILLED, "alice-run")
    sent = []
    while pending := outbox.pending("phone", limit=1):
        sent.append(pending[0].alert.alert_id)
        outbox.mark_delivered(pending[0].alert.alert_id, "phone", "ok", 0.0)
        if len(sent) % 2 == 0 and len(sent) < 40:  # Mallory's stream of state alerts goes on
            alert("mallory", 1000 + len(sent), K.KILLED, f"mallory-fake-{1000 + len(sent)}")
    alices = [sent.index(f"alice-{n}") for n in range(3)]
    assert alices == sorted(alices) and alices[-1] < 6, alices  # hers in order, within 3 turns
    mallorys = [s for s in sent if s.startswith("mallory-") and int(s.split("-")[1]) < 100]
    assert mallorys == [f"mallory-{n}" for n in range(100)]  # her messages still in order


def test_a_trickling_http_client_is_cut_at_the_deadline_and_the_cap_holds() -> None:
    """A client that keeps sending a byte at a time is cut at the deadline
    however it trickles; a connection over the per-peer cap gets 503 at once."""
    from http.server import BaseHTTPRequestHandler

    from sentinel.fleet.bounded_http import BoundedHTTPServer

    class Handler(BaseHTTPRequestHandler):
        timeout = 30.0  # per read: never what cuts the trickler

        def do_GET(self) -> None:  # noqa: N802
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    server = BoundedHTTPServer(("127.0.0.1", 0), Handler, max_connections=4, max_per_peer=1, deadline=0.5)
    server.timeout = 0.05
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        with socket.create_connection(("127.0.0.1", port), timeout=10) as trickler:
            trickler.sendall(b"GET / HTTP/1.1\r\n")
            wait_for(lambda: server.connections() == 1, 10, what="the trickler accepted")
            with socket.create_connection(("127.0.0.1", port), timeout=10) as second:
                assert second.recv(100).startswith(b"HTTP/1.0 503")  # over the per-peer cap
            sent = 0
            trickler.settimeout(0.05)
            while sent < 400:  # bounded: 400 bytes, one per wait
                try:
                    trickler.send(b"X")
                    sent += 1
                    if trickler.recv(1) == b"":
                        break
                except TimeoutError:
                    continue
                except OSError:
                    break
            assert sent < 400, "the trickler was never cut"
        wait_for(lambda: server.connections() == 0, 10, what="the slot given back")
    finally:
        server.shutdown()
        server.server_close()


def test_budgets_are_validated_and_errors_name_the_key_path() -> None:
    text = "budgets:\n  runs_per_user: 0\n  pidfds_per_user: -1\n  http_connections: many\n  bogus: 1\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    message = str(caught.value)
    for path in ("budgets.runs_per_user", "budgets.pidfds_per_user", "budgets.http_connections",
                 "budgets.bogus"):
        assert path in message, message
    assert parse_config("budgets: {open_files: 0, runs_per_user: 3}\n").budgets == Budgets(runs_per_user=3)


if sys.platform != "linux":  # pragma: no cover
    pytest.skip("Linux only", allow_module_level=True)
