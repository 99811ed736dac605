"""Bad input at every door: arguments fail at the call by the config's rules,
hostile run records never hide a run, and run text never acts on a terminal."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import sentinel
from sentinel.common.rules import InvalidArgument
from sentinel.common.safetext import printable
from sentinel.daemon.config import ConfigError, parse_config
from sentinel.formats import safe_json, spool
from sentinel.model.alerts import AlertKind
from tests.cli_helpers import SENTINEL, only_run, read_line, sentinel_env
from tests.daemon_harness import DaemonProcess, hand_written_record, wait_for_push
from tests.fakes import FakeBark
from tests.victims.harness import ROOT, wait_for

K = AlertKind


def config_problem(key: str, value: Any) -> str:
    """What the config file says about ``key: value`` (without the line)."""
    with pytest.raises(ConfigError) as info:
        parse_config(f"{key}: {json.dumps(value)}\n", env={})
    return info.value.problems[0].split(": ", 1)[1]


# ---------------------------------------------------------------- at the call


@pytest.mark.parametrize("value", ["later", 0, -1, "-5m", True])
def test_a_bad_stall_timeout_fails_at_the_call_as_in_the_config(tmp_path: Path, value: Any) -> None:
    with pytest.raises(InvalidArgument) as info:
        sentinel.watch(spool_dir=tmp_path, stall_timeout=value)
    assert str(info.value) == f"sentinel.watch: stall_timeout: {config_problem('stall_timeout', value)}"
    assert isinstance(info.value, ValueError) and isinstance(info.value, TypeError)
    assert not spool.list_run_ids(tmp_path)  # nothing was started


@pytest.mark.parametrize(("kwargs", "expected"), [
    ({"channels": "phone"},
     "channels: must be a list of channel names or channel option mappings, not a string"),
    ({"channels": [b"phone"]},
     "channels[0]: must be a channel name or a mapping of channel options, not bytes"),
    ({"channels": ["no spaces"]}, "channels[0]: a channel name must be letters"),
    ({"channels": [{"type": "bark", "key": b"k"}]}, "channels[0].key: must be a non-empty string"),
    ({"labels": ["a"]}, "labels: must be a mapping of label names to values, not a list"),
    ({"labels": {"cfg": {"lr": 1}}}, "labels.cfg: must be a string or a number, not a mapping"),
    ({"language": "fr"}, "language: must be one of en, zh, not 'fr'"),
    ({"heartbeat_interval": "soon"}, "heartbeat_interval: 'soon' is not a duration"),
    ({"name": b"x"}, "name: must be a string, not bytes"),
    ({"spool_dir": 3}, "spool_dir: must be a path, not a number"),
    ({"handle_sigterm": "yes"}, "handle_sigterm: must be True or False, not a string"),
])
def test_every_argument_of_watch_is_checked(tmp_path: Path, kwargs: dict, expected: str) -> None:
    kwargs.setdefault("spool_dir", tmp_path)
    with pytest.raises(InvalidArgument, match=None) as info:
        sentinel.watch(**kwargs)
    assert str(info.value).startswith(f"sentinel.watch: {expected}"), str(info.value)


def test_every_problem_is_named_at_once(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument) as info:
        sentinel.watch(spool_dir=tmp_path, stall_timeout=0, channels="phone", language="fr")
    message = str(info.value)
    assert "stall_timeout:" in message and "channels:" in message and "language:" in message


def test_durations_are_taken_as_the_config_takes_them(tmp_path: Path) -> None:
    run = sentinel.watch(spool_dir=tmp_path, stall_timeout="10m", heartbeat_interval="90s",
                         handle_sigterm=False)
    try:
        record, _ = spool.read_run(run.path / spool.RUN_FILE)
        assert (record.stall_timeout, record.heartbeat_interval) == (600.0, 90.0)
    finally:
        run.finish()


def test_the_dropins_check_their_arguments_at_construction() -> None:
    from sentinel import BarkCallback, DingTalkCallback, SentinelCallback

    with pytest.raises(InvalidArgument, match=r"^BarkCallback: group: must be a string, not a list; "
                                              r".*stall_timeout: must be longer than zero$"):
        BarkCallback(url="https://api.day.app/key123", group=["x"], stall_timeout=0)
    with pytest.raises(InvalidArgument, match=r"^BarkCallback: bark_level: "):
        BarkCallback(key="key123", bark_level=b"active")
    with pytest.raises(InvalidArgument, match=r"^DingTalkCallback: webhook_url: must be a URL string"):
        DingTalkCallback(webhook_url=b"https://oapi.dingtalk.com/robot/send?access_token=t")
    with pytest.raises(InvalidArgument, match=r"^SentinelCallback: stall_timeout: 'later' is not a duration"):
        SentinelCallback(stall_timeout="later")
    assert SentinelCallback(stall_timeout="2h")._stall_timeout == 7200.0


# ---------------------------------------------------------------- undecodable argv and cwd


UNDECODABLE = """
import os, sys
import sentinel
with sentinel.watch(name="bytes", handle_sigterm=False) as run:
    print("READY", run.run_id, flush=True)
