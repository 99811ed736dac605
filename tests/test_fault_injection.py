"""Fault injection: the attacks on a root daemon reading a spool every local
user writes into, and the faults of the services it delivers to, in one place.

Each attack is a test with real processes: throw-away users made here (as
root, ``tests/users.py``), their own processes writing into a shared spool,
a real daemon, fakes on 127.0.0.1. Where an attack already has its
regression test elsewhere, this index names it instead of repeating it
(attack → test; "here": this module):

- symlink to /etc/shadow, FIFO, sparse 10 GB file as run.json, beat.json,
  final.json or a message, by another user → here,
  ``test_a_hostile_file_in_place_of_a_record``; a symlink to another
  record, a symlinked run directory, a FIFO run.json, malformed and
  oversized JSON by the daemon's own user → test_daemon_e2e.py::
  test_hostile_spool_files_are_skipped_once_and_the_daemon_lives
- msg/ or a whole run directory swapped for a symlink, messages swapped
  for symlinks in a tight loop → test_spool_attacks.py::
  test_a_symlinked_msg_dir_or_run_dir_is_never_followed,
  test_messages_swapped_for_a_symlink_never_make_root_delete_outside_the_spool
- a run directory deleted, the inotify watches used up → test_spool_attacks.py
- run.json naming pid 1 or another user's live process → here,
  ``test_a_record_naming_someone_elses_process_is_refused``
- a record claiming another uid or user name → test_shared_host_attacks.py::
  test_forged_user_restricted_channel_and_script_link, test_daemon_e2e.py::
  test_shared_spool_accepts_runs_only_from_their_owners
- inline channels aimed at internal services, by the hundred →
  test_shared_host_attacks.py::test_inline_channels_are_off_in_a_shared_spool,
  test_allowed_inline_channels_are_capped_bounded_and_never_read_back
- a message flood burying another user's alert → test_shared_host_attacks.py::
  test_a_message_flood_does_not_delay_another_users_kill_alert
- 200 records naming pids that never existed (fake "Killed" alerts queued
  in front of another user's) → test_fairness.py::
  test_fake_deaths_neither_claim_a_kill_nor_queue_before_another_users_alert
- 300 records naming one process and its threads (every pidfd of a daemon
  under 1,024 open files) → test_fairness.py::
  test_records_naming_one_process_cannot_take_every_descriptor
- slow clients holding the metrics port → test_fairness.py::
  test_slow_http_clients_cannot_take_every_descriptor; one local user's idle
  connections taking every slot of 127.0.0.1 → test_fairness.py::
  test_one_users_idle_connections_do_not_deny_another_user_the_metrics_port
- one user's stream of state alerts and burst of messages starving another
  user's messages (and the kill alert waiting behind them) →
  test_fairness.py::test_one_users_alerts_and_messages_do_not_starve_another_users_messages
- thousands of new records at once holding back another user's admission →
  test_fairness.py::test_a_flood_of_new_records_does_not_hold_back_another_users_admission
- thousands of one user's records left in the spool across a daemon restart
  (the start-up reconcile read them all before the loop ran) →
  test_fairness.py::test_a_restart_reconciles_one_users_backlog_without_holding_back_another_users_alert
- refused records remembered without bound, one user's budget refusing
  another → test_fairness.py (bookkeeping tests)
- 150 job records beside 1,500 idle processes (a /proc scan per job on the
  loop) → test_loop_offload.py::
  test_job_rank_scans_run_off_the_loop_while_another_users_kill_is_alerted
- an archived run of 100,000 files (pruning it held the loop) →
  test_loop_offload.py::
  test_an_archive_of_100k_files_is_pruned_off_the_loop_while_another_users_kill_is_alerted
- a flood of SIGKILLed runs on a host without /dev/kmsg (a dmesg process per
  death on the loop) → test_daemon_units.py::
  test_without_kmsg_one_dmesg_read_serves_a_loop_pass,
  test_a_dmesg_that_cannot_read_the_log_is_not_asked_again
- NaN and infinite numbers, deep JSON, bad fields, escape sequences →
  test_inproc_arguments.py, test_state_security.py::
  test_deeply_nested_json_is_a_format_error_everywhere
- a forged daemon.json, a state directory another user made, a symlink in
  the state tree, a read-only state → test_state_security.py
- the state disk full mid-write → test_state_disk_full.py
- a webhook answering 2 GB → here,
  ``test_a_webhook_answering_2_gb_is_read_a_bounded_amount``
- a webhook redirecting → here, ``test_a_redirect_is_never_followed``
- a webhook answering 500 forever → here,
  ``test_500_forever_backs_off_and_dead_letters_after_retry_for``
- a webhook answering one byte per second → test_channel_http.py::
  test_a_server_answering_a_byte_a_second_misses_the_deadline
- the daemon SIGKILLed with alerts pending → test_daemon_e2e.py::
  test_daemon_killed_with_alerts_pending_delivers_after_restart; a sender
  killed between enqueue and sync → test_outbox.py::
  test_process_killed_between_enqueue_and_sync_loses_nothing
- the daemon SIGKILLed mid-delivery in an alert storm → here,
  ``test_sigkill_of_the_daemon_in_an_alert_storm``; for an hour of such
  faults at random, see benchmarks/soak.py (its second phase beside a
  hostile user doing the attacks above at once)
- a run's inline secret in logs, status or the journal → here,
  ``test_an_inline_secret_never_reaches_logs_status_or_journal``
- the shipped unit's privileges: every daemon in the suite runs as root under
  systemd/sentinel.service's capability set (tests/unit_caps.py); another
  user's torchrun job with a rank SIGKILLed, ptrace rights over another
  user's process, /dev/kmsg → test_unit_privileges.py; the system calls the
  features need against the unit's filter → test_systemd.py::
  test_system_call_filter_allows_what_the_features_call
- ``sentinel run -- sh -c 'python train.py'`` stopped, leaving the trainer
  running → test_runner.py::test_stopping_the_wrapper_takes_the_whole_tree_down,
  test_a_background_process_left_by_a_finished_command_is_stopped
- a killed main process whose workers ignore SIGTERM/SIGHUP and live on, the
  trainer under a SIGKILLed ``sentinel run`` → test_survivors.py
- the daemon SIGKILLed and restarted mid-job, then a rank killed →
  test_jobs_torchrun.py::test_a_daemon_restart_mid_job_keeps_one_alert_naming_the_killed_rank
- the daemon SIGKILLed mid-job and a rank killed while it is down; killed
  after a job alert; killed while a job is stalled → test_jobs_restart.py
- a saved job state file that is garbage, NaN, too large, a symlink, a
  FIFO or named for another job → test_jobs_restart.py::
  test_hostile_saved_jobs_are_quarantined_and_the_rest_kept
- a rank's error file naming the user's pty, a FIFO, /dev/zero, a symlink
  or another user's 0600 file (the daemon must not gain a controlling
  terminal, a ^C must not stop it) → test_hostile_paths.py::
  test_error_files_naming_a_pty_fifo_device_symlink_or_private_file
- a spool with one free page (live.bin's first store was a SIGBUS) →
  test_recorder_disk_full.py::
  test_a_spool_with_one_free_page_degrades_to_heartbeats
- another user's labels and traceback on the status page, a run name
  planted as a symlink with fs.protected_symlinks=0 →
  test_status_page_attacks.py::
  test_the_status_page_shows_what_every_user_may_see_and_follows_no_link
- .resend and .mutes starved by unremovable names that sort first, a
  planted .mutes → test_drop_dir_attacks.py
- two daemons (system and user) on one spool, a planted lock file or
  daemon.json directory, a planted lock file held by its planter, the name
  a squatter is moved to occupied first → test_one_daemon_per_spool.py
- status / history by a user who cannot read the spool →
  test_unreadable_spool.py

Nothing here sleeps to synchronise (``tests.waiting.wait_for``) and nothing
asserts a duration: a count of attempts, bytes or deliveries either holds or
it does not.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest

from sentinel.channels.bark import render_bark
from sentinel.delivery.outbox import RetryPolicy, backoff
from sentinel.formats import spool
from sentinel.host.procid import ProcessIdentity
from sentinel.model.alerts import AlertKind
from tests.cli_helpers import run_sentinel, sentinel_env
from tests.daemon_harness import DaemonProcess, bark_title, titles, wait_for_push
from tests.fakes import FakeBark
from tests.user_victims import forged_run
from tests.users import (
    become,
    home_for,
    make_shared_spool,
    shared_for_user_python,  # noqa: F401  (the fixture "shared")
    user_python,
)
from tests.victims.harness import VICTIMS, Victim
from tests.waiting import wait_for

if sys.platform != "linux":  # pragma: no cover
    pytest.skip("Linux only", allow_module_level=True)

K = AlertKind
KILL = "SIGKILL"
FORGED_RUN = VICTIMS / "forged_run.py"
SPARSE_BYTES = 10 * 2**30
# The schedule tests/daemon_victims/launch_daemon.py gives the daemon under test.
HARNESS_RETRY = RetryPolicy(base=0.2, cap=0.8)
HAZARD_REASONS = {"symlink": "symlink", "fifo": "not a regular file", "sparse": "too large"}

# Run as the attacker: put a hostile file at each path, whole (made under a
# staging name, then renamed), so the daemon sees one version of each.
PLANT = """
import os, sys
kind, paths = sys.argv[1], sys.argv[2:]
for path in paths:
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    staged = os.path.join(os.path.dirname(path), ".planting")
    if kind == "symlink":
        os.symlink("/etc/shadow", staged)
    elif kind == "fifo":
        os.mkfifo(staged, 0o600)
    else:
        with open(staged, "wb") as f:
            f.truncate(int(os.environ["SPARSE_BYTES"]))
    os.rename(staged, path)
