"""Config loading: every problem reported at once with its key path and line."""

from __future__ import annotations

import logging
import os
import textwrap
from pathlib import Path

import pytest

from sentinel.daemon.config import (
    ConfigError,
    default_config,
    load_config,
    parse_config,
    parse_duration,
)
from sentinel.model.alerts import ALERT_STATES

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    os.chmod(path, mode)
    return path


def problems_of(text: str, env: dict | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(textwrap.dedent(text), source="test.yaml", env=env or {})
    return info.value.problems


# ---------------------------------------------------------------- good configs


def test_example_config_loads_with_its_documented_variables() -> None:
    env = {"BARK_KEY": "barkkey1234567890abcdef", "DINGTALK_TOKEN": "tok123", "DINGTALK_SECRET": "SECabc",
           "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T000/B000/XXXX"}
    config = load_config(ROOT / "config.example.yaml", env=env)
    assert config.language in ("en", "zh")
    assert config.default_channels, "the example should route alerts somewhere"
    assert set(config.default_channels) <= set(config.channels)
    assert {c.type for c in config.channels.values()} >= {"bark", "dingtalk", "slack", "console"}
    assert config.alert_on <= set(ALERT_STATES)


def test_example_config_names_every_variable_it_needs() -> None:
    """Without its ${VAR}s the example fails, naming each one and where, and
    nothing else: an unset variable is not also reported as a missing option."""
    with pytest.raises(ConfigError) as info:
        load_config(ROOT / "config.example.yaml", env={})
    paths = [p.split(" (line")[0] for p in info.value.problems]
    assert paths == ["channels.phone.key", "channels.team-dingtalk.webhook_url",
                     "channels.team-dingtalk.secret", "channels.team-slack.webhook_url"]
    assert all("environment variable" in p and "is not set" in p for p in info.value.problems)


def test_empty_file_is_the_embedded_default(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ""))
    default = default_config()
    assert config.channels == default.channels
    assert config.default_channels == ["console"]
    assert config.stall_timeout == default.stall_timeout
    assert config.source == tmp_path / "config.yaml"


def test_full_config_values(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    config = load_config(write(tmp_path, f"""
        spool: {spool}
        state_dir: {tmp_path / "state"}
        language: zh
        stall_timeout: 15m
        alert_on: [crashed, killed]
        channels:
          screen:
            type: console
        default_channels: [screen]
        retention: 3d
        dead_letter_retention: 2w
        retry_for: 1h30m
        rescan_interval: 45
        log_level: debug
    """))
    assert config.spool == spool
    assert config.spool_path() == spool
    assert config.state_path() == tmp_path / "state"
    assert config.language == "zh"
    assert config.stall_timeout == 900
    assert config.alert_on == frozenset({"crashed", "killed"})
    assert list(config.channels) == ["screen"]
    assert config.channels["screen"].type == "console"
    assert config.channels["screen"].language == "zh"  # inherits the top-level language
    assert config.default_channels == ["screen"]
    assert config.retention == 3 * 86400
    assert config.dead_letter_retention == 14 * 86400
    assert config.retry_for == 5400
    assert config.rescan_interval == 45
    assert config.log_level == "debug"


def test_default_channels_default_to_every_configured_channel() -> None:
    config = parse_config("channels:\n  a: {type: console}\n  b: {type: console}\n", env={})
    assert config.default_channels == ["a", "b"]


def test_empty_alert_on_switches_every_state_off() -> None:
    assert parse_config("alert_on: []\n", env={}).alert_on == frozenset()


@pytest.mark.parametrize("text,seconds", [
    (90, 90.0), (1.5, 1.5), ("90", 90.0), ("30s", 30.0), ("10m", 600.0), ("2h", 7200.0), ("7d", 604800.0),
    ("1w", 604800.0), ("1h30m", 5400.0), ("250ms", 0.25), (" 5 m ", 300.0),
])
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["10x", "m10", "", "ten minutes", True, [1], "1h 3", "nan"])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


