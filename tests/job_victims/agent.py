"""A stand-in launcher agent: starts children with the given environments, as torchrun does.

    python agent.py '[{"env": {...}, "uid": 65534}, ...]'

Prints the children's pids on one line, then waits until stdin closes and
kills them. Each child is ``sleep 600`` (bounded: it ends by itself).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys


def main() -> None:
    children = []
    for spec in json.loads(sys.argv[1]):
        uid = spec.get("uid")
        children.append(subprocess.Popen(
            ["sleep", "600"], env=dict(os.environ, **spec["env"]),
            preexec_fn=(lambda uid=uid: os.setuid(uid)) if uid is not None else None,
        ))
    print(" ".join(str(c.pid) for c in children), flush=True)
    sys.stdin.read()
    for child in children:
        child.kill()
        child.wait()


if __name__ == "__main__":
    main()