"""


@pytest.fixture
def phone() -> Iterator[FakeBark]:
    with FakeBark() as fake:
        yield fake


def wait_rescans(daemon: DaemonProcess, count: int) -> None:
    """``count`` full rescans: each one rewrites daemon.json (a new file renamed into place)."""
    liveness = daemon.spool / spool.DAEMON_FILE
    for _ in range(count):
        before = liveness.stat().st_mtime_ns
        wait_for(lambda before=before: liveness.stat().st_mtime_ns > before, 30, what="a rescan")


def read_chars(pid: int) -> int:
    """Bytes the process has read through read(2) and friends, from /proc."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError(f"no rchar in /proc/{pid}/io")


def bark_daemon(tmp: Path, service_url: str, **settings: Any) -> DaemonProcess:
    return DaemonProcess(tmp, {"phone": {"type": "bark", "url": service_url}}, **settings)


def finishing_run(daemon: DaemonProcess, name: str, *args: str) -> Victim:
    return Victim.watch(daemon.tmp, "finish", "--name", name, "--heartbeat", "0.2", *args,
                        spool_dir=daemon.spool).start()


# ---------------------------------------------------------------- hostile files in a shared spool


@pytest.mark.parametrize("hazard", sorted(HAZARD_REASONS))
def test_a_hostile_file_in_place_of_a_record(tmp_path: Path, shared: Path, mallory: int, phone: FakeBark,
                                             hazard: str) -> None:
    """Mallory puts a symlink to /etc/shadow, a FIFO or a sparse 10 GB file
    where her run's run.json (a second run), beat.json, final.json and a
    message belong. Each is refused for what it is — never opened through
    the link (the refusal is the link's, not shadow's content), never waited
    on, never read (the daemon's whole read(2) count stays far below one
    such file) — logged once through two full rescans, and her run still
    gets its kill alert, not "finished"."""
    spool_dir = make_shared_spool(shared)
    with bark_daemon(tmp_path / "d", phone.key_url, spool=spool_dir) as daemon:
        assert daemon.proc is not None
        # Planted before or after the daemon takes the run in: either way each file is looked at.
        with forged_run(home_for(shared, mallory), spool_dir, mallory, {"name": "hazard"}) as run:
            run_id = run.ready()
            paths = spool.RunPaths(spool_dir, run_id)
            other_id = spool.new_run_id()
            planted = {"run.json": spool.RunPaths(spool_dir, other_id).run, "beat.json": paths.beat,
                       "final.json": paths.final, "message": paths.message(1)}
            subprocess.run([user_python(), "-c", PLANT, hazard, *map(str, planted.values())], check=True,
                           preexec_fn=become(mallory), env={"SPARSE_BYTES": str(SPARSE_BYTES)})
            for what in ("run.json", "message"):  # looked at while the run lives
                daemon.wait_log(f"skipping {planted[what]}:")
            wait_rescans(daemon, 2)
            run.kill()  # beat.json and final.json are looked at now, for the alert
            wait_for_push(phone, K.KILLED, "hazard", signal=KILL)
            read = read_chars(daemon.proc.pid)
        daemon.stop()
    log = daemon.log()
    for what, path in planted.items():
        lines = [line for line in log.splitlines() if f"skipping {path}:" in line]
        assert len(lines) == 1, f"{what}: {lines}"
        assert HAZARD_REASONS[hazard] in lines[0], lines[0]
    assert read < SPARSE_BYTES // 10  # no hostile file was read, let alone one of 10 GB
    assert titles(phone) == [bark_title(K.KILLED, "hazard", signal=KILL)]  # no message, no "finished"
    assert [a.kind for a in daemon.journal(run_id)] == [K.KILLED]
    assert daemon.journal(other_id) == []