# ---------------------------------------------------------------- ${VAR}


def test_env_substitution_in_strings() -> None:
    config = parse_config(textwrap.dedent("""
        spool: ${SPOOL_BASE}/spool
        channels:
          screen: {type: console, language: "${LANG_CHOICE}"}
    """), env={"SPOOL_BASE": "/srv/sentinel", "LANG_CHOICE": "zh"})
    assert config.spool == Path("/srv/sentinel/spool")
    assert config.channels["screen"].language == "zh"


def test_env_substitution_feeds_validation() -> None:
    """A substituted value is validated like a literal one."""
    assert parse_config("stall_timeout: ${STALL}\n", env={"STALL": "20m"}).stall_timeout == 1200
    problems = problems_of("stall_timeout: ${STALL}\n", env={"STALL": "soon"})
    assert problems[0].startswith("stall_timeout (line 1): ")


def test_missing_env_var_names_the_key_and_the_variable() -> None:
    problems = problems_of("""
        language: en
        spool: ${NOT_SET_ANYWHERE}/spool
    """)
    assert problems == ["spool (line 3): environment variable NOT_SET_ANYWHERE is not set"]


def test_escaped_dollar_brace_is_literal() -> None:
    config = parse_config("spool: /data/$${HOME}\n", env={"HOME": "/root"})
    assert config.spool == Path("/data/${HOME}")


def test_invalid_variable_reference() -> None:
    problems = problems_of("spool: /x/${1BAD}\n")
    assert problems == ["spool (line 1): ${1BAD} is not a valid environment variable reference"]


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("text,expected", [
    ("langauge: en\n", "langauge (line 1): unknown key; did you mean 'language'?"),
    ("language: fr\n", "language (line 1): must be one of en, zh, not 'fr'"),
    ("log_level: loud\n", "log_level (line 1): must be one of debug, info, warning, error, not 'loud'"),
    ("spool: relative/dir\n", "spool (line 1): must be an absolute path"),
    ("state_dir: 12\n", "state_dir (line 1): must be a path, not a number"),
    ("stall_timeout: 10x\n", "stall_timeout (line 1): '10x' is not a duration"),
    ("stall_timeout: 0\n", "stall_timeout (line 1): must be longer than zero"),
    ("retention: yes\n", "retention (line 1): must be a duration such as 30s"),
    ("retry_for: -5m\n", "retry_for (line 1): '-5m' is not a duration"),
    ("rescan_interval: [1]\n", "rescan_interval (line 1): must be a duration"),
    ("dead_letter_retention: -1\n", "dead_letter_retention (line 1): must be longer than zero"),
    ("alert_on: crashed\n", "alert_on (line 1): must be a list of states"),
    ("alert_on:\n  - crashed\n  - kiled\n",
     "alert_on[1] (line 3): unknown state 'kiled'; states are: finished"),
    ("channels: [a]\n", "channels (line 1): must be a mapping of keys to values, not a list"),
    ("channels:\n  a: console\n", "channels.a (line 2): must be a mapping with at least a 'type'"),
    ("channels:\n  a:\n    typ: console\n", "channels.a (line 2): missing 'type' (one of:"),
    ("channels:\n  a:\n    type: pager\n",
     "channels.a.type (line 3): unknown channel type 'pager'; types are:"),
    ("channels:\n  bad name: {type: console}\n", "channels.bad name (line 2): a channel name must be"),
    ("channels:\n  inline-x: {type: console}\n", "channels.inline-x (line 2): names starting with 'inline-'"),
    ("channels:\n  a: {type: console}\ndefault_channels: a\n",
     "default_channels (line 3): must be a list of channel names, not a string"),
    ("channels:\n  a: {type: console}\ndefault_channels: [a, b]\n",
     "default_channels[1] (line 3): 'b' is not a channel defined under channels; channels: a"),
    ("default_channels: [phone]\n", "default_channels[0] (line 1): 'phone' is not a channel defined"),
    ("retention: 1d\nretention: 2d\n", "retention (line 2): duplicate key"),
    ("- a\n- b\n", "(file) (line 1): must be a mapping of keys to values, not a list"),
    ("language: [en\n", "(file) (line 2): not valid YAML"),
    ("a: &x 1\n<<: {b: 2}\n", "(file) (line 1): YAML merge keys (<<) are not supported"),
])
def test_each_error_names_key_path_and_line(text: str, expected: str) -> None:
    problems = problems_of(text)
    assert any(p.startswith(expected) for p in problems), problems


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, """
        spool: relative
        languag: en
        stall_timeout: forever
        alert_on: [finished, exploded]
        channels:
          phone:
            type: bark
            key: ${UNSET_BARK_KEY}
          pager:
            type: sms
        default_channels: [phone, nowhere]
        log_level: chatty
    """)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    problems = info.value.problems
    paths = [p.split(" (line")[0] for p in problems]
    assert paths == ["spool", "languag", "stall_timeout", "alert_on[1]", "channels.phone.key",
                     "channels.pager.type", "default_channels[1]", "log_level"]
    assert problems[4] == "channels.phone.key (line 9): environment variable UNSET_BARK_KEY is not set"
    message = str(info.value)
    assert message.startswith(f"{path}: 8 problems in the configuration:")
    assert all(p in message for p in problems)
    assert [d.line for d in info.value.details] == [2, 3, 4, 5, 9, 11, 12, 13]


