"""Evidence in alerts: where a stalled run hangs, which frame crashed.

Real victims under a real daemon (sentinel.watch and SwanLab, latest and
0.7.20): the daemon signals the stalled process, reads the stacks its
faulthandler wrote into the run directory and names the frame; a SIGSEGV
names the function that crashed. Hostile run directories (a symlinked or
huge dump file) get nothing out of the daemon. The parser is fed dumps that
a real faulthandler wrote.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Optional

import pytest

from sentinel.channels.plain import plain_text
from sentinel.daemon.native_faults import NativeFaults, parse_line
from sentinel.daemon.run_reader import ProblemLog, RunReader, TrackedRun
from sentinel.formats import evidence, live_file, spool
from sentinel.host.procid import ProcessIdentity
from sentinel.model.alerts import Alert, AlertKind
from sentinel.training import stack_dumps
from sentinel.training.recorder import Recorder
from sentinel.training.swanlab_log_hook import LogHook
from tests.daemon_harness import DaemonProcess, wait_for_push
from tests.fakes import FakeBark
from tests.victims.harness import Victim, swanlab_params, swanlab_python
from tests.waiting import wait_for

K = AlertKind
HEARTBEAT = "0.1"


def _victim(daemon: DaemonProcess, flavour: str, mode: str, name: str,
            env: Optional[dict[str, str]] = None) -> Victim:
    # SwanLab's init alone may take over a second here: a shorter timeout would stall in it.
    stall_timeout = "1" if flavour == "watch" else "4"
    common = (mode, "--name", name, "--heartbeat", HEARTBEAT, "--stall-timeout", stall_timeout,
              "--resume-file", str(daemon.tmp / f"go-{name}"))
    if flavour == "watch":
        return Victim.watch(daemon.tmp, *common, spool_dir=daemon.spool, env=env).start()
    return Victim.swanlab(swanlab_python(flavour or None), daemon.tmp, *common, spool_dir=daemon.spool,
                          env=env).start()


def _watched(daemon: DaemonProcess, pid: int) -> None:
    """Wait until the daemon holds a pidfd of ``pid`` (its /proc fdinfo says)."""
    assert daemon.proc is not None
    fdinfo = Path(f"/proc/{daemon.proc.pid}/fdinfo")

    def held() -> bool:
        for entry in fdinfo.iterdir():
            try:
                if f"Pid:\t{pid}\n" in entry.read_text():
                    return True
            except OSError:
                continue
        return False

    wait_for(held, 30, what=f"the daemon to watch pid {pid}")


FLAVOURS = [pytest.param("watch", id="watch"),
            *[p for p in swanlab_params() if p.id in ("swanlab-latest", "swanlab-0.7.20")]]


def _journal(daemon: DaemonProcess, run_id: str) -> list[Alert]:
    daemon.stop()
    return daemon.journal(run_id)


# ------------------------------------------------------------ where it hangs


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_stall_alert_names_the_frame_it_waits_in(daemon: DaemonProcess, bark: FakeBark, flavour: str) -> None:
    name = f"hang-{flavour or 'latest'}"
    with _victim(daemon, flavour, "wait-for-peer", name) as v:
        run_id = v.ready()
        assert v.record().stack_signal == evidence.STACK_SIGNAL_NAME
        v.expect("STALLED")
        # SwanLab's init may stall first (named in its own frame): the stall that matters is this one.
        named = "Where: wait_for_peer (_common.py:"
        stalled = wait_for(lambda: next((p for p in bark.pushes if named in p.get("body", "")), None), 30,
                           what="a stall naming wait_for_peer")
        # The signal did not hurt it: it resumes and finishes as it would have.
        (daemon.tmp / f"go-{name}").touch()
        wait_for_push(bark, K.RECOVERED, name)
        assert v.wait() == 0, v.output()
        wait_for_push(bark, K.FINISHED, name)
    alerts = _journal(daemon, run_id)
    assert [a.kind for a in alerts][-3:] == [K.STALLED, K.RECOVERED, K.FINISHED]
    stall = alerts[-3]
    assert stall.where is not None and stall.where.startswith("wait_for_peer (_common.py:")
    assert stall.stacks is not None and stall.stacks.startswith("main thread (most recent call first):")
    assert "in wait_for_peer" in stall.stacks and "threading.py" in stall.stacks
    assert stall.evidence_missing is None
    # E-mail carries every thread's stack; a push carries the frame only.
    assert "in wait_for_peer" in plain_text(stall, "en", 20000, stacks=True)
    assert "in wait_for_peer" not in stalled["body"]


@pytest.mark.parametrize("hostile", ["symlink", "huge", "fifo"])
def test_hostile_dump_files_get_nothing_out_of_the_daemon(
    daemon: DaemonProcess, bark: FakeBark, tmp_path: Path, hostile: str
) -> None:
    secret = tmp_path / "not-yours.txt"
    secret.write_text('Current thread 0x1 (most recent call first):\n  File "x", line 1 in SECRET_FRAME\n')
    name = f"hostile-{hostile}"
    with _victim(daemon, "watch", "wait-for-peer", name) as v:
        run_id = v.ready()
        dump = v.paths.dir / evidence.STACKS_FILE
        dump.unlink()  # the recorder keeps writing into its open (now unlinked) file
        if hostile == "symlink":
            dump.symlink_to(secret)
        elif hostile == "huge":
            with open(dump, "wb") as f:
                f.truncate(1 << 30)  # sparse: 1 GiB of nothing
        else:
            os.mkfifo(dump)
        stalled = wait_for_push(bark, K.STALLED, name)
        v.kill()
        wait_for_push(bark, K.KILLED, name, signal="SIGKILL")
    stall = _journal(daemon, run_id)[0]
    assert stall.where is None and stall.stacks is None
    assert "SECRET_FRAME" not in stalled["body"]
    expected = {"symlink": "a symlink", "huge": "too large", "fifo": "not a regular file"}[hostile]
    assert stall.evidence_missing is not None and expected in stall.evidence_missing
    assert "Stacks: not available:" in stalled["body"]


def test_a_process_without_stack_dumps_says_why(daemon: DaemonProcess, bark: FakeBark) -> None:
    """A record that does not say it armed the signal is never signalled
    (the signal would be fatal to it); the alert says why there are no stacks."""
    name = "unarmed"
    with _victim(daemon, "watch", "wait-for-peer", name, env={stack_dumps.ENV_SWITCH: "0"}) as v:
        run_id = v.ready()
        assert v.record().stack_signal is None
        stalled = wait_for_push(bark, K.STALLED, name)
        (daemon.tmp / f"go-{name}").touch()
        assert v.wait() == 0, v.output()  # alive: nothing was sent to it
        wait_for_push(bark, K.FINISHED, name)
    stall = _journal(daemon, run_id)[0]
    assert stall.where is None
    assert "did not arm stack dumps" in (stall.evidence_missing or "")
    assert "did not arm stack dumps" in stalled["body"]


# ------------------------------------------------------------ which frame crashed


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_segfault_alert_names_the_crashing_function(daemon: DaemonProcess, bark: FakeBark,
                                                    flavour: str) -> None:
    name = f"segv-{flavour or 'latest'}"
    with _victim(daemon, flavour, "segfault-in-function", name) as v:
        run_id = v.ready()
        v.expect("RUNNING")
        _watched(daemon, v.pid)
        (daemon.tmp / f"go-{name}").touch()
        assert v.wait() == -signal.SIGSEGV
        crashed = wait_for_push(bark, K.KILLED, name, signal="SIGSEGV")
    assert "Where: crash_in_native_code (_common.py:" in crashed["body"]
    alert = _journal(daemon, run_id)[-1]
    assert alert.where is not None and alert.where.startswith("crash_in_native_code (")
    assert alert.stacks is not None and alert.stacks.startswith("Fatal Python error: Segmentation fault")


def test_segfault_alert_names_the_native_library_from_the_kernel_log(daemon: DaemonProcess,
                                                                     bark: FakeBark) -> None:
    """The kernel logs its own ``segfault at ... in libc.so.6[...]`` line for this
    crash, rate-limited; the test writes the same real line too, naming the victim's
    pid, so the library is there whatever the rate limit dropped."""
    if os.geteuid() != 0:
        pytest.skip("needs root to write a kernel log line")
    with _victim(daemon, "watch", "segfault-in-function", "segv-lib") as v:
        run_id = v.ready()
        v.expect("RUNNING")
        _watched(daemon, v.pid)
        with open("/dev/kmsg", "w") as kmsg:
            kmsg.write(f"python[{v.pid}]: segfault at 0 ip 00007f354d574219 sp 00007ffde21fc8b8 error 4 in "
                       "libc.so.6[156219,7f354d444000+156000] likely on CPU 0 (core 0, socket 0)\n")
        (daemon.tmp / "go-segv-lib").touch()
        assert v.wait() == -signal.SIGSEGV
        crashed = wait_for_push(bark, K.KILLED, "segv-lib", signal="SIGSEGV")
    assert re.search(r"Where: crash_in_native_code \(_common\.py:\d+\) in libc\.so\.6", crashed["body"])
    alert = _journal(daemon, run_id)[-1]
    assert re.fullmatch(r"crash_in_native_code \(_common\.py:\d+\) in libc\.so\.6", alert.where or "")


def test_a_fault_line_counts_only_for_its_pid_since_it_started() -> None:
    assert parse_line("python[20598]: segfault at 0 ip 00007f354d574219 sp 00007ffde21fc8b8 error 4 in "
                      "libc.so.6[156219,7f354d444000+156000] likely on CPU 0") == (20598, "libc.so.6")
    assert parse_line("traps: python[123] general protection fault ip:7f0 sp:7ff error:0 in "
                      "/opt/x/libnccl.so.2[7f0000+2000]") == (123, "libnccl.so.2")
    assert parse_line("python[9]: segfault at 0 ip 0 sp 0 error 4") is None  # no mapping named
    faults = NativeFaults()
    me = ProcessIdentity.current()
    started = me.start_ticks / os.sysconf("SC_CLK_TCK")
    line = f"python[{me.pid}]: segfault at 0 ip 1 sp 2 error 4 in libbad.so[1+2]"
    faults.feed(f"3,1,{int((started - 5) * 1e6)},-;{line}".encode())  # logged before it started
    assert faults.library_of(me) is None
    faults.feed(f"3,2,{int((started + 5) * 1e6)},-;{line}".encode())
    assert faults.library_of(me) == "libbad.so"


# ------------------------------------------------------------ the parser, on real dumps


def _real_dump(tmp_path: Path, body: str) -> bytes:
    """What CPython's faulthandler writes for ``body`` (run in a child)."""
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(body))
    out = tmp_path / "dump.txt"
    subprocess.run([sys.executable, str(script), str(out)], check=False, timeout=60,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return out.read_bytes()


def test_parser_reads_a_real_all_threads_dump(tmp_path: Path) -> None:
    raw = _real_dump(tmp_path, """
        import faulthandler, sys, threading
        out = open(sys.argv[1], "w")
        ready = threading.Event()
        def helper_loop():
            ready.set()
            threading.Event().wait(30)
        threading.Thread(target=helper_loop, daemon=True).start()
        ready.wait()
        def all_reduce():
            faulthandler.dump_traceback(file=out, all_threads=True)
        all_reduce()
    """)
    dump = evidence.parse(raw)
    assert len(dump.threads) == 2
    main = dump.main
    assert main is not None and main.where is not None
    assert main.where.short.startswith("all_reduce (train.py:")
    helper = next(t for t in dump.threads if t is not main)
    assert helper.where is not None and helper.where.function == "helper_loop"
    assert dump.text().startswith("main thread (most recent call first):")


def test_parser_masks_secrets_and_control_characters() -> None:
    raw = (b'Current thread 0x00007f (most recent call first):\n'
           b'  File "/srv/run?token=hunter2hunter2/train.py", line 3 in step\x1b[31m\n'
           b'  File "/srv/train.py", line 9 in <module>\n')
    dump = evidence.parse(raw)
    text = dump.text()
    assert "hunter2hunter2" not in text and "\x1b" not in text
    assert dump.main is not None and dump.main.where is not None
    assert dump.main.where.function == "step\\x1b[31m"


def test_parser_ignores_garbage_and_caps_what_it_reads() -> None:
    frame = b'  File "/a.py", line 1 in f\n'
    raw = b"Current thread 0x1 (most recent call first):\n" + frame * 100_000 + b"\x00\xff garbage\n"
    dump = evidence.parse(raw)
    assert len(dump.threads) == 1
    assert len(dump.threads[0].frames) < evidence.MAX_DUMP_BYTES // len(frame) + 1
    assert len(dump.text()) <= evidence.MAX_STACKS_CHARS
    assert evidence.parse(b"\x00\xff nothing here").threads == []


def test_reader_refuses_a_dump_of_another_owner(tmp_path: Path) -> None:
    """In any spool, a dump file must be the run owner's own."""
    spool_dir = tmp_path / "spool"
    run_id = spool.new_run_id(os.getpid())
    run_dir = spool_dir / run_id
    run_dir.mkdir(parents=True)
    (run_dir / evidence.STACKS_FILE).write_text("Thread 0x1 (most recent call first):\n")
    os.chown(run_dir / evidence.STACKS_FILE, 65534, 65534)
    record = spool.RunRecord(run_id=run_id, pid=os.getpid(), start_ticks=0, boot_id="", hostname="", uid=0,
                             user="", cmdline=[], cwd="", started=0.0, heartbeat_interval=1.0)
    run = TrackedRun(record=record, paths=spool.RunPaths(spool_dir, run_id), owner_uid=os.getuid())
    reader = RunReader(spool_dir, False, ProblemLog())
    raw, why = reader.read_dump(run, evidence.STACKS_FILE, 0, evidence.MAX_DUMP_BYTES)
    assert raw == b"" and "not the run owner's" in why


def test_recorder_leaves_a_users_faulthandler_alone(tmp_path: Path) -> None:
    """A user who enabled faulthandler keeps it: no crash.txt is made."""
    script = textwrap.dedent("""
        import faulthandler, os, sys
        faulthandler.enable(file=sys.stderr)
        import sentinel
        run = sentinel.watch(name="own-faulthandler", heartbeat_interval=0.1)
        print("ENABLED", faulthandler.is_enabled(), flush=True)
        (run_dir,) = os.listdir(os.environ["SENTINEL_SPOOL"])
        run_dir = os.path.join(os.environ["SENTINEL_SPOOL"], run_dir)
        print("FILES", sorted(n for n in os.listdir(run_dir) if n.endswith(".txt")), flush=True)
        run.finish()
        print("AFTER", faulthandler.is_enabled(), flush=True)
    """)
    env = {**os.environ, "SENTINEL_SPOOL": str(tmp_path / "spool")}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert "ENABLED True" in out.stdout and "AFTER True" in out.stdout, out.stderr
    assert "FILES ['stacks.txt']" in out.stdout  # no crash.txt: the user's faulthandler has the crash
    (run_dir,) = (tmp_path / "spool").iterdir()
    assert not list(run_dir.glob("*.txt"))  # the unused (empty) dump file went with the run's end


def test_stack_signal_chains_to_the_users_handler(tmp_path: Path) -> None:
    """A handler the user had on the signal still runs after the dump."""
    script = textwrap.dedent(f"""
        import os, signal, sys, threading, time
        got = threading.Event()
        signal.signal({int(evidence.STACK_SIGNAL)}, lambda s, f: got.set())
        import sentinel
        run = sentinel.watch(name="chained", heartbeat_interval=0.1)
        os.kill(os.getpid(), {int(evidence.STACK_SIGNAL)})
        # The dump runs on the recorder's thread; a Python handler runs on the
        # main thread once it runs Python code again (a bounded wait).
        for _ in range(1000):
            if got.is_set():
                break
            time.sleep(0.01)
        print("HANDLER", got.is_set(), flush=True)
        run.finish()
    """)
    env = {**os.environ, "SENTINEL_SPOOL": str(tmp_path / "spool")}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert "HANDLER True" in out.stdout, out.stderr
    (run_dir,) = (tmp_path / "spool").iterdir()
    dump = evidence.parse((run_dir / evidence.STACKS_FILE).read_bytes())
    assert dump.main is not None and dump.main.frames[-1].function == "<module>"


def test_the_dump_runs_off_the_training_thread_and_a_forked_child_gets_the_signal_back(
        tmp_path: Path) -> None:
    """The thread that opened the run keeps the stack signal blocked: the
    recorder's heartbeat thread runs faulthandler's handler, so the training
    thread is not held while the stacks are written. A forked child, no run,
    has the signal unblocked again."""
    signo = int(evidence.STACK_SIGNAL)
    script = textwrap.dedent(f"""
        import os, sys, time
        import sentinel

        def blocked():
            with open("/proc/thread-self/status") as status:
                mask = next(int(l.split()[1], 16) for l in status if l.startswith("SigBlk:"))
            return bool(mask & (1 << ({signo} - 1)))

        run = sentinel.watch(name="off-thread", heartbeat_interval=0.1)
        print("BLOCKED", blocked(), flush=True)
        pid = os.fork()
        if pid == 0:
            print("CHILD", blocked(), flush=True)
            os._exit(0)
        os.waitpid(pid, 0)
        os.kill(os.getpid(), {signo})
        stacks = os.path.join(run._recorder.paths.dir, "stacks.txt")
        for _ in range(1000):  # bounded: the dump is written on another thread
            if os.path.getsize(stacks):
                break
            time.sleep(0.01)
        run.finish()
        print("UNBLOCKED AFTER FINISH", not blocked(), flush=True)
    """)
    env = {**os.environ, "SENTINEL_SPOOL": str(tmp_path / "spool")}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert "BLOCKED True" in out.stdout, out.stderr
    assert "CHILD False" in out.stdout, out.stderr
    assert "UNBLOCKED AFTER FINISH True" in out.stdout, out.stderr
    (run_dir,) = (tmp_path / "spool").iterdir()
    dump = evidence.parse((run_dir / evidence.STACKS_FILE).read_bytes())
    assert dump.main is not None and not dump.main.current
    (handler,) = [t for t in dump.threads if t.current]
    assert any(f.function == "_run_heartbeat" for f in handler.frames)


# ------------------------------------------------------------ the exact step under SwanLab


@pytest.mark.parametrize("flavour", [p for p in FLAVOURS if p.id != "watch"])
def test_kill_after_quick_steps_names_the_last_step_and_draws_the_trend(
    daemon: DaemonProcess, bark: FakeBark, flavour: str
) -> None:
    """SwanLab >= 0.8 tells callbacks of logged values only in late batches:
    the wrapped swanlab.log puts each step into live.bin as it is logged."""
    name = f"steps-{flavour or 'latest'}"
    common = ("stall", "--steps", "37", "--period", "0.01", "--name", name, "--heartbeat", HEARTBEAT)
    python = swanlab_python(flavour or None)
    with Victim.swanlab(python, daemon.tmp, *common, spool_dir=daemon.spool).start() as v:
        run_id = v.ready()
        v.expect("STALLED")
        live, _ = live_file.read_live(v.paths.dir)
        assert live is not None and live.step == 37  # stored by the 37th swanlab.log itself
        # The values follow within VALUES_EVERY (the heartbeat thread copies the last ones).
        wait_for(lambda: live_file.read_live(v.paths.dir)[0].scalars.get("loss") == 1 / 37,  # type: ignore[union-attr]
                 what="the last logged values in live.bin")
        _watched(daemon, v.pid)
        v.kill()
        killed = wait_for_push(bark, K.KILLED, name, signal="SIGKILL")
    assert "Step 37 ·" in killed["body"]
    alert = _journal(daemon, run_id)[-1]
    assert alert.step == 37
    assert alert.trend_metric == "loss" and len(alert.trend) >= 2
    assert alert.trend[-1] == pytest.approx(1 / 37)
    assert "loss " in killed["body"] and "→ 0.027" in killed["body"]


def test_the_hook_stores_each_step_at_once_and_the_last_values_follow(tmp_path: Path) -> None:
    """Per swanlab.log only the step and time are stored; the values are
    copied at most every VALUES_EVERY, the last ones by the heartbeat thread,
    however long the heartbeat interval."""
    rec = Recorder.open(tmp_path / "spool", name="hooked", heartbeat_interval=3600.0)

    class Module:
        @staticmethod
        def log(data: object, step: object = None) -> str:
            return "swanlab's answer"

    hook = LogHook.install(Module, rec)
    assert hook is not None and LogHook.of(Module.log) is hook and LogHook.install(Module, rec) is None
    try:
        for i in range(1, 38):
            assert Module.log({"loss": 1 / i}) == "swanlab's answer"
        live, _ = live_file.read_live(rec.paths.dir)
        assert live is not None and live.step == 37 and hook.global_step == 37 and hook.calls == 37
        wait_for(lambda: live_file.read_live(rec.paths.dir)[0].scalars == {"loss": 1 / 37},  # type: ignore[union-attr]
                 what="the last logged values in live.bin")
    finally:
        hook.uninstall()
        rec.finish()
    assert Module.log({"loss": 0.0}) == "swanlab's answer" and LogHook.of(Module.log) is None


def test_the_hook_is_undone_at_finish_and_keeps_swanlabs_behaviour(tmp_path: Path) -> None:
    script = textwrap.dedent("""
        import swanlab
        from sentinel import SentinelCallback
        from sentinel.training.swanlab_log_hook import LogHook
        original = swanlab.log
        swanlab.init(project="p", mode="offline", callbacks=[SentinelCallback(heartbeat_interval=0.1)])
        print("WRAPPED", LogHook.of(swanlab.log) is not None, swanlab.log.__name__, flush=True)
        swanlab.log({"loss": 1.0})
        swanlab.log({"loss": 0.5}, step=10)
        swanlab.log({"loss": 0.25})
        print("STEP", LogHook.of(swanlab.log).global_step, flush=True)
        swanlab.finish()
        print("RESTORED", swanlab.log is original, flush=True)
    """)
    env = {**os.environ, "SENTINEL_SPOOL": str(tmp_path / "spool"), "SWANLAB_LOG_DIR": str(tmp_path / "sl")}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert "WRAPPED True log" in out.stdout, out.stderr
    assert "STEP 11" in out.stdout  # SwanLab's rule: an explicit step raises the global one
    assert "RESTORED True" in out.stdout, out.stderr
    (run_dir,) = (tmp_path / "spool").iterdir()
    final = spool.read_final(run_dir / spool.FINAL_FILE)
    assert final.step == 11 and final.scalars["loss"] == 0.25


# ------------------------------------------------------------ what it printed last


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_kill_alert_shows_the_last_printed_line(daemon: DaemonProcess, bark: FakeBark, flavour: str) -> None:
    name = f"printed-{flavour or 'latest'}"
    common = ("stall", "--name", name, "--heartbeat", HEARTBEAT, "--print", "epoch 6 ... loss 0.51",
              "--print", "upload https://x.example/h?token=sup3rs3cr3t", "--print", "epoch 7 ... loss 0.43")
    if flavour == "watch":
        v = Victim.watch(daemon.tmp, *common, "--capture-output", spool_dir=daemon.spool)
    else:
        v = Victim.swanlab(swanlab_python(flavour or None), daemon.tmp, *common, spool_dir=daemon.spool)
    with v.start():
        run_id = v.ready()
        v.expect("STALLED")
        wait_for(lambda: "epoch 7 ... loss 0.43" in v.progress().output, what="the line in beat.json")
        _watched(daemon, v.pid)
        v.kill()
        killed = wait_for_push(bark, K.KILLED, name, signal="SIGKILL")
    assert "Last output: epoch 7 ... loss 0.43" in killed["body"]
    alert = _journal(daemon, run_id)[-1]
    assert alert.output[-3:] == ["epoch 6 ... loss 0.51", "upload https://x.example/h?token=***",
                                 "epoch 7 ... loss 0.43"]
    assert "sup3rs3cr3t" not in repr(alert.to_dict())
    assert "epoch 6 ... loss 0.51" in plain_text(alert, "en", 20000, stacks=True)


def test_output_is_not_captured_unless_asked(daemon: DaemonProcess) -> None:
    with Victim.watch(daemon.tmp, "stall", "--heartbeat", HEARTBEAT, "--print", "private line",
                      spool_dir=daemon.spool).start() as v:
        v.ready()
        v.expect("STALLED")
        seq = v.progress().seq
        wait_for(lambda: v.progress().seq >= seq + 2, what="two more heartbeats")
        assert v.progress().output == []
        v.kill()