def test_a_record_naming_someone_elses_process_is_refused(tmp_path: Path, shared: Path, mallory: int,
                                                          alice: int, phone: FakeBark) -> None:
    """Mallory's hand-written records name pid 1 and Alice's live process
    (with their true start times): both are refused once; when Alice's
    process dies, nothing is alerted for it, while Mallory's honest run
    still is."""
    spool_dir = make_shared_spool(shared)
    alices = subprocess.Popen([user_python(), "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE,
                              preexec_fn=become(alice))
    try:
        alices_identity = wait_for(lambda: ProcessIdentity.of(alices.pid), 10, what="Alice's process")
        targets = {"claims-init": ProcessIdentity.of(1), "claims-alice": alices_identity}
        home = home_for(shared, mallory)
        with bark_daemon(tmp_path / "d", phone.key_url, spool=spool_dir) as daemon:
            forged: dict[str, str] = {}
            runs = []
            for name, ident in targets.items():
                assert ident is not None
                run = forged_run(home, spool_dir, mallory, {"name": name, "pid": ident.pid,
                                                               "start_ticks": ident.start_ticks,
                                                               "boot_id": ident.boot_id})
                runs.append(run)
                forged[name] = run.ready()
                daemon.wait_log(f"skipping {spool.RunPaths(spool_dir, forged[name]).run}: shared spool: "
                                f"file owner uid {mallory} does not own process {ident.pid}")
            with forged_run(home, spool_dir, mallory, {"name": "honest"}) as honest:
                honest.ready()
                alices.stdin.close()  # type: ignore[union-attr]
                alices.wait(30)
                wait_rescans(daemon, 1)  # the refused records are looked at again
                honest.kill()
                wait_for_push(phone, K.KILLED, "honest", signal=KILL)
            for run in runs:
                run.kill()
            daemon.stop()
    finally:
        alices.kill()
        alices.wait()
    assert titles(phone) == [bark_title(K.KILLED, "honest", signal=KILL)]
    log = daemon.log()
    for name, run_id in forged.items():
        assert daemon.journal(run_id) == [], name
        assert log.count(f"skipping {spool.RunPaths(spool_dir, run_id).run}:") == 1, log


# ---------------------------------------------------------------- a hostile webhook


class EndlessAnswer:
    """On 127.0.0.1: answers every request ``200 OK`` with a 2 GB body and
    writes it until the client goes away, counting the bytes it got out."""

    BODY_BYTES = 2 * 2**30
    CHUNK = b"0" * 65536

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.sent = 0
        self.answered = threading.Event()  # one answer ended (the client hung up, or all of it went)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/bigkey0123456789abcd/"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                try:
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                 b"Content-Length: %d\r\n\r\n" % self.BODY_BYTES)
                    while self.sent < self.BODY_BYTES:
                        conn.sendall(self.CHUNK)
                        self.sent += len(self.CHUNK)
                except OSError:
                    pass
            self.answered.set()

    def close(self) -> None:
        self.sock.close()
        self.thread.join(30)


