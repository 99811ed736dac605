"""The fleet keys of the daemon config: host, metrics, healthchecks, and the alertmanager channel."""

from __future__ import annotations

import pytest

from sentinel.daemon.config import ConfigError, channel_secrets, parse_config
from sentinel.fleet.keys import DEFAULT_GRACE, DEFAULT_PERIOD, default_host


def problems(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, env=env or {})
    return info.value.problems


def test_fleet_keys_are_off_by_default_and_host_is_the_hostname() -> None:
    config = parse_config("language: en\n", env={})
    assert config.metrics is None and config.healthchecks is None
    assert config.host == default_host()


def test_full_fleet_section_with_env_secret() -> None:
    config = parse_config(
        "host: node-a\n"
        "metrics: {listen: '127.0.0.1:9464', textfile: /var/lib/node_exporter/sentinel.prom}\n"
        "healthchecks: {url: 'https://hc.example.org/', api_key: '${HC_KEY}', period: 2m, grace: 5m,"
        " per_run: true}\n"
        "channels:\n  am: {type: alertmanager, urls: ['http://a:9093', 'http://b:9093']}\n",
        env={"HC_KEY": "secret-api-key-123"})
    assert config.host == "node-a"
    assert config.metrics.listen == ("127.0.0.1", 9464)
    assert str(config.metrics.textfile) == "/var/lib/node_exporter/sentinel.prom"
    hc = config.healthchecks
    assert (hc.url, hc.api_key, hc.period, hc.grace, hc.per_run) == (
        "https://hc.example.org", "secret-api-key-123", 120.0, 300.0, True)
    assert "secret-api-key-123" not in repr(config)
    assert "secret-api-key-123" in channel_secrets(config)  # redacted, and checked in file permissions
    assert config.channels["am"].options["host"] == "node-a"  # alerts name this daemon's host


def test_healthchecks_defaults() -> None:
    hc = parse_config("healthchecks: {api_key: abcdefgh}\n", env={}).healthchecks
    assert (hc.url, hc.period, hc.grace, hc.per_run) == ("https://healthchecks.io", DEFAULT_PERIOD,
                                                         DEFAULT_GRACE, False)


def test_every_fleet_problem_at_once_with_key_paths() -> None:
    found = problems(
        "hots: a\n"
        "metrics: {listn: '1.2.3.4:9464', textfile: rel.prom}\n"
        "healthchecks: {period: 10s, grace: soon, per_run: maybe, url: ftp://x}\n"
        "channels:\n  am: {type: alertmanager}\n  am2: {type: alertmanager, url: 'http://a', urls: ['http://b']}\n"
        "  am3: {type: alertmanager, urls: [nope], resolve_after: 5s}\n")
    text = "\n".join(found)
    assert "hots (line 1): unknown key; did you mean 'host'?" in found
    assert "metrics.listn (line 2): unknown key; did you mean 'listen'?" in found
    assert "metrics.textfile (line 2): must be an absolute path" in text
    assert "healthchecks.api_key (line 3): required" in text
    assert "healthchecks.period (line 3): must be between 60s and 365d (healthchecks' limits)" in found
    assert "healthchecks.grace (line 3): 'soon' is not a duration" in text
    assert "healthchecks.per_run (line 3): must be true or false" in found
    assert "healthchecks.url (line 3): must be the http(s) base URL" in text
    assert "channels.am.url (line 5): required (or urls: a list)" in found
    assert "channels.am2.url (line 6): set url (one Alertmanager) or urls" in text
    assert "channels.am3.urls.0 (line 7): must be an http(s) URL with a host" in found
    assert "channels.am3.resolve_after (line 7): must be at least 1m" in text


@pytest.mark.parametrize("listen, message", [
    ("9464", "must be ADDRESS:PORT"),
    ("127.0.0.1:http", "'http' is not a port number"),
    ("127.0.0.1:70000", "between 1 and 65535"),
    ("example.org:9464", "is not an IP address"),
])
def test_bad_listen_addresses(listen: str, message: str) -> None:
    assert any(message in p for p in problems(f"metrics: {{listen: '{listen}'}}\n"))


def test_metrics_textfile_must_be_a_prom_file_and_metrics_needs_an_exporter() -> None:
    assert any("must end in .prom" in p for p in problems("metrics: {textfile: /tmp/sentinel.txt}\n"))
    assert any("set listen" in p for p in problems("metrics: {}\n"))


def test_unset_env_for_the_api_key_is_reported_once() -> None:
    found = problems("healthchecks: {api_key: '${HC_KEY}'}\n")
    assert found == ["healthchecks.api_key (line 1): environment variable HC_KEY is not set"]


def test_host_must_be_a_plain_name() -> None:
    assert any(p.startswith("host (line 1): must be a name") for p in problems("host: \"a b\\e[31m\"\n"))
