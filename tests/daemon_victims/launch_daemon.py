"""Runs the real daemon from a config file, with a short retry schedule.

    python tests/daemon_victims/launch_daemon.py CONFIG [--retry-base SECONDS]

Exactly what ``sentinel daemon --config CONFIG`` runs, except that failed
deliveries are retried after fractions of a second instead of ~10 s, so the
"webhook down, then up" tests finish quickly. Logs go to stderr.
"""

from __future__ import annotations

import argparse
import logging
import sys

from sentinel import daemon
from sentinel.daemon.config import load_config
from sentinel.delivery.outbox import RetryPolicy


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("--retry-base", type=float, default=0.2)
    args = parser.parse_args()
    config = load_config(args.config)
    level = getattr(logging, str(config.log_level).upper(), logging.INFO)
    logging.basicConfig(stream=sys.stderr, level=level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    policy = RetryPolicy(base=args.retry_base, cap=args.retry_base * 4, retry_for=config.retry_for)
    return daemon.run(config, retry_policy=policy)


if __name__ == "__main__":
    sys.exit(main())
