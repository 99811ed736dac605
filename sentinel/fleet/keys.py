"""The fleet keys of the daemon config: ``host``, ``metrics`` and ``healthchecks``.

    host: gpu-box-3                     # the name this daemon reports as (default: the hostname)
    metrics:
      listen: 127.0.0.1:9464            # /metrics, / and /status.json over HTTP
      textfile: /var/lib/node_exporter/textfile/sentinel.prom   # or for node_exporter
    healthchecks:
      url: https://healthchecks.io      # self-hosted: your instance's base URL
      api_key: ${HC_API_KEY}            # a project's read-write API key (a secret)
      period: 60s                       # the node check's period
      grace: 3m                         # ... and grace time
      per_run: false                    # also one check per run name (/start, /fail, /<exit code>)

Validation follows ``sentinel.daemon.config``'s rules (key paths, "did you mean",
durations, ``${ENV}``): ``check_fleet`` is called by its validator with the
top-level mapping and records problems through it.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlsplit

from sentinel.common.rules import absolute_path, parse_duration

FLEET_KEYS = ("host", "metrics", "healthchecks")
METRICS_KEYS = ("listen", "textfile")
HEALTHCHECKS_KEYS = ("url", "api_key", "period", "grace", "per_run")
DEFAULT_HEALTHCHECKS_URL = "https://healthchecks.io"
# healthchecks.io accepts a period and a grace time of 60 s to 365 days.
HC_MIN_SECONDS = 60.0
HC_MAX_SECONDS = 31_536_000.0
DEFAULT_PERIOD = 60.0
DEFAULT_GRACE = 180.0
_HOST_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}$")


@dataclass(frozen=True)
class MetricsConfig:
    listen: Optional[tuple[str, int]] = None  # (address, port); None: no HTTP server
    textfile: Optional[Path] = None  # a *.prom file for node_exporter's textfile collector


@dataclass(frozen=True)
class HealthchecksConfig:
    api_key: str
    url: str = DEFAULT_HEALTHCHECKS_URL
    period: float = DEFAULT_PERIOD
    grace: float = DEFAULT_GRACE
    per_run: bool = False

    def __repr__(self) -> str:  # never show the key
        return (f"HealthchecksConfig(url={self.url!r}, api_key='***', period={self.period:g}, "
                f"grace={self.grace:g}, per_run={self.per_run})")


def default_host() -> str:
    return socket.gethostname() or "localhost"


def parse_listen(value: Any) -> tuple[str, int]:
    """``"127.0.0.1:9464"``, ``"[::1]:9464"`` or ``":9464"`` (all addresses) -> (address, port)."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = f"127.0.0.1:{value}"
    if not isinstance(value, str) or ":" not in value:
        raise ValueError("must be ADDRESS:PORT, e.g. 127.0.0.1:9464")
    address, _, port_text = value.strip().rpartition(":")
    address = address.strip("[]") or "0.0.0.0"
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"{port_text!r} is not a port number (ADDRESS:PORT, e.g. 127.0.0.1:9464)") from None
    if not 0 < port < 65536:
        raise ValueError("the port must be between 1 and 65535")
    try:
        ipaddress.ip_address(address)
    except ValueError:
        if address != "localhost":
            raise ValueError(f"{address!r} is not an IP address (or localhost)") from None
    return address, port


def check_fleet(validator: Any, data: dict, config: Any) -> None:
    """Fill ``config.host``, ``config.metrics`` and ``config.healthchecks`` from ``data``."""
    if "host" in data:
        host = data["host"]
        if not isinstance(host, str) or not _HOST_RE.match(host):
            validator.problem(("host",), "must be a name of letters, digits, '_', '-', '.' or ':' "
                              "(at most 128)")
        else:
            config.host = host
    if "metrics" in data:
        config.metrics = _metrics(validator, data["metrics"])
    if "healthchecks" in data:
        config.healthchecks = _healthchecks(validator, data["healthchecks"])


def _metrics(validator: Any, value: Any) -> Optional[MetricsConfig]:
    path = ("metrics",)
    block = validator.mapping(value, path)
    if block is None:
        return None
    validator.check_keys(block, path, METRICS_KEYS)
    listen = validator.take(block, "listen", path, parse_listen) if "listen" in block else None
    textfile = validator.take(block, "textfile", path, _textfile) if "textfile" in block else None
    if "listen" not in block and "textfile" not in block:
        validator.problem(path, "set listen (an HTTP /metrics endpoint), textfile (for node_exporter) "
                          "or both; leave metrics out to switch them off")
    if listen is None and textfile is None:
        return None
    return MetricsConfig(listen=listen, textfile=textfile)


def _textfile(value: Any) -> Path:
    path = absolute_path(value)
    if path.suffix != ".prom":
        raise ValueError("must end in .prom (node_exporter's textfile collector reads only *.prom files)")
    return path


def _healthchecks(validator: Any, value: Any) -> Optional[HealthchecksConfig]:
    path = ("healthchecks",)
    block = validator.mapping(value, path)
    if block is None:
        return None
    validator.check_keys(block, path, HEALTHCHECKS_KEYS)
    ok = True
    url = block.get("url", DEFAULT_HEALTHCHECKS_URL)
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        if path + ("url",) not in validator.unresolved:
            validator.problem(path + ("url",), "must be the http(s) base URL of healthchecks.io or your "
                              "own instance, e.g. https://healthchecks.io")
        ok = False
    api_key = block.get("api_key")
    if not isinstance(api_key, str) or not api_key.strip():
        if path + ("api_key",) not in validator.unresolved:
            validator.problem(path + ("api_key",), "required: a read-write API key of the project "
                              "(Project Settings); write it as ${ENV_VAR}")
        ok = False

    def seconds(key: str, default: float) -> Optional[float]:
        if key not in block:
            return default
        try:
            value = parse_duration(block[key])
        except ValueError as exc:
            validator.problem(path + (key,), str(exc))
            return None
        if not HC_MIN_SECONDS <= value <= HC_MAX_SECONDS:
            validator.problem(path + (key,), "must be between 60s and 365d (healthchecks' limits)")
            return None
        return value

    period = seconds("period", DEFAULT_PERIOD)
    grace = seconds("grace", DEFAULT_GRACE)
    per_run = block.get("per_run", False)
    if not isinstance(per_run, bool):
        validator.problem(path + ("per_run",), "must be true or false")
        ok = False
    if not ok or period is None or grace is None:
        return None
    return HealthchecksConfig(api_key=api_key.strip(), url=url.rstrip("/"), period=period, grace=grace,
                              per_run=per_run)
