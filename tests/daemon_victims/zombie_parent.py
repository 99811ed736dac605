"""Starts a watched victim and never reaps it: once killed, it stays a zombie.

    python tests/daemon_victims/zombie_parent.py [victim args...]

Relays the child's ``READY <run_id>`` line, prints ``CHILD <pid>``, then
waits for stdin to close without ever calling wait() on the child.
"""

from __future__ import annotations

import os
import subprocess
import sys

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VICTIM = os.path.join(TESTS, "victims", "watch_victim.py")

child = subprocess.Popen([sys.executable, VICTIM, "sleep-forever", *sys.argv[1:]], stdout=subprocess.PIPE,
                         stdin=subprocess.DEVNULL, text=True)
for line in child.stdout:
    if line.startswith("READY"):
        print(line.strip(), flush=True)
        break
print("CHILD", child.pid, flush=True)
sys.stdin.read()