def test_a_webhook_answering_2_gb_is_read_a_bounded_amount(tmp_path: Path) -> None:
    server = EndlessAnswer()
    try:
        with bark_daemon(tmp_path, server.url) as daemon:
            with finishing_run(daemon, "big-answer") as run:
                run.ready()
                run.wait()
            wait_for(server.answered.is_set, 60, what="the daemon to hang up on the 2 GB answer")
            assert daemon.alive()
            assert daemon.stop() == 0
    finally:
        server.close()
    # What the kernel's socket buffers hold besides the daemon's bounded read.
    assert server.sent < 64 * 2**20, server.sent


def test_a_redirect_is_never_followed(tmp_path: Path, phone: FakeBark) -> None:
    """A 302 to another server: that server is never contacted, and the
    alert is dead-lettered after one attempt (a redirect is configuration
    to fix, not a transient failure)."""
    with FakeBark() as elsewhere:
        phone.fail(status=302, headers={"Location": f"{elsewhere.url}/push"})
        with bark_daemon(tmp_path, phone.key_url) as daemon:
            with finishing_run(daemon, "redirected") as run:
                run_id = run.ready()
                run.wait()
            wait_for(lambda: list((daemon.state / "outbox" / "dead").glob("*.json")), 30,
                     what="a dead letter")
            assert daemon.stop() == 0
        assert elsewhere.received() == []
    assert len(phone.received()) == 1
    [letter] = daemon.dead_letters()
    assert letter.run_id == run_id and "redirected" in letter.reason