"""


def test_undecodable_argv_and_cwd_are_recorded_escaped(tmp_path: Path) -> None:
    odd_dir = os.path.join(os.fsencode(tmp_path), b"dir-\xff")
    os.mkdir(odd_dir)
    spool_path = tmp_path / "spool"
    env = dict(os.environ, SENTINEL_SPOOL=str(spool_path), PYTHONPATH=str(ROOT), LC_ALL="C.UTF-8")
    result = subprocess.run([os.fsencode(sys.executable), b"-c", UNDECODABLE.encode(), b"arg-\xff"],
                            cwd=odd_dir, env=env, capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert b"Traceback" not in result.stderr and b"sentinel:" not in result.stderr.replace(
        b"sentinel: no sentinel daemon", b"")
    paths = only_run(spool_path)
    record, _ = spool.read_run(paths.run)
    assert record.cmdline[-1] == "arg-\\xff"
    assert record.cwd.endswith("dir-\\xff")
    assert spool.read_final(paths.final).state == "finished"


# ---------------------------------------------------------------- non-finite numbers


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers_are_refused_on_read(tmp_path: Path, constant: str) -> None:
    path = tmp_path / "beat.json"
    path.write_text(f'{{"v": 1, "beat": {constant}, "seq": 1}}')
    with pytest.raises(safe_json.SpoolFormatError):
        spool.read_progress(path)


def test_deep_json_is_refused_without_recursion(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(safe_json.SpoolFormatError, match="nested"):
        safe_json.read_json(path)
    path.write_text('{"v": 1, "x": ' + "[" * 40 + "]" * 40 + "}")
    with pytest.raises(safe_json.SpoolFormatError, match="nested deeper"):
        safe_json.read_json(path)


def test_a_nan_loss_is_never_written_and_hides_the_older_value(tmp_path: Path) -> None:
    run = sentinel.watch(spool_dir=tmp_path, heartbeat_interval=0.05, handle_sigterm=False)
    try:
        run.beat(step=1, loss=0.5, acc=0.9)
        wait_for(lambda: spool.read_progress(run.path / spool.BEAT_FILE).step == 1, what="step 1")
        run.beat(step=2, loss=float("nan"), acc=0.91)
        wait_for(lambda: spool.read_progress(run.path / spool.BEAT_FILE).step == 2, what="step 2")
        raw = (run.path / spool.BEAT_FILE).read_text()
        assert "NaN" not in raw
        assert spool.read_progress(run.path / spool.BEAT_FILE).scalars == {"acc": 0.91}
    finally:
        run.finish()


# ---------------------------------------------------------------- the daemon never skips a run


def test_bad_fields_in_a_run_record_still_alert_with_defaults(
    tmp_path: Path, bark: FakeBark, child: subprocess.Popen[bytes]
) -> None:
    with DaemonProcess(tmp_path, {"phone": {"type": "bark", "url": bark.key_url}}) as daemon:
        # What an old recorder wrote for stall_timeout=0, and worse.
        paths, record = hand_written_record(daemon.spool, child.pid, "bad-fields", stall_timeout=0,
                                            heartbeat_interval="10s", labels=[1], channels="phone")
        run_id = paths.run_id
        paths.run.write_text(json.dumps(record))
        daemon.wait_log("stall_timeout must be a positive number")
        child.kill()
        child.wait()
        wait_for_push(bark, K.KILLED, "bad-fields", signal="SIGKILL")
        daemon.stop()
        assert [a.kind for a in daemon.journal(run_id)] == [K.KILLED]
        assert daemon.log().count("stall_timeout must be a positive number") == 1


# ---------------------------------------------------------------- control characters


EVIL = "\x1b[2Jevil\nFAKE LOG LINE"


def test_control_characters_in_a_run_never_reach_terminal_or_log(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import sentinel
        run = sentinel.watch(name={EVIL!r}, labels={{"project": "p\\x1b]0;title\\x07"}},
                             heartbeat_interval=0.05, handle_sigterm=False)
        print("READY", run.run_id, flush=True)
        import time; time.sleep(3600)
    """)
    with DaemonProcess(tmp_path, {"screen": {"type": "console", "stream": "stdout"}}) as daemon:
        env = dict(os.environ, SENTINEL_SPOOL=str(daemon.spool), PYTHONPATH=str(ROOT))
        proc = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL)
        try:
            run_id = read_line(proc.stdout).split()[1].decode()
            wait_for(lambda: (daemon.spool / run_id / spool.RUN_FILE).exists(), what="run.json")
            status = subprocess.run([*SENTINEL, "status", "--spool", str(daemon.spool)], capture_output=True,
                                    text=True, env=sentinel_env(daemon.spool), timeout=60)
            assert status.returncode == 0, status.stderr
            assert "\x1b" not in status.stdout and "\nFAKE LOG LINE" not in status.stdout
            assert printable(EVIL) in status.stdout
            proc.kill()
            proc.wait()
            daemon.wait_log("Killed")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
        daemon.stop()
    log = daemon.log()
    assert "\x1b" not in log and "\x07" not in log
    assert not any(line.startswith("FAKE LOG LINE") for line in log.splitlines())
    assert "\\x1b[2Jevil\\nFAKE LOG LINE" in log


