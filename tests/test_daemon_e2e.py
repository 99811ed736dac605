"""End to end: a real daemon process, real victims, a fake Bark on 127.0.0.1.

Each test reads what the daemon *delivered* (pushes the fake accepted) and,
after stopping it, what it *decided* (the outbox journal: exactly one alert
per transition).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

import pytest

from sentinel.formats import safe_json, spool
from sentinel.host.procid import ProcessIdentity
from sentinel.model.alerts import AlertKind
from tests.daemon_harness import DaemonProcess, bark_title, hand_written_record, titles, wait_for_push
from tests.fakes import FakeBark
from tests.victims.harness import Victim, identity_of, swanlab_params, swanlab_python
from tests.waiting import wait_for

HEARTBEAT = "0.1"
K = AlertKind
KILL = "SIGKILL"  # how the kernel names a kill -9


def victim(daemon: DaemonProcess, mode: str, name: str, *args: str) -> Victim:
    return Victim.watch(daemon.tmp, mode, "--name", name, "--heartbeat", HEARTBEAT, *args,
                        spool_dir=daemon.spool).start()


def kinds(daemon: DaemonProcess, run_id: str) -> list[AlertKind]:
    return [a.kind for a in daemon.journal(run_id)]


# ------------------------------------------------------------ how runs end


def test_clean_finish(daemon: DaemonProcess, bark: FakeBark) -> None:
    with victim(daemon, "finish", "clean") as v:
        run_id = v.ready()
        assert v.wait() == 0
        wait_for_push(bark, K.FINISHED, "clean")
    assert daemon.stop() == 0
    assert kinds(daemon, run_id) == [K.FINISHED]


def test_exception_is_crashed_with_the_error(daemon: DaemonProcess, bark: FakeBark) -> None:
    with victim(daemon, "exception", "boom") as v:
        run_id = v.ready()
        assert v.wait() != 0
        push = wait_for_push(bark, K.CRASHED, "boom")
    assert "boom from victim" in push["body"]
    daemon.stop()
    [alert] = daemon.journal(run_id)
    assert alert.kind is K.CRASHED and "RuntimeError: boom from victim" in (alert.error or "")


def test_sys_exit_code_is_crashed(daemon: DaemonProcess, bark: FakeBark) -> None:
    with victim(daemon, "sys-exit-1", "exit1") as v:
        run_id = v.ready()
        assert v.wait() == 1
        wait_for_push(bark, K.CRASHED, "exit1")
    daemon.stop()
    [alert] = daemon.journal(run_id)
    assert alert.exit_code == 1


def test_sigkill_is_killed(daemon: DaemonProcess, bark: FakeBark) -> None:
    with victim(daemon, "sleep-forever", "nine") as v:
        run_id = v.ready()
        v.expect("RUNNING")
        v.kill()
        push = wait_for_push(bark, K.KILLED, "nine", signal=KILL)
    assert "no exit record" in push["body"]
    daemon.stop()
    assert kinds(daemon, run_id) == [K.KILLED]
    # Ended and gone: archived out of the spool.
    assert not (daemon.spool / run_id).exists()
    assert (daemon.state / "archive" / run_id / "run.json").is_file()


def test_kill_alert_reports_the_very_last_step(daemon: DaemonProcess, bark: FakeBark) -> None:
    # One heartbeat at start, none after: the step can only come from live.bin.
    with victim(daemon, "stall", "exact", "--steps", "37", "--heartbeat", "3600",
                "--stall-timeout", "3600") as v:
        run_id = v.ready()
        v.expect("STALLED")
        assert v.progress().step is None
        v.kill()
        push = wait_for_push(bark, K.KILLED, "exact", signal=KILL)
    assert "Step 37 · loss=0.02703, lr=0.1" in push["body"]
    daemon.stop()
    [alert] = daemon.journal(run_id)
    assert alert.step == 37 and alert.scalars == {"loss": 1 / 37, "lr": 0.1}


def test_kill_alert_draws_the_loss_and_shows_the_labels(daemon: DaemonProcess, bark: FakeBark) -> None:
    with victim(daemon, "stall", "spark", "--steps", "30", "--label", "gpu=0", "--label", "node=a") as v:
        run_id = v.ready()
        v.expect("STALLED")
        wait_for(lambda: len(v.progress().history.get("loss", [])) >= 5, what="loss samples in beat.json")
        v.kill()
        push = wait_for_push(bark, K.KILLED, "spark", signal=KILL)
    daemon.stop()
    [alert] = daemon.journal(run_id)
    assert alert.trend_metric == "loss"  # the first scalar logged
    assert alert.trend[-1] == 1 / 30 and alert.trend == sorted(alert.trend, reverse=True)
    assert len(alert.trend) >= 5
    first = f"{alert.trend[0]:.4g}"
    [line] = [ln for ln in push["body"].splitlines() if ln.startswith("loss ")]
    assert line.startswith("loss █") and f" {first} → 0.03333 (min 0.03333, max {first})" in line
    assert "gpu=0, node=a" in push["body"]


# SIGTERM and an unreaped zombie: tests/test_daemon_endings.py, on both liveness paths.


def test_messages_are_delivered_in_order_before_the_end(daemon: DaemonProcess, bark: FakeBark) -> None:
    with victim(daemon, "finish", "chatty", "--send", "first", "--send", "second", "--send", "third") as v:
        run_id = v.ready()
        v.wait()
        wait_for_push(bark, K.FINISHED, "chatty")
    pushes = bark.pushes
    texts = [p["body"] for p in pushes if p["body"] in ("first", "second", "third")]
    assert texts == ["first", "second", "third"]
    last_message = max(i for i, p in enumerate(pushes) if p["body"] == "third")
    finished = titles(bark).index(bark_title(K.FINISHED, "chatty"))
    assert last_message < finished
    daemon.stop()
    assert kinds(daemon, run_id) == [K.MESSAGE, K.MESSAGE, K.MESSAGE, K.FINISHED]
    assert not list((daemon.state / "archive" / run_id / "msg").glob("*.json"))  # each sent once, then gone


# ------------------------------------------------------------ stalls


def assert_stall_then(daemon: DaemonProcess, run_id: str, stalled: dict[str, Any], why: str,
                      end: AlertKind) -> None:
    """A stall alert, its recovery, then ``end``; the journal says ``why`` it stalled."""
    assert "no progress" in stalled["body"]
    daemon.stop()
    assert kinds(daemon, run_id) == [K.STALLED, K.RECOVERED, end]
    assert why in (daemon.journal(run_id)[0].detail or "")


def test_frozen_process_stalls_recovers_and_a_later_death_still_alerts(
    daemon: DaemonProcess, bark: FakeBark
) -> None:
    with victim(daemon, "sleep-forever", "frozen", "--stall-timeout", "1") as v:
        run_id = v.ready()
        v.expect("RUNNING")
        v.signal(signal.SIGSTOP)
        stalled = wait_for_push(bark, K.STALLED, "frozen")
        v.signal(signal.SIGCONT)
        wait_for_push(bark, K.RECOVERED, "frozen")
        v.kill()
        wait_for_push(bark, K.KILLED, "frozen", signal=KILL)
    assert_stall_then(daemon, run_id, stalled, "the process is frozen", K.KILLED)


def test_hung_training_with_live_heartbeat_stalls_then_resumes(
    daemon: DaemonProcess, bark: FakeBark, tmp_path: Path
) -> None:
    resume = tmp_path / "resume"
    with victim(daemon, "progress-then-stall-then-resume", "hung", "--stall-timeout", "1",
                "--resume-file", str(resume)) as v:
        run_id = v.ready()
        stalled = wait_for_push(bark, K.STALLED, "hung")
        resume.touch()
        recovered = wait_for_push(bark, K.RECOVERED, "hung")
        v.wait()
        wait_for_push(bark, K.FINISHED, "hung")
    # The heartbeat never stopped: the recovery must not say it resumed.
    assert "heartbeat" not in recovered["body"].split("\n")[0] and "heartbeats" not in recovered["body"]
    assert_stall_then(daemon, run_id, stalled, "training is stuck", K.FINISHED)
    assert daemon.journal(run_id)[1].reason is None


# ------------------------------------------------------------ identity


def _fake_record(daemon: DaemonProcess, pid: int, start_ticks: int, boot_id: str) -> str:
    run_id = spool.new_run_id(pid)
    paths = spool.RunPaths(daemon.spool, run_id)
    safe_json.make_private_dir(paths.dir)
    record = spool.RunRecord(
        run_id=run_id, pid=pid, start_ticks=start_ticks, boot_id=boot_id, hostname="here",
        uid=os.getuid(), user="tester", cmdline=["train.py"], cwd="/", started=1.0, heartbeat_interval=10.0,
        name=f"fake-{run_id}",
    )
    safe_json.write_json(paths.run, record.to_dict())
    return run_id


@pytest.fixture
def bystander(child: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
    """A live process that is not the run any record names."""
    return child


def test_reused_pid_is_never_alive(
    daemon: DaemonProcess, bark: FakeBark, bystander: subprocess.Popen[bytes]
) -> None:
    ident = identity_of(bystander)
    run_id = _fake_record(daemon, bystander.pid, ident.start_ticks + 1, ident.boot_id)
    # Its process was never seen: an ending, not a claimed kill (the headline says so).
    wait_for(lambda: [t for t in titles(bark) if t.endswith(f"Ended (never seen running): fake-{run_id}")],
             30, what="the ending of a run never seen alive")
    assert bystander.poll() is None  # the pid's current owner is alive; the run is not
    daemon.stop()
    assert kinds(daemon, run_id) == [K.KILLED]


def test_record_from_another_boot_is_lost(
    daemon: DaemonProcess, bark: FakeBark, bystander: subprocess.Popen[bytes]
) -> None:
    ident = identity_of(bystander)
    run_id = _fake_record(daemon, bystander.pid, ident.start_ticks, "00000000-0000-4000-8000-000000000000")
    wait_for_push(bark, K.LOST, f"fake-{run_id}")
    daemon.stop()
    assert kinds(daemon, run_id) == [K.LOST]


# ------------------------------------------------------------ restarts


def test_restart_reconciles_every_run(daemon: DaemonProcess, bark: FakeBark, tmp_path: Path) -> None:
    resume = tmp_path / "resume-b"
    done = victim(daemon, "finish", "before")
    killed = victim(daemon, "sleep-forever", "killed-while-down")
    ends = victim(daemon, "progress-then-stall-then-resume", "ends-while-down", "--resume-file", str(resume))
    lives = victim(daemon, "sleep-forever", "outlives")
    try:
        ids = {v: v.ready() for v in (done, killed, ends, lives)}
        done.wait()
        wait_for_push(bark, K.FINISHED, "before")
        # Recorded as delivered (not just received): else a re-send after the kill is allowed.
        daemon.wait_log(f"delivered {ids[done]}.001.finished")
        killed.expect("RUNNING")
        lives.expect("RUNNING")

        daemon.kill()
        killed.kill()
        resume.touch()
        ends.wait()
        late = victim(daemon, "sleep-forever", "born-while-down")
        ids[late] = late.ready()
        late.expect("RUNNING")
        late.kill()

        daemon.start()
        push = wait_for_push(bark, K.KILLED, "killed-while-down")
        assert "died while the daemon was down" in push["body"]
        wait_for_push(bark, K.FINISHED, "ends-while-down")
        wait_for_push(bark, K.KILLED, "born-while-down")
        lives.kill()  # re-watched after the restart: its death is seen live
        wait_for_push(bark, K.KILLED, "outlives", signal=KILL)
    finally:
        for v in (done, killed, ends, lives):
            v.kill()
    daemon.stop()
    assert kinds(daemon, ids[done]) == [K.FINISHED]  # not alerted a second time
    assert titles(bark).count(bark_title(K.FINISHED, "before")) == 1
    assert kinds(daemon, ids[killed]) == [K.KILLED]
    assert kinds(daemon, ids[ends]) == [K.FINISHED]
    assert kinds(daemon, ids[lives]) == [K.KILLED]
    killed_alert = daemon.journal(ids[killed])[0]
    assert killed_alert.last_beat is not None and "last heartbeat" in (killed_alert.detail or "")


def test_daemon_killed_with_alerts_pending_delivers_after_restart(
    daemon: DaemonProcess, bark: FakeBark
) -> None:
    bark.fail("down")
    with victim(daemon, "finish", "pending-a") as a, victim(daemon, "exception", "pending-b") as b:
        a.ready()
        b.ready()
        a.wait()
        b.wait()
        # Both alerts decided and tried at least once (the fake drops the connection).
        wait_for(lambda: len(bark.received()) >= 2, 30, what="delivery attempts")
    daemon.kill()
    assert not bark.pushes
    bark.recover()
    daemon.start()
    wait_for_push(bark, K.FINISHED, "pending-a")
    wait_for_push(bark, K.CRASHED, "pending-b")


def test_webhook_down_for_a_while_then_up(daemon: DaemonProcess, bark: FakeBark) -> None:
    bark.fail("5xx")
    with victim(daemon, "finish", "patience") as v:
        v.ready()
        v.wait()
        wait_for(lambda: len(bark.received()) >= 3, 30, what="three failed attempts")
        assert not bark.pushes
        bark.recover()
        wait_for_push(bark, K.FINISHED, "patience")
    assert len(bark.pushes) == 1


def test_permanent_4xx_is_dead_lettered(daemon: DaemonProcess, bark: FakeBark) -> None:
    bark.fail("4xx")
    with victim(daemon, "finish", "doomed") as v:
        run_id = v.ready()
        v.wait()
    dead_dir = daemon.state / "outbox" / "dead"
    wait_for(lambda: list(dead_dir.glob("*.json")), 30, what="a dead letter")
    attempts = len(bark.received())
    assert daemon.stop() == 0
    [letter] = daemon.dead_letters()
    assert letter.run_id == run_id and letter.channel == "phone" and letter.reason
    assert attempts == 1  # a permanent failure is not retried
    assert not bark.pushes


# ------------------------------------------------------------ hostile spool


def test_hostile_spool_files_are_skipped_once_and_the_daemon_lives(
    daemon: DaemonProcess, bark: FakeBark, tmp_path: Path
) -> None:
    good = victim(daemon, "sleep-forever", "innocent")
    good_id = good.ready()
    good.expect("RUNNING")

    def bad_dir(suffix: str) -> Path:
        path = daemon.spool / f"20200101T000000-{suffix}-abcdef"
        path.mkdir(mode=0o700)
        return path

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "run.json").write_bytes((daemon.spool / good_id / "run.json").read_bytes())

    def put(path: Path, data: bytes) -> None:
        # Whole, as one version: a file read while half written is another
        # version of it, and would rightly be reported again.
        staged = elsewhere / path.parent.name
        staged.write_bytes(data)
        os.rename(staged, path)

    bad: dict[str, Path] = {}
    bad["malformed"] = bad_dir("1") / "run.json"
    put(bad["malformed"], b'{"v": 1, "run_id": ')
    bad["huge"] = bad_dir("2") / "run.json"
    put(bad["huge"], b'{"v": 1, "pad": "' + b"x" * (safe_json.MAX_FILE_BYTES + 10) + b'"}')
    bad["symlink"] = bad_dir("3") / "run.json"
    bad["symlink"].symlink_to(elsewhere / "run.json")
    bad["version"] = bad_dir("4") / "run.json"
    put(bad["version"], json.dumps({"v": 99, "run_id": "x"}).encode())
    bad["fifo"] = bad_dir("5") / "run.json"
    os.mkfifo(bad["fifo"])
    bad["dir-symlink"] = daemon.spool / "20200101T000000-6-abcdef"
    bad["dir-symlink"].symlink_to(elsewhere, target_is_directory=True)
    bad["final"] = daemon.spool / good_id / "final.json"
    put(bad["final"], b"not json at all")
    bad["message"] = daemon.spool / good_id / "msg" / "00000001.json"
    bad["message"].parent.mkdir(mode=0o700, exist_ok=True)
    put(bad["message"], b"[1, 2")

    # Two full rescans after the bad files exist: each problem is still logged once.
    liveness = daemon.spool / spool.DAEMON_FILE
    # Each rescan rewrites daemon.json (a new file, renamed into place).
    first = liveness.stat().st_mtime_ns
    wait_for(lambda: liveness.stat().st_mtime_ns > first, 30, what="a rescan")
    second = liveness.stat().st_mtime_ns
    wait_for(lambda: liveness.stat().st_mtime_ns > second, 30, what="another rescan")
    assert liveness.is_file()

    good.kill()
    wait_for_push(bark, K.KILLED, "innocent", signal=KILL)
    assert daemon.alive()
    log = daemon.log()
    for what, path in bad.items():
        shown = str(path)
        assert log.count(f"skipping {shown}:") == 1, f"{what}: {log}"
    daemon.stop()
    assert kinds(daemon, good_id) == [K.KILLED]  # the bad final.json did not make it "finished"


def test_shared_spool_accepts_runs_only_from_their_owners(
    tmp_path: Path, bark: FakeBark, bystander: subprocess.Popen[bytes]
) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to create files owned by another user")
    daemon = DaemonProcess(tmp_path, {"phone": {"type": "bark", "url": bark.key_url}})
    daemon.spool.mkdir(mode=0o700)
    os.chmod(daemon.spool, 0o1777)  # a shared spool: sticky and world-writable
    stranger = 54321
    ident = identity_of(bystander)
    # Owned by a stranger but claiming to be root's run of a root process.
    claims_root = _fake_record(daemon, bystander.pid, ident.start_ticks, ident.boot_id)
    for path in (daemon.spool / claims_root, daemon.spool / claims_root / "run.json"):
        os.chown(path, stranger, stranger)
    # Owned by the stranger and claiming the stranger, but naming root's process.
    not_their_process = _fake_record(daemon, bystander.pid, ident.start_ticks, ident.boot_id)
    record, _ = spool.read_run(daemon.spool / not_their_process / "run.json")
    record.uid = stranger
    safe_json.write_json(daemon.spool / not_their_process / "run.json", record.to_dict())
    for path in (daemon.spool / not_their_process, daemon.spool / not_their_process / "run.json"):
        os.chown(path, stranger, stranger)
    with daemon:
        with victim(daemon, "sleep-forever", "rightful") as v:
            own_id = v.ready()
            v.expect("RUNNING")
            bystander.kill()
            bystander.wait()
            v.kill()
            wait_for_push(bark, K.KILLED, "rightful", signal=KILL)
        log = daemon.log()
        daemon.stop()
    assert "shared spool" in log
    assert kinds(daemon, own_id) == [K.KILLED]
    assert kinds(daemon, claims_root) == []
    assert kinds(daemon, not_their_process) == []


# ------------------------------------------------------------ the daemon itself


def test_liveness_file_while_running_and_removed_on_clean_stop(daemon: DaemonProcess) -> None:
    liveness, st = spool.read_daemon_liveness(daemon.spool)
    assert liveness.pid == daemon.proc.pid
    assert ProcessIdentity(liveness.pid, liveness.start_ticks, liveness.boot_id).is_running()
    assert st.st_mode & 0o777 == 0o644  # every user's training process must read it
    notify = daemon.notify
    daemon.proc.send_signal(signal.SIGTERM)
    wait_for(lambda: "STOPPING=1" in notify.states, 30, what="STOPPING=1")
    assert daemon.proc.wait(30) == 0
    assert not (daemon.spool / spool.DAEMON_FILE).exists()


def test_second_daemon_on_the_same_state_refuses(daemon: DaemonProcess, tmp_path: Path) -> None:
    other = DaemonProcess(tmp_path / "other", {"screen": {"type": "console"}}, spool=daemon.spool,
                          state=daemon.state)
    other.start(wait_ready=False)
    assert other.proc.wait(30) == 1
    assert "another daemon" in other.log()
    assert daemon.alive()


def test_archived_runs_are_pruned_after_retention(tmp_path: Path, bark: FakeBark) -> None:
    with DaemonProcess(tmp_path, {"phone": {"type": "bark", "url": bark.key_url}}, retention="1s") as daemon:
        with victim(daemon, "finish", "short-lived") as v:
            run_id = v.ready()
            v.wait()
        wait_for_push(bark, K.FINISHED, "short-lived")
        # Archived (moved out of the spool, on a later loop pass than the alert), then pruned.
        archived = daemon.state / "archive" / run_id
        wait_for(lambda: not (daemon.spool / run_id).exists() and not archived.exists(), 30,
                 what="the run archived and the archive pruned")
        daemon.stop()
    assert daemon.journal(run_id) == []  # the journal went with it


# ------------------------------------------------------------ real SwanLab (offline)


def swanlab_victim(daemon: DaemonProcess, env_var: Optional[str], mode: str, name: str, *args: str) -> Victim:
    python = swanlab_python(env_var)
    return Victim.swanlab(python, daemon.tmp, mode, "--name", name, "--heartbeat", HEARTBEAT, *args,
                          spool_dir=daemon.spool).start()


@pytest.mark.parametrize("env_var", swanlab_params())
def test_swanlab_run_killed_with_sigkill(
    daemon: DaemonProcess, bark: FakeBark, env_var: Optional[str]
) -> None:
    with swanlab_victim(daemon, env_var, "sleep-forever", "swan-nine") as v:
        run_id = v.ready()
        v.expect("RUNNING")
        v.kill()
        wait_for_push(bark, K.KILLED, "swan-nine", signal=KILL)
    daemon.stop()
    assert kinds(daemon, run_id) == [K.KILLED]


@pytest.mark.parametrize("mode", ["finish", "exception"])
def test_swanlab_run_ends(daemon: DaemonProcess, bark: FakeBark, mode: str) -> None:
    expected = {"finish": K.FINISHED, "exception": K.CRASHED}[mode]
    with swanlab_victim(daemon, None, mode, f"swan-{mode}") as v:
        run_id = v.ready()
        v.wait()
        wait_for_push(bark, expected, f"swan-{mode}")
    daemon.stop()
    assert kinds(daemon, run_id) == [expected]


def test_swanlab_dropin_bark_gets_the_kill_and_the_messages(daemon: DaemonProcess, tmp_path: Path) -> None:
    """The drop-in callback's own Bark (an inline channel) receives what the daemon decides."""
    with FakeBark() as own:
        args = json.dumps({"url": own.url, "key": own.key})
        with swanlab_victim(daemon, None, "sleep-forever", "swan-dropin", "--dropin", "bark",
                            "--dropin-args", args, "--send", "hello from swanlab") as v:
            run_id = v.ready()
            v.expect("RUNNING")
            record = v.record()
            run_name = record.name or record.labels.get("experiment") or run_id  # as alerts name it
            wait_for(lambda: any(p.get("body") == "hello from swanlab" for p in own.pushes), 30,
                     what="the message on the drop-in's Bark")
            v.kill()
            wait_for_push(own, K.KILLED, run_name, signal=KILL, lang="zh")  # drop-ins speak zh
    daemon.stop()
    assert kinds(daemon, run_id) == [K.MESSAGE, K.KILLED]


