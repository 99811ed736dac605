"""Real Prometheus and Alertmanager for the fleet tests and the fleet benchmark.

    with Alertmanager(tmp, receiver_url, group_wait="5s") as am, \\
         Prometheus(tmp, targets={"node-a": port_a}, alertmanager=am.address, rule_for="3s") as prom:
        ...

Each is the Debian package's binary (``prometheus``, ``prometheus-alertmanager``),
started with its own config and data directory under ``tmp``, bound to
127.0.0.1 on a free port, and stopped (SIGTERM, then SIGKILL) at the end;
their systemd services are never touched. The configs are the shipped ones
(``deploy/``) with only addresses, intervals and ``for:`` durations changed.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import urllib.request
from pathlib import Path
from typing import Any, Optional

import yaml

from tests.victims.harness import ROOT, missing, wait_for

RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
PROMETHEUS_EXAMPLE = ROOT / "deploy" / "prometheus" / "prometheus.yml"
ALERTMANAGER_EXAMPLE = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
PROMETHEUS_BIN = "prometheus"
ALERTMANAGER_BIN = "prometheus-alertmanager"
INSTALL_HINT = "apt-get update && apt-get install -y prometheus prometheus-alertmanager"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def binary(name: str) -> str:
    """The binary's path; skips the test (fails under CI) when it is not installed."""
    path = shutil.which(name) or (f"/usr/bin/{name}" if os.path.exists(f"/usr/bin/{name}") else None)
    if path:
        return path
    missing(f"{name} is not installed ({INSTALL_HINT}; tests/run.py does it when it can)")


def get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as answer:  # noqa: S310 (loopback only)
        return bytes(answer.read())


def get_json(url: str) -> Any:
    return json.loads(get(url))


def shipped_rules(rule_for: Optional[str]) -> dict[str, Any]:
    """deploy/prometheus/rules.yml, with every ``for:`` set to ``rule_for`` (None: as shipped)."""
    rules = yaml.safe_load(RULES.read_text())
    if rule_for is not None:
        for group in rules["groups"]:
            for rule in group["rules"]:
                if "for" in rule:
                    rule["for"] = rule_for
    return rules


class _Service:
    name = "service"

    def __init__(self, tmp: Path) -> None:
        self.dir = Path(tmp) / self.name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.log_path = self.dir / "log"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def argv(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> _Service:
        with open(self.log_path, "wb") as log_file:
            self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=log_file,
                                         stderr=subprocess.STDOUT, cwd=str(self.dir))
        wait_for(self._ready, 60, interval=0.1, what=f"{self.name} ready ({self.log_path})")
        return self

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited {self.proc.returncode}:\n{self.log()}")
        try:
            get(self.url + "/-/ready", timeout=1.0)
            return True
        except OSError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(15)

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class Alertmanager(_Service):
    """The shipped route (group by job), its receiver pointed at ``receiver_url``."""

    name = "alertmanager"

    def __init__(self, tmp: Path, receiver_url: str, *, group_wait: Optional[str] = None,
                 group_interval: Optional[str] = None) -> None:
        super().__init__(tmp)
        config = yaml.safe_load(ALERTMANAGER_EXAMPLE.read_text())
        for receiver in config["receivers"]:
            for hook in receiver.get("webhook_configs", []):
                hook["url"] = receiver_url
        if group_wait is not None:
            config["route"]["group_wait"] = group_wait
        if group_interval is not None:
            config["route"]["group_interval"] = group_interval
        self.config_path = self.dir / "alertmanager.yml"
        self.config_path.write_text(yaml.safe_dump(config))

    def argv(self) -> list[str]:
        return [binary(ALERTMANAGER_BIN), f"--config.file={self.config_path}",
                f"--storage.path={self.dir / 'data'}", f"--web.listen-address={self.address}",
                "--cluster.listen-address=", "--log.level=info"]


class Prometheus(_Service):
    """Scrapes ``targets`` (host -> port) as job ``sentinel`` with the shipped rules."""

    name = "prometheus"

    def __init__(self, tmp: Path, targets: dict[str, int], alertmanager: str, *,
                 scrape_interval: str = "1s", scrape_timeout: str = "500ms", rule_for: Optional[str] = "3s",
                 evaluation_interval: Optional[str] = None) -> None:
        super().__init__(tmp)
        (self.dir / "rules.yml").write_text(yaml.safe_dump(shipped_rules(rule_for)))
        config = yaml.safe_load(PROMETHEUS_EXAMPLE.read_text())
        config["global"].update(scrape_interval=scrape_interval, scrape_timeout=scrape_timeout,
                                evaluation_interval=evaluation_interval or scrape_interval)
        config["rule_files"] = [str(self.dir / "rules.yml")]
        config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] = [alertmanager]
        [job] = [j for j in config["scrape_configs"] if j["job_name"] == "sentinel"]
        job["static_configs"] = [{"targets": [f"127.0.0.1:{port}"], "labels": {"host": host}}
                                 for host, port in targets.items()]
        self.config_path = self.dir / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config))

    def argv(self) -> list[str]:
        return [binary(PROMETHEUS_BIN), f"--config.file={self.config_path}",
                f"--storage.tsdb.path={self.dir / 'data'}", f"--web.listen-address={self.address}",
                "--rules.alert.resend-delay=1s", "--log.level=info"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        from urllib.parse import quote

        answer = get_json(f"{self.url}/api/v1/query?query={quote(expr)}")
        return list(answer["data"]["result"])