def attempts_allowed(policy: RetryPolicy) -> int:
    """The most attempts the backoff allows before ``retry_for`` runs out:
    every wait as short as the jitter can make it."""
    attempts, waited = 1, 0.0
    while waited < policy.retry_for:
        waited += backoff(attempts, policy, 1.0)
        attempts += 1
    return attempts


def test_500_forever_backs_off_and_dead_letters_after_retry_for(tmp_path: Path, phone: FakeBark) -> None:
    """Every attempt answered 500: retried with growing waits, never sooner
    or more often than the schedule allows, dead-lettered once
    ``retry_for`` has passed, and never tried again."""
    policy = replace(HARNESS_RETRY, retry_for=3.0)
    phone.fail("5xx")
    with bark_daemon(tmp_path, phone.key_url, retry_for="3s") as daemon:
        with finishing_run(daemon, "never-up") as run:
            run_id = run.ready()
            run.wait()
        wait_for(lambda: list((daemon.state / "outbox" / "dead").glob("*.json")), 60, what="a dead letter")
        assert daemon.stop() == 0
    attempts = phone.received()
    assert 2 <= len(attempts) <= attempts_allowed(policy)  # retried, but only as often as the backoff allows
    gaps = [(b.arrival_ns - a.arrival_ns) / 1e9 for a, b in zip(attempts, attempts[1:])]
    assert all(gap >= backoff(n, policy, 1.0) for n, gap in enumerate(gaps, start=1)), gaps
    [letter] = daemon.dead_letters()
    assert letter.run_id == run_id and letter.attempts == len(attempts)
    assert len(phone.received()) == len(attempts)  # nothing after the dead letter


# ---------------------------------------------------------------- the daemon killed mid-storm