def test_channel_options_are_checked_by_the_channel() -> None:
    problems = problems_of("""
        channels:
          chat:
            type: slack
            webhook: https://hooks.slack.com/services/x
    """)
    joined = "\n".join(problems)
    assert "channels.chat.webhook (line 5): unknown option" in joined
    assert "channels.chat.webhook_url" in joined  # required, and missing


def test_unknown_channel_option_is_rejected() -> None:
    problems = problems_of("channels:\n  screen:\n    type: console\n    colour: red\n")
    assert len(problems) == 1 and problems[0].startswith("channels.screen.colour (line 4): unknown option")


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "absent.yaml")
    assert info.value.problems == ["(file): cannot read the file: No such file or directory"]


# ---------------------------------------------------------------- secrets and permissions

SECRET_CONFIG = """
    channels:
      phone:
        type: bark
        key: {key}
"""


def test_world_readable_file_with_a_literal_secret_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path, SECRET_CONFIG.format(key="abcdefghijklmnopqrstuv"), mode=0o644)
    with caplog.at_level(logging.WARNING, logger="sentinel.config"):
        load_config(path)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "readable by group and others" in warnings[0] and "chmod 600" in warnings[0]
    assert "abcdefghijklmnopqrstuv" not in warnings[0]


def test_private_file_with_a_secret_is_quiet(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path, SECRET_CONFIG.format(key="abcdefghijklmnopqrstuv"), mode=0o600)
    with caplog.at_level(logging.WARNING, logger="sentinel.config"):
        load_config(path)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_secret_from_the_environment_does_not_count(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path, SECRET_CONFIG.format(key="${BARK_KEY}"), mode=0o644)
    with caplog.at_level(logging.WARNING, logger="sentinel.config"):
        config = load_config(path, env={"BARK_KEY": "abcdefghijklmnopqrstuv"})
    assert config.channels["phone"].options["key"] == "abcdefghijklmnopqrstuv"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_problems_never_repeat_a_secret_value() -> None:
    problems = problems_of("""
        channels:
          phone:
            type: bark
            key: 12
            url: not-a-url-but-secret-ish
    """)
    assert problems and all("not-a-url-but-secret-ish" not in p for p in problems)


def test_nested_channel_option_problem_has_its_own_line() -> None:
    problems = problems_of("""
        channels:
          phone:
            type: bark
            key: abcdefghijklmnopqrstuv
            level:
              finished: passive
              killed: loud
    """)
    assert len(problems) == 1
    assert problems[0].startswith("channels.phone.level.killed (line 8): must be one of")