# ---------------------------------------------------------------- sentinel run


def test_kill_9_of_the_wrapper_takes_the_child_along_and_alerts_once(tmp_path: Path, bark: FakeBark) -> None:
    child_code = "import os, time; print(os.getpid(), flush=True); time.sleep(3600)"
    with DaemonProcess(tmp_path, {"phone": {"type": "bark", "url": bark.key_url}}) as daemon:
        wrapper = subprocess.Popen([*SENTINEL, "run", "--name", "wrapped", "--", sys.executable, "-c",
                                    child_code], env=sentinel_env(daemon.spool), stdout=subprocess.PIPE,
                                   stderr=subprocess.DEVNULL)
        try:
            child_pid = int(read_line(wrapper.stdout))
            child_fd = os.pidfd_open(child_pid)
            wrapper.kill()
            wrapper.wait(60)
            # The child's pidfd becomes readable when it exits: gone with its parent.
            wait_for(lambda: select.select([child_fd], [], [], 0)[0], what="the child dying with the wrapper")
            os.close(child_fd)
            wait_for_push(bark, K.KILLED, "wrapped", signal="SIGKILL")
        finally:
            wrapper.stdout.close()
        daemon.stop()
        [run_id] = [n for n in os.listdir(daemon.state / "archive") if spool.is_run_id(n)]
        assert [a.kind for a in daemon.journal(run_id)] == [K.KILLED]


@pytest.mark.parametrize(("args", "expected"), [
    (["--stall-timeout", "later"], "stall_timeout: 'later' is not a duration"),
    (["--stall-timeout", "0"], "stall_timeout: must be longer than zero"),
    (["--channel", "a b"], "channels[0]: a channel name must be letters"),
    (["--label", "novalue"], "--label 'novalue': expected KEY=VALUE"),
])
def test_sentinel_run_checks_its_options_by_the_same_rules(tmp_path: Path, args: list, expected: str) -> None:
    result = subprocess.run([*SENTINEL, "run", *args, "--", sys.executable, "-c", "pass"],
                            env=sentinel_env(tmp_path / "spool"), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert expected in result.stderr
    assert not spool.list_run_ids(tmp_path / "spool")


def test_sentinel_run_records_labels_project_and_stall_timeout(tmp_path: Path) -> None:
    spool_path = tmp_path / "spool"
    result = subprocess.run([*SENTINEL, "run", "--project", "nightly", "--label", "split=test",
                             "--stall-timeout", "2h", "--", sys.executable, "-c", "pass"],
                            env=sentinel_env(spool_path), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    record, _ = spool.read_run(only_run(spool_path).run)
    assert record.labels["project"] == "nightly" and record.labels["split"] == "test"
    assert record.stall_timeout == 7200.0
