"""``python -m sentinel.daemon [--config PATH]``: the daemon without the CLI's other commands."""

from __future__ import annotations

import sys

from sentinel.daemon.entry import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