def test_a_rewritten_record_adds_channels_but_never_another_process(
    tmp_path: Path, child: subprocess.Popen[bytes]
) -> None:
    """A second drop-in joining a run rewrites its record: its channel is
    added. A rewrite naming another process is ignored, with its channels."""
    with FakeBark() as first, FakeBark() as joined, FakeBark() as forged, DaemonProcess(
        tmp_path, {"screen": {"type": "console"}}, log_level="debug"
    ) as daemon:
        paths, record = hand_written_record(daemon.spool, child.pid, "joined-run",
                                            channels=[{"type": "bark", "url": first.key_url}])
        safe_json.write_json(paths.run, record)
        run_id = paths.run_id
        daemon.wait_log(f"tracking {run_id}")
        other = dict(record, pid=os.getpid(), channels=[{"type": "bark", "url": forged.key_url}])
        safe_json.write_json(paths.run, other)
        daemon.wait_log("rewritten to name another process, owner or directory; ignored")
        both = [{"type": "bark", "url": first.key_url}, {"type": "bark", "url": joined.key_url}]
        safe_json.write_json(paths.run, dict(record, channels=both))
        daemon.wait_log(f"run {run_id}: record rewritten, 2 channel(s) now")
        child.kill()
        child.wait()
        wait_for_push(first, K.KILLED, "joined-run", signal=KILL)
        wait_for_push(joined, K.KILLED, "joined-run", signal=KILL)
    assert forged.pushes == []


# ------------------------------------------------------------ the OOM killer


def test_oom_killer_is_named_as_the_cause(daemon: DaemonProcess, bark: FakeBark, memory_cgroup: Path) -> None:
    procs = memory_cgroup / "cgroup.procs"

    def enter_cage() -> None:
        with open(procs, "w") as f:
            f.write(str(os.getpid()))

    script = Path(__file__).parent / "daemon_victims" / "oom_victim.py"
    v = Victim(sys.executable, script, ["hog"], daemon.tmp, spool_dir=daemon.spool, preexec_fn=enter_cage)
    v.start()
    try:
        run_id = v.ready()
        assert v.wait() == -signal.SIGKILL
        push = wait_for_push(bark, K.KILLED, "hog", detail="OOM killer")
    finally:
        v.kill()
    assert "OOM" in push["title"] or "OOM" in push["body"]
    daemon.stop()
    [alert] = daemon.journal(run_id)
    assert alert.kind is K.KILLED and "OOM killer" in (alert.detail or "")
