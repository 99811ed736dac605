"""Runs in other PID namespaces (containers), with the kernel's own namespaces.

Each namespaced run is started under ``unshare --pid --fork --mount-proc``:
it sees itself as pid 1 and writes that into its record, with its namespace.
The daemon (on the host, or itself in a narrower namespace) must find the
process, watch it, and never call it killed when it cannot see it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Optional

import pytest

from sentinel.daemon import status
from sentinel.formats import safe_json, spool
from sentinel.formats.daemon_file import live_daemon
from sentinel.host import pidns
from sentinel.host.procid import start_ticks, thread_start_ticks
from sentinel.model.alerts import AlertKind
from tests.daemon_harness import DaemonProcess, wait_for_push
from tests.fakes import FakeBark
from tests.victims.harness import ROOT, Victim, swanlab_python
from tests.waiting import wait_for

K = AlertKind
HEARTBEAT = "0.1"
KILL = "SIGKILL"
UNSHARE = ["unshare", "--pid", "--fork", "--mount-proc"]

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                                reason="PID namespaces need root and unshare")


def namespaced(v: Victim, wrapper: Optional[list[str]] = None) -> Victim:
    v.argv = [*(UNSHARE if wrapper is None else wrapper), *v.argv]
    return v.start()


def swanlab_in_namespace(daemon: DaemonProcess, mode: str, name: str, *args: str) -> Victim:
    v = Victim.swanlab(swanlab_python(None), daemon.tmp, mode, "--name", name, "--heartbeat", HEARTBEAT,
                       *args, spool_dir=daemon.spool)
    return namespaced(v)


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def inner_process(wrapper_pid: int) -> int:
    """The host pid of the process ``unshare --fork`` started (pid 1 of its namespace)."""
    return wait_for(lambda: next(iter(children(wrapper_pid)), None), 10, what="unshare's child")


def kinds(daemon: DaemonProcess, run_id: str) -> list[AlertKind]:
    return [a.kind for a in daemon.journal(run_id)]


def record_of(v: Victim) -> spool.RunRecord:
    record, _ = spool.read_run(v.paths.run)
    return record


# ------------------------------------------------------------ finding a process by its namespace


def test_resolve_finds_a_namespaced_process_and_its_threads(tmp_path: Path) -> None:
    script = ("import os, threading, sys\n"
              "t = threading.Thread(target=sys.stdin.read, daemon=True); t.start()\n"
              "st = os.stat('/proc/self/ns/pid')\n"
              "print(os.getpid(), t.native_id, f'{st.st_dev}:{st.st_ino}', flush=True)\n"
              "sys.stdin.read()\n")
    proc = subprocess.Popen([*UNSHARE, sys.executable, "-c", script], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        inner, inner_tid, ns = proc.stdout.readline().split()
        host = inner_process(proc.pid)
        ticks = start_ticks(host)
        assert ticks is not None and int(inner) == 1 and ns != pidns.namespace_of()
        found = pidns.resolve(ns, int(inner), ticks)
        assert found is not None and found.pid == host
        if found.pidfd is not None:
            os.close(found.pidfd)
        others = [int(t) for t in os.listdir(f"/proc/{host}/task") if int(t) != host]
        thread_ticks = thread_start_ticks(host, others[0])
        assert thread_ticks is not None
        host_tid = pidns.map_thread(host, int(inner_tid), thread_ticks)
        assert host_tid is not None and host_tid != int(inner_tid)
        # The same numbers in another namespace, or another start time, name nothing.
        assert pidns.resolve(pidns.namespace_of(), int(inner), ticks) is None
        assert pidns.resolve(ns, int(inner), ticks + 1) is None
    finally:
        proc.kill()
        proc.wait()


def test_a_bad_namespace_in_a_record_rejects_it() -> None:
    record = spool.RunRecord(run_id=spool.new_run_id(1), pid=1, start_ticks=5, boot_id="b", hostname="h",
                             uid=0, user="u", cmdline=[], cwd="/", started=1.0, heartbeat_interval=1.0,
                             pidns="4:4026532176")
    assert spool.RunRecord.from_dict(record.to_dict()).pidns == "4:4026532176"
    for bad in ("pid:[4026532176]", 7, "1:2:3"):
        with pytest.raises(safe_json.SpoolFormatError, match="pidns"):
            spool.RunRecord.from_dict({**record.to_dict(), "pidns": bad})


# ------------------------------------------------------------ a daemon on the host


def test_namespaced_swanlab_run_lives_quietly_then_its_kill_is_one_alert(
        daemon: DaemonProcess, bark: FakeBark) -> None:
    with swanlab_in_namespace(daemon, "sleep-forever", "ns-kill") as v:
        run_id = v.ready()
        record = record_of(v)
        host = inner_process(v.pid)
        assert record.pid == 1 and record.pidns and record.pidns != pidns.namespace_of()
        daemon.wait_log(f"run {run_id}: pid 1 of PID namespace {record.pidns} is pid {host} here")
        # The thread-pidfd path is the one used: the log says so.
        daemon.wait_log("thread pidfd(s) (the thread-pidfd path, for a containerised run)")
        v.expect("RUNNING")
        assert bark.pushes == []  # alive: nothing said (the false "Killed" at admission is gone)
        [shown] = [r for r in status.collect(daemon.spool).runs if r.run_id == run_id]
        assert shown.alive and shown.state == "running" and not shown.unwatchable  # found from the host
        os.kill(host, 9)
        wait_for_push(bark, K.KILLED, "ns-kill", signal=KILL)
        v.wait()
    daemon.stop()
    assert kinds(daemon, run_id) == [K.KILLED]


@pytest.mark.parametrize("mode", ["finish", "exception"])
def test_namespaced_swanlab_run_ends_with_one_alert(daemon: DaemonProcess, bark: FakeBark, mode: str) -> None:
    expected = {"finish": K.FINISHED, "exception": K.CRASHED}[mode]
    with swanlab_in_namespace(daemon, mode, f"ns-{mode}") as v:
        run_id = v.ready()
        v.wait()
        push = wait_for_push(bark, expected, f"ns-{mode}")
    daemon.stop()
    assert kinds(daemon, run_id) == [expected]
    if mode == "exception":
        assert "boom from victim" in push["body"]


def test_namespaced_run_killed_while_the_daemon_is_down_is_reported_once_at_restart(
        daemon: DaemonProcess, bark: FakeBark) -> None:
    with swanlab_in_namespace(daemon, "sleep-forever", "ns-down") as v:
        run_id = v.ready()
        host = inner_process(v.pid)
        daemon.wait_log(f"is pid {host} here")
        daemon.stop()
        os.kill(host, 9)
        v.wait()
        daemon.start()
        wait_for_push(bark, K.KILLED, "ns-down")
    daemon.stop()
    daemon.start()  # a second restart says nothing more
    daemon.wait_log("start-up:")
    daemon.stop()
    assert kinds(daemon, run_id) == [K.KILLED]
    assert sum(1 for p in bark.pushes if "ns-down" in p.get("title", "")) == 1


def plant(daemon: DaemonProcess, record: spool.RunRecord, uid: int) -> None:
    """``record`` as user ``uid`` would leave it: made beside the spool, owned by them, then moved in
    (the daemon must never see it owned by root for a moment)."""
    staging = daemon.tmp / "staging"
    staging.mkdir(exist_ok=True)
    paths = spool.RunPaths(staging, record.run_id)
    safe_json.make_private_dir(paths.dir)
    safe_json.write_json(paths.run, record.to_dict())
    for path in (paths.dir, paths.run):
        os.chown(path, uid, uid)
    os.rename(paths.dir, daemon.spool / record.run_id)


def test_a_record_naming_another_users_namespaced_process_is_never_watched_as_theirs(
        daemon: DaemonProcess, bark: FakeBark) -> None:
    stranger = 54321
    with swanlab_in_namespace(daemon, "sleep-forever", "ns-victim") as v:
        run_id = v.ready()
        host = inner_process(v.pid)
        daemon.wait_log(f"is pid {host} here")
        record = record_of(v)
        # A stranger's run naming root's containerised process (namespace, pid 1, start time).
        forged = spool.RunRecord(**{**record.__dict__, "run_id": spool.new_run_id(1), "uid": stranger,
                                    "name": "forged", "watch_threads": []})
        plant(daemon, forged, stranger)
        daemon.wait_log(f"run {forged.run_id} names pid 1 of PID namespace")
        os.kill(host, 9)
        wait_for_push(bark, K.KILLED, "ns-victim", signal=KILL)
        v.wait()
    daemon.stop()
    assert kinds(daemon, run_id) == [K.KILLED]
    assert kinds(daemon, forged.run_id) == []  # not killed, not anything: its owner has no such process


def test_a_thousand_forged_namespaced_records_do_not_keep_another_run_from_its_alert(
        daemon: DaemonProcess, bark: FakeBark) -> None:
    stranger = 54321
    with swanlab_in_namespace(daemon, "sleep-forever", "ns-fair") as v:
        run_id = v.ready()
        host = inner_process(v.pid)
        record = record_of(v)
        for i in range(1000):  # a stranger's flood, all naming root's process in its namespace
            forged = spool.RunRecord(**{**record.__dict__, "run_id": spool.new_run_id(1 + i), "uid": stranger,
                                        "name": f"flood{i}", "watch_threads": []})
            plant(daemon, forged, stranger)
        daemon.wait_log(f"is pid {host} here")
        wait_for(lambda: daemon.log().count("not the run's owner uid") >= 1000, 60,
                 what="every forged record refused")
        os.kill(host, 9)
        wait_for_push(bark, K.KILLED, "ns-fair", signal=KILL)
        v.wait()
    daemon.stop()
    assert kinds(daemon, run_id) == [K.KILLED]
    assert len(bark.pushes) == 1


def test_a_namespaced_record_of_an_earlier_boot_is_lost_not_killed(
        daemon: DaemonProcess, bark: FakeBark) -> None:
    run_id = spool.new_run_id(1)
    paths = spool.RunPaths(daemon.spool, run_id)
    safe_json.make_private_dir(paths.dir)
    record = spool.RunRecord(run_id=run_id, pid=1, start_ticks=1234,
                             boot_id="00000000-0000-4000-8000-000000000000", hostname="here", uid=0,
                             user="root", cmdline=["train.py"], cwd="/",
                             started=1.0, heartbeat_interval=10.0, name="old-boot", pidns="4:4026532999")
    safe_json.write_json(paths.run, record.to_dict())
    wait_for_push(bark, K.LOST, "old-boot")
    daemon.stop()
    assert kinds(daemon, run_id) == [K.LOST]


def test_a_namespaced_recorder_sees_the_host_daemon_watching(daemon: DaemonProcess) -> None:
    probe = ("import sys; from pathlib import Path; from sentinel.formats.daemon_file import daemon_alive; "
             "print(daemon_alive(Path(sys.argv[1])))")
    env = dict(os.environ, PYTHONPATH=str(ROOT))

    def ask() -> str:
        return subprocess.run([*UNSHARE, sys.executable, "-c", probe, str(daemon.spool)], env=env,
                              capture_output=True, text=True, check=True).stdout.strip()

    assert ask() == "True"  # its pid means nothing in there: the fresh file says it
    daemon.stop()
    assert ask() == "False"


# ------------------------------------------------------------ a daemon in a narrower namespace


def test_a_daemon_that_cannot_see_the_run_calls_it_unwatchable_then_lost_never_killed(
        tmp_path: Path, bark: FakeBark) -> None:
    daemon = DaemonProcess(tmp_path, {"phone": {"type": "bark", "url": bark.key_url}})
    daemon.wrapper = list(UNSHARE)  # the daemon in a container without hostPID
    with daemon:
        v = Victim.watch(tmp_path, "sleep-forever", "--name", "host-run", "--heartbeat", HEARTBEAT,
                         "--stall-timeout", "1", spool_dir=daemon.spool).start()
        with v:
            run_id = v.ready()
            daemon.wait_log(f"run {run_id}: pid {v.pid} of PID namespace")
            daemon.wait_log("unwatchable")
            liveness = wait_for(lambda: _unwatchable(daemon.spool, run_id), 30,
                                what="the run listed as unwatchable in daemon.json")
            assert liveness.pidns != pidns.namespace_of()
            status = subprocess.run([sys.executable, "-m", "sentinel", "status", "--json",
                                     "--spool", str(daemon.spool)], capture_output=True, text=True,
                                    env=dict(os.environ, PYTHONPATH=str(ROOT)))
            assert '"unwatchable": true' in status.stdout, status.stdout + status.stderr
            assert bark.pushes == []
            v.kill()
            wait_for_push(bark, K.LOST, "host-run")
        daemon.kill()  # SIGKILL to its process group: the namespace goes with it
    assert kinds(daemon, run_id) == [K.LOST]
    assert not any("Killed" in p.get("title", "") for p in bark.pushes)


def test_an_unwatchable_run_that_stalled_and_then_died_is_lost(tmp_path: Path, bark: FakeBark) -> None:
    daemon = DaemonProcess(tmp_path, {"phone": {"type": "bark", "url": bark.key_url}})
    daemon.wrapper = list(UNSHARE)
    with daemon:
        v = Victim.watch(tmp_path, "stall", "--name", "hung", "--heartbeat", HEARTBEAT,
                         "--stall-timeout", "1", spool_dir=daemon.spool).start()
        with v:
            run_id = v.ready()
            v.expect("STALLED")
            wait_for_push(bark, K.STALLED, "hung")  # heartbeats go on: stalled, not lost
            v.kill()
            wait_for_push(bark, K.LOST, "hung")
        daemon.kill()
    assert kinds(daemon, run_id) == [K.STALLED, K.LOST]


def _unwatchable(spool_dir: Path, run_id: str) -> Optional[spool.DaemonLiveness]:
    try:
        record, _ = spool.read_daemon_liveness(spool_dir)
    except (OSError, safe_json.SpoolFormatError):
        return None
    return record if run_id in record.unwatchable else None


def test_sidecar_daemon_and_run_in_one_namespace_work_as_on_a_host(tmp_path: Path, bark: FakeBark) -> None:
    daemon = DaemonProcess(tmp_path, {"phone": {"type": "bark", "url": bark.key_url}})
    daemon.wrapper = list(UNSHARE)
    with daemon:
        assert daemon.proc is not None
        inner_daemon = inner_process(daemon.proc.pid)
        v = Victim.watch(tmp_path, "sleep-forever", "--name", "sidecar", "--heartbeat", HEARTBEAT,
                         spool_dir=daemon.spool)
        # The run joins the daemon's namespace (a pod's shared PID namespace).
        with namespaced(v, ["nsenter", "--target", str(inner_daemon), "--pid", "--mount"]):
            run_id = v.ready()
            v.expect("RUNNING")
            host = inner_process(v.pid)
            assert record_of(v).pidns == pidns.namespace_of(inner_daemon)
            assert live_daemon(daemon.spool) is not None
            os.kill(host, 9)
            wait_for_push(bark, K.KILLED, "sidecar", signal=KILL)
        assert "of PID namespace" not in daemon.log()  # the old path: no lookup needed
        daemon.kill()
    assert kinds(daemon, run_id) == [K.KILLED]


# ------------------------------------------------------------ a torchrun job in one container


def host_pid_in(namespace: str, inner: int) -> Optional[int]:
    """The host pid of pid ``inner`` of PID namespace ``namespace``."""
    for name in os.listdir("/proc"):
        if name.isdigit() and pidns.namespace_of(int(name)) == namespace:
            nspids = pidns.ns_pids(int(name))
            if nspids and nspids[-1] == inner:
                return int(name)
    return None


def test_torchrun_ranks_in_one_namespace_are_found_and_their_kill_is_one_alert(
        daemon: DaemonProcess, bark: FakeBark) -> None:
    from tests import torch_jobs

    python = torch_jobs.torch_python_path()
    if python is None:
        pytest.skip("no python with torch (tests/run.py builds .venv-torch)")
    job = torch_jobs.TorchJob(daemon, "sleep", "--name", "ns-job", python=python)
    job.victim.argv = [*UNSHARE, *job.victim.argv]
    with job:
        job.victim.expect("RUNNING")
        torch_jobs.watching_siblings(daemon, 3)
        record, _ = spool.read_run(spool.RunPaths(daemon.spool, job.run_id).run)
        rank3 = host_pid_in(record.pidns, job.ranks[3])
        assert rank3 is not None and rank3 != job.ranks[3]
        os.kill(rank3, 9)
        job.victim.wait(120)
        wait_for_push(bark, K.KILLED, "ns-job", signal=KILL)
    daemon.stop()
    [alert] = daemon.journal(job.run_id)
    assert alert.kind is K.KILLED and alert.signal == KILL
    assert "rank 3 " in (alert.detail or "")
