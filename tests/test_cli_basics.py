"""The `sentinel` command line: help, exit codes, config search, check-config, logging."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sentinel import cli
from sentinel.daemon import config as config_module
from sentinel.training.recorder import Recorder
from tests.cli_helpers import SENTINEL, run_sentinel, sentinel_env
from tests.victims.harness import ROOT

COMMANDS = ("daemon", "status", "check-config", "test", "run")

GOOD = """
language: zh
stall_timeout: 5m
channels:
  screen: {type: console}
"""

BAD = """
languag: en
stall_timeout: later
channels:
  screen: {type: consol}
default_channels: [pager]
"""


@pytest.fixture
def env(tmp_path: Path) -> dict:
    return sentinel_env(tmp_path / "spool")


def config_file(tmp_path: Path, text: str, name: str = "config.yaml", mode: int = 0o600) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


# ---------------------------------------------------------------- help and usage


def test_help_lists_every_command(env: dict) -> None:
    result = run_sentinel(["--help"], env)
    assert result.returncode == 0
    for command in COMMANDS:
        assert command in result.stdout
    assert "78 configuration error" in result.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_has_help(env: dict, command: str) -> None:
    result = run_sentinel([command, "--help"], env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: sentinel {command}")


@pytest.mark.parametrize("args", [[], ["bogus"], ["status", "--bogus"], ["daemon", "extra"]])
def test_usage_errors_exit_2(env: dict, args: list) -> None:
    result = run_sentinel(args, env)
    assert result.returncode == 2
    assert "usage: sentinel" in result.stderr


def test_version(env: dict) -> None:
    from sentinel import __version__

    result = run_sentinel(["--version"], env)
    assert result.returncode == 0 and result.stdout.strip() == f"run-sentinel {__version__}"


def test_console_script_is_installed() -> None:
    """`pip install` puts a `sentinel` command beside the interpreter."""
    script = Path(sys.executable).parent / "sentinel"
    assert script.exists(), f"run-sentinel is not installed in {sys.prefix} (tests/run.py installs it)"
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "check-config" in result.stdout


# ---------------------------------------------------------------- check-config


def test_check_config_ok(env: dict, tmp_path: Path) -> None:
    path = config_file(tmp_path, GOOD)
    result = run_sentinel(["check-config", str(path)], env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{path}: OK")
    assert "language:         zh" in result.stdout
    assert "stall timeout:    300s" in result.stdout
    assert "channel screen: type console, language zh" in result.stdout


def test_check_config_reports_every_problem_and_exits_78(env: dict, tmp_path: Path) -> None:
    path = config_file(tmp_path, BAD)
    result = run_sentinel(["check-config", str(path)], env)
    assert result.returncode == 78
    assert result.stdout == ""
    assert f"{path}: 4 problems in the configuration:" in result.stderr
    assert "languag (line 2): unknown key; did you mean 'language'?" in result.stderr
    assert "stall_timeout (line 3): 'later' is not a duration" in result.stderr
    assert "channels.screen.type (line 5): unknown channel type 'consol'" in result.stderr
    assert "default_channels[0] (line 6): 'pager' is not a channel" in result.stderr


def test_check_config_missing_file_exits_78(env: dict, tmp_path: Path) -> None:
    result = run_sentinel(["check-config", str(tmp_path / "nope.yaml")], env)
    assert result.returncode == 78
    assert "cannot read the file: No such file or directory" in result.stderr


def test_check_config_without_any_file_uses_the_embedded_default(env: dict) -> None:
    if cli.SYSTEM_CONFIG.exists():
        pytest.skip(f"{cli.SYSTEM_CONFIG} exists on this machine and would be found first")
    result = run_sentinel(["check-config"], env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("no config file found: the embedded default is in use")
    assert "channel console: type console" in result.stdout
    assert f"spool:            {env['SENTINEL_SPOOL']}" in result.stdout


def test_config_search_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    system = config_file(tmp_path, "", "etc/config.yaml")
    user = config_file(tmp_path, "", "xdg/sentinel/config.yaml")
    monkeypatch.setattr(config_module, "SYSTEM_CONFIG", system)
    env = {"XDG_CONFIG_HOME": str(tmp_path / "xdg"), "HOME": str(tmp_path / "home")}
    assert cli.find_config("/explicit.yaml", env) == Path("/explicit.yaml")
    assert cli.find_config(None, {**env, "SENTINEL_CONFIG": "/from/env.yaml"}) == Path("/from/env.yaml")
    assert cli.find_config(None, env) == system
    system.unlink()
    assert cli.find_config(None, env) == user
    user.unlink()
    assert cli.find_config(None, env) is None
    home_config = config_file(tmp_path, "", "home/.config/sentinel/config.yaml")
    assert cli.find_config(None, {"HOME": str(tmp_path / "home")}) == home_config


def test_sentinel_config_variable_is_used(env: dict, tmp_path: Path) -> None:
    path = config_file(tmp_path, GOOD)
    result = run_sentinel(["check-config"], {**env, "SENTINEL_CONFIG": str(path)})
    assert result.returncode == 0 and result.stdout.startswith(f"{path}: OK")
    result = run_sentinel(["check-config"], {**env, "SENTINEL_CONFIG": str(tmp_path / "missing.yaml")})
    assert result.returncode == 78  # named explicitly, so its absence is an error


def test_xdg_config_is_found(env: dict) -> None:
    if cli.SYSTEM_CONFIG.exists():
        pytest.skip(f"{cli.SYSTEM_CONFIG} exists on this machine and would be found first")
    path = config_file(Path(env["XDG_CONFIG_HOME"]), GOOD, "sentinel/config.yaml")
    result = run_sentinel(["check-config"], env)
    assert result.returncode == 0 and result.stdout.startswith(f"{path}: OK")


# ---------------------------------------------------------------- config errors stop every command


def test_daemon_with_a_bad_config_exits_78_without_starting(env: dict, tmp_path: Path) -> None:
    path = config_file(tmp_path, BAD)
    result = run_sentinel(["daemon", "--config", str(path)], env)
    assert result.returncode == 78
    assert "languag (line 2): unknown key" in result.stderr
    assert not Path(env["SENTINEL_SPOOL"]).exists()  # nothing was started or created


def test_test_command_with_a_bad_config_exits_78(env: dict, tmp_path: Path) -> None:
    result = run_sentinel(["test", "--config", str(config_file(tmp_path, BAD))], env)
    assert result.returncode == 78


def test_test_command_with_an_unknown_channel_exits_78(env: dict, tmp_path: Path) -> None:
    result = run_sentinel(["test", "nowhere", "--config", str(config_file(tmp_path, GOOD))], env)
    assert result.returncode == 78
    assert "no channel named 'nowhere'; configured: screen" in result.stderr


# ---------------------------------------------------------------- logging


SECRET = "abcdefghijklmnopqrstuv"
WITH_SECRET = f"channels:\n  phone: {{type: bark, key: {SECRET}}}\n"


def test_readable_secret_config_warns_on_stderr(env: dict, tmp_path: Path) -> None:
    path = config_file(tmp_path, WITH_SECRET, mode=0o644)
    result = run_sentinel(["check-config", str(path)], env)
    assert result.returncode == 0
    warning = [line for line in result.stderr.splitlines() if "chmod 600" in line]
    assert len(warning) == 1 and " WARNING sentinel.config: " in warning[0]
    assert SECRET not in result.stderr + result.stdout
    path.chmod(0o600)
    assert "chmod" not in run_sentinel(["check-config", str(path)], env).stderr


def test_logs_for_journald_have_priorities_and_no_timestamps(env: dict, tmp_path: Path) -> None:
    """Under systemd, stderr is the journal: JOURNAL_STREAM names it, and
    lines carry <N> syslog priorities instead of timestamps and level names."""
    path = config_file(tmp_path, WITH_SECRET, mode=0o644)
    stderr_path = tmp_path / "stderr.txt"
    with open(stderr_path, "w") as stderr:
        st = os.fstat(stderr.fileno())
        journal_env = {**env, "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        code = subprocess.run([*SENTINEL, "check-config", str(path)], env=journal_env, stderr=stderr,
                              stdout=subprocess.DEVNULL, timeout=60).returncode
    assert code == 0
    lines = stderr_path.read_text().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("<4>sentinel.config: ") and "chmod 600" in lines[0]


def test_journal_stream_of_another_file_is_ignored(tmp_path: Path) -> None:
    """A JOURNAL_STREAM inherited from a parent whose stderr went to the
    journal does not apply when our stderr is something else."""
    other = tmp_path / "other"
    other.write_text("")
    st = os.stat(other)
    assert cli.stderr_is_journal({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}) is False
    assert cli.stderr_is_journal({"JOURNAL_STREAM": "garbage"}) is False
    assert cli.stderr_is_journal({}) is False


def test_journal_formatter_prefixes_every_line() -> None:
    formatter = cli.JournalFormatter("%(name)s: %(message)s")
    record = logging.LogRecord("sentinel.daemon", logging.ERROR, __file__, 1, "two\nlines", None, None)
    assert formatter.format(record) == "<3>sentinel.daemon: two\n<3>lines"
    record = logging.LogRecord("sentinel", logging.DEBUG, __file__, 1, "x", None, None)
    assert formatter.format(record) == "<7>sentinel: x"


def test_group_readable_secret_config_says_group(env: dict, tmp_path: Path) -> None:
    path = config_file(tmp_path, WITH_SECRET, mode=0o640)
    result = run_sentinel(["check-config", str(path)], env)
    assert "is readable by group (mode 640)" in result.stderr


def test_test_command_sends_through_a_channel(env: dict, tmp_path: Path) -> None:
    result = run_sentinel(["test", "screen", "--config", str(config_file(tmp_path, GOOD))], env)
    assert result.returncode == 0, result.stderr
    assert "screen (console)" in result.stdout
    assert "测试告警" in result.stdout  # the alert itself, in the configured language (zh)


def test_daemon_logging_masks_channel_secrets_from_any_logger(capfd: pytest.CaptureFixture[str]) -> None:
    from sentinel.channels import build_channel
    from sentinel.cli import setup_logging

    token = "xoxb-T0KEN-that-must-not-leak"
    build_channel("team", {"type": "slack", "webhook_url": f"https://hooks.slack.com/services/{token}"})
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        setup_logging("debug")
        logging.getLogger("some.library").error("POST /services/%s failed", token)
        try:
            raise RuntimeError(f"boom with {token}")
        except RuntimeError:
            logging.getLogger("sentinel.daemon").exception("delivery crashed")
    finally:
        root.handlers[:], root.level = saved
    err = capfd.readouterr().err
    assert "failed" in err and "delivery crashed" in err and "RuntimeError" in err
    assert token not in err


@pytest.mark.parametrize("args", [["--help"], ["status"], ["status", "--json"], ["status", "--all"],
                                  ["check-config", str(ROOT / "config.example.yaml")], ["run", "--help"]])
def test_output_into_a_closed_pipe_is_no_traceback(tmp_path: Path, args: list[str]) -> None:
    """`sentinel ... | head`: the reader is gone before we write."""
    spool_path = tmp_path / "spool"
    for _ in range(3):  # something for status to print
        rec = Recorder.open(spool_path, name="piped", heartbeat_interval=3600)
        rec.finish()
    read_end, write_end = os.pipe()
    os.close(read_end)  # no reader at all: the first write fails, deterministically
    env = sentinel_env(spool_path, BARK_KEY="barkkey1234567890abcdef", DINGTALK_TOKEN="tok123",
                       DINGTALK_SECRET="SECabc", SLACK_WEBHOOK_URL="https://hooks.slack.com/services/T0/B0/XX")
    try:
        proc = subprocess.run([*SENTINEL, *args], env=env, stdout=write_end, stderr=subprocess.PIPE,
                              text=True, timeout=120)
    finally:
        os.close(write_end)
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr
    # argparse itself ignores a failed write of --help; our own output says 128+SIGPIPE.
    assert proc.returncode == (0 if "--help" in args else 141), proc.stderr


def _complete(tmp_path: Path, words: list[str], **env_extra: str) -> list[str]:
    """What bash offers after ``words`` (the last one is being typed)."""
    env = sentinel_env(tmp_path / "spool", **env_extra)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # `sentinel` as installed
    script = run_sentinel(["completion", "bash"], env)
    assert script.returncode == 0, script.stderr
    (tmp_path / "complete.sh").write_text(script.stdout)
    line = " ".join(f"'{w}'" for w in words)
    probe = (f"source {tmp_path / 'complete.sh'}; COMP_WORDS=(sentinel {line}); "
             f"COMP_CWORD={len(words)}; _sentinel_complete; printf '%s\\n' \"${{COMPREPLY[@]}}\"")
    done = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=60, cwd=tmp_path,
                          env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_bash_completion_offers_commands_and_their_options(tmp_path: Path) -> None:
    assert {"daemon", "status", "history", "mute", "unmute", "run", "test"} <= set(_complete(tmp_path, [""]))
    assert _complete(tmp_path, ["his"]) == ["history"]
    assert set(_complete(tmp_path, ["mute", "--"])) >= {"--project", "--channel", "--for", "--all"}
    assert "--log-format" in _complete(tmp_path, ["daemon", "--log"])
    zsh = run_sentinel(["completion", "zsh"], sentinel_env(tmp_path / "spool"))
    assert zsh.returncode == 0 and zsh.stdout.startswith("autoload -U +X bashcompinit && bashcompinit")


def test_completion_offers_run_and_channel_names_and_never_runs_one(tmp_path: Path) -> None:
    config = tmp_path / "sentinel.yaml"
    config.write_text("channels:\n  phone: {type: console}\n  ops: {type: console}\n")
    env = sentinel_env(tmp_path / "spool", SENTINEL_CONFIG=str(config))
    for name in ("resnet50", "$(touch pwned)"):  # any local user may name a run
        done = run_sentinel(["run", "--name", name, "--", sys.executable, "-c", "pass"], env)
        assert done.returncode == 0, done.stderr
    runs = _complete(tmp_path, ["mute", ""], SENTINEL_CONFIG=str(config))
    assert "resnet50" in runs and not any("touch" in word for word in runs)
    assert not (tmp_path / "pwned").exists()
    assert _complete(tmp_path, ["status", "res"], SENTINEL_CONFIG=str(config)) == ["resnet50"]
    offered = _complete(tmp_path, ["run", "--channel", ""], SENTINEL_CONFIG=str(config))
    assert sorted(offered) == ["ops", "phone"]
    assert _complete(tmp_path, ["test", "p"], SENTINEL_CONFIG=str(config)) == ["phone"]
