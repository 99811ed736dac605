"""BarkCallback's arguments follow the config file's rules, and its ``title`` is honoured."""

from __future__ import annotations

from pathlib import Path

import pytest

from sentinel.channels import build_channel
from sentinel.common.rules import InvalidArgument
from sentinel.daemon.config import ConfigError, load_config
from sentinel.training.notify import BarkCallback
from tests.fakes.samples import sample_alert

KEY_URL = "https://api.day.app/abcdefghijklmnopqrstuv"


def test_a_bad_device_key_is_refused_at_the_call_with_the_configs_words(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("channels:\n  phone: {type: bark, key: k}\n")
    with pytest.raises(ConfigError) as in_config:
        load_config(config)
    with pytest.raises(InvalidArgument) as at_call:
        BarkCallback(key="k")
    (problem,) = [p for p in in_config.value.problems if "channels.phone.key" in p]
    said = problem.split(": ", 1)[1]
    assert said.startswith("must be the device key")
    assert str(at_call.value) == f"BarkCallback: key: {said}"


def test_title_leads_the_second_line_and_what_happened_stays_first() -> None:
    callback = BarkCallback(url=KEY_URL, title="Lab 7", language="en")
    channel = build_channel("bark", callback._channel)
    push = channel.payload(sample_alert())
    assert push["title"].startswith("💥 Crashed: ")
    assert push["subtitle"].startswith("Lab 7 · cifar10")
    untitled = build_channel("bark", BarkCallback(url=KEY_URL)._channel).payload(sample_alert())
    assert not untitled["subtitle"].startswith("Lab 7")
    with pytest.raises(InvalidArgument, match="title: must be a non-empty string"):
        BarkCallback(url=KEY_URL, title=3)  # type: ignore[arg-type]
