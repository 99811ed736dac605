"""Channel and run names are checked at the call: against the channels the watching daemon
publishes (names only), else the config file the user can read; a mute names a run that exists."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from sentinel.common.rules import InvalidArgument
from sentinel.formats import daemon_file, mutes
from sentinel.training.run_options import run_options
from tests.cli_helpers import run_sentinel, sentinel_env
from tests.daemon_harness import DaemonProcess
from tests.fakes import FakeBark


def test_the_daemon_publishes_channel_names_never_options(daemon: DaemonProcess, bark: FakeBark) -> None:
    text = (daemon.spool / "daemon.json").read_text()
    assert json.loads(text)["channels"] == ["phone"]
    assert set(json.loads(text)) == {"v", "pid", "start_ticks", "boot_id", "version", "channels", "pidns",
                                     "refresh", "unwatchable"}
    assert bark.key_url.rstrip("/") not in text and "bark" not in text  # options stay in the config
    assert daemon_file.published_channels(daemon.spool) == ["phone"]


def test_a_run_naming_a_channel_the_daemon_lacks_is_refused_at_the_call(daemon: DaemonProcess) -> None:
    refused = r"channels\[1\]: unknown channel 'phnoe'; did you mean 'phone'\?"
    with pytest.raises(InvalidArgument, match=refused):
        run_options("watch", channels=["phone", "phnoe"], spool_dir=str(daemon.spool))
    assert run_options("watch", channels=["phone"], spool_dir=str(daemon.spool)).channels == ["phone"]


def test_sentinel_run_with_an_unknown_channel_is_a_usage_error(daemon: DaemonProcess) -> None:
    done = run_sentinel(["run", "--channel", "pager", "--", "true"], sentinel_env(daemon.spool))
    assert done.returncode == 2
    assert "--channel: unknown channel 'pager' (known: phone)" in done.stderr
    assert not list(daemon.spool.glob("*/run.json"))  # nothing started
    ok = run_sentinel(["run", "--channel", "phone", "--", "true"], sentinel_env(daemon.spool))
    assert ok.returncode == 0, ok.stderr


def test_mute_checks_the_channel_and_the_run(daemon: DaemonProcess) -> None:
    env = sentinel_env(daemon.spool)
    spool = ["--spool", str(daemon.spool)]
    channel = run_sentinel(["mute", "--channel", "phnoe", *spool], env)
    assert channel.returncode == 2 and "did you mean 'phone'?" in channel.stderr
    missing = run_sentinel(["mute", "no-such-run", *spool], env)
    assert missing.returncode == 1 and "no run 'no-such-run'" in missing.stderr
    assert mutes.read_mutes(daemon.spool) == []  # refused: nothing written
    ahead = run_sentinel(["mute", "no-such-run", "--ahead", *spool], env)
    assert ahead.returncode == 0, ahead.stderr


def test_without_a_daemon_the_readable_config_decides(tmp_path: Path) -> None:
    config = tmp_path / "sentinel.yaml"
    config.write_text(yaml.safe_dump({"channels": {"phone": {"type": "console"}}}))
    env = sentinel_env(tmp_path / "spool", SENTINEL_CONFIG=str(config))
    done = run_sentinel(["run", "--channel", "pager", "--", "true"], env)
    assert done.returncode == 2 and f"unknown channel 'pager' (known: phone) (channels of {config})" \
        in done.stderr
    # In-process, with nobody to ask, a name is accepted: the daemon that later
    # watches alerts its default channels instead and logs why.
    assert run_options("watch", channels=["pager"], spool_dir=str(tmp_path / "spool")).channels == ["pager"]