def test_sigkill_of_the_daemon_in_an_alert_storm(tmp_path: Path, phone: FakeBark) -> None:
    """40 messages and a kill: the daemon is SIGKILLed while the 11th
    delivery is in flight (the fake holds it, then answers it to nobody).
    After a restart every alert arrives, counted at the fake by alert id;
    only the one in flight at the kill may arrive twice."""
    texts = [f"storm message {n:02d}" for n in range(40)]
    with bark_daemon(tmp_path, phone.key_url, message_limits={"per_run_per_minute": 100}) as daemon:
        phone.hold_after(10)
        sends = [arg for text in texts for arg in ("--send", text)]
        run = Victim.watch(tmp_path, "sleep-forever", "--name", "storm", "--heartbeat", "0.2", *sends,
                           spool_dir=daemon.spool).start()
        with run:
            run_id = run.ready()
            run.expect("RUNNING")  # all 40 sent
            wait_for(lambda: len(phone.received()) == 11, 30, what="the 11th delivery in flight")
            daemon.kill()
            phone.release()
            in_flight = phone.received()[10]
            wait_for(lambda: in_flight.status, 30, what="the held delivery answered")
            daemon.start()
            wait_for(lambda: {first_line(p["body"]) for p in phone.pushes} >= set(texts), 60,
                     what="every message")
            run.kill()
            wait_for_push(phone, K.KILLED, "storm", signal=KILL)
        daemon.stop()
    by_content = {}
    for alert in daemon.journal(run_id):
        text = render_bark(alert, "en")
        by_content[(text.title, first_line(text.body) if alert.kind is K.MESSAGE else "")] = alert.alert_id
    delivered: Counter[Optional[str]] = Counter(
        by_content.get((p["title"], first_line(p["body"]) if first_line(p["body"]) in texts else ""))
        for p in phone.pushes)
    assert None not in delivered  # nothing arrived that the daemon did not decide
    assert len(delivered) == len(texts) + 1 and set(delivered) == set(by_content.values())
    twice = {alert_id: n for alert_id, n in delivered.items() if n > 1}
    held = json.loads(in_flight.body)
    in_flight_id = by_content[(held["title"], first_line(held["body"]))]
    assert set(twice) <= {in_flight_id} and sum(twice.values()) <= 2, twice


def first_line(body: str) -> str:
    """A message push's text: the run's progress, when the daemon knew it at
    enqueue time, follows on the next lines (after a restart it may already
    know steps logged after the message was sent)."""
    return body.split("\n", 1)[0]


# ---------------------------------------------------------------- secrets


def test_an_inline_secret_never_reaches_logs_status_or_journal(tmp_path: Path) -> None:
    """A run brings its own Bark key inline; the first delivery fails (the
    error path is where URLs leak), later ones succeed. The key appears in
    no log line, no ``sentinel status`` output, no file of the daemon's
    outbox (journal, records, dead letters) and no spool file but the
    run.json the user wrote it into."""
    secret = "inlineSecretKey0123456789"
    with FakeBark(keys=[secret]) as phone, FakeBark() as default:
        phone.fail("down")
        inline = json.dumps({"type": "bark", "url": f"{phone.url}/{secret}/"})
        with bark_daemon(tmp_path, default.key_url) as daemon:
            env = sentinel_env(daemon.spool)
            with Victim.watch(tmp_path, "sleep-forever", "--name", "secretive", "--heartbeat", "0.2",
                              "--channel", inline, "--send", "first words",
                              spool_dir=daemon.spool).start() as run:
                run_id = run.ready()
                run.expect("RUNNING")
                wait_for(lambda: phone.received(), 30, what="the failed delivery")
                phone.recover()
                wait_for(lambda: phone.pushes, 60, what="the retried message")
                shown = [run_sentinel(["status", *extra, "--config", str(daemon.config_path)], env)
                         for extra in ([], ["--json"], ["--all", "--json"])]
                run.kill()
                wait_for(lambda: len(phone.pushes) == 2, 60, what="the kill alert")
            shown += [run_sentinel(["status", "--all", *extra, "--config", str(daemon.config_path)], env)
                      for extra in ([], ["--json"])]
            daemon.stop()
    assert default.received() == []  # the inline channel was the run's only one
    assert all(result.returncode == 0 for result in shown), [r.stderr for r in shown]
    assert any("secretive" in result.stdout for result in shown)
    outputs = [result.stdout + result.stderr for result in shown]
    assert not [out for out in outputs if secret in out]
    assert secret not in daemon.log()
    assert {a.kind for a in daemon.journal(run_id)} == {K.MESSAGE, K.KILLED}
    outbox_files = [p for p in (daemon.state / "outbox").rglob("*") if p.is_file()]
    assert outbox_files and not [p for p in outbox_files if secret.encode() in p.read_bytes()]
    spool_files = [p for p in daemon.spool.rglob("*") if p.is_file() and p.name != "run.json"]
    assert not [p for p in spool_files if secret.encode() in p.read_bytes()]
