"""Daemon configuration: the model, the embedded default, and loading.

PLACEHOLDER MODEL — the config issue fills in `load_config` (validation with
key paths and lines, ${VAR} substitution, unknown keys rejected).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from sentinel.alerts import ALERT_STATES
from sentinel.spool import DAEMON_STATE_DIR, spool_dir


@dataclass
class ChannelConfig:
    name: str
    type: str
    options: dict[str, Any]  # validated, ${VAR}s substituted; includes secrets
    language: str = "en"


@dataclass
class Config:
    spool: Optional[Path] = None  # None: the shared rule (sentinel.spool.spool_dir)
    state_dir: Optional[Path] = None  # None: <spool>/.daemon
    language: str = "en"
    stall_timeout: float = 600.0
    alert_on: frozenset[str] = frozenset(ALERT_STATES)
    channels: dict[str, ChannelConfig] = field(
        default_factory=lambda: {"console": ChannelConfig("console", "console", {})}
    )
    default_channels: list[str] = field(default_factory=lambda: ["console"])
    retention: float = 7 * 86400.0  # ended runs and delivered alerts are kept this long
    dead_letter_retention: float = 30 * 86400.0
    retry_for: float = 48 * 3600.0  # transient failures are retried at least this long
    rescan_interval: float = 30.0  # full spool rescan, the safety net under inotify
    log_level: str = "info"
    source: Optional[Path] = None  # the file it came from, for messages

    def spool_path(self) -> Path:
        return self.spool if self.spool is not None else spool_dir()

    def state_path(self) -> Path:
        return self.state_dir if self.state_dir is not None else self.spool_path() / DAEMON_STATE_DIR


def default_config() -> Config:
    """The embedded default: the default spool, alerts printed to the console."""
    return Config()
