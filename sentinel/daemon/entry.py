"""``sentinel daemon`` / ``python -m sentinel.daemon``: find the config, set up logging, run."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Optional, Sequence

from sentinel.common.logsetup import setup_logging
from sentinel.daemon.config import ConfigError, resolve_config

log = logging.getLogger("sentinel")


def run_daemon(config_path: Optional[str], log_level: Optional[str], log_format: str = "text") -> int:
    """The daemon's exit status; 78 (EX_CONFIG) for a config it cannot use."""
    setup_logging("info", log_format)
    try:
        config = resolve_config(config_path)
    except ConfigError as exc:
        print(f"sentinel: {exc}", file=sys.stderr)
        return os.EX_CONFIG
    setup_logging(log_level or config.log_level, log_format)
    log.info(
        "config: %s; spool: %s; channels: %s (default: %s)",
        config.source or "embedded default (alerts printed to the console)",
        config.spool_path(),
        ", ".join(config.channels) or "none",
        ", ".join(config.default_channels) or "none",
    )
    from sentinel import daemon

    return int(daemon.run(config, log_format=log_format) or 0)


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m sentinel.daemon")
    parser.add_argument("--config", metavar="PATH", help="config file (default: the config search)")
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"),
                        help="override the config's log_level")
    args = parser.parse_args(list(argv))
    return run_daemon(args.config, args.log_level)
