"""A run whose record its author wrote by hand, claiming whatever it likes.

    python tests/victims/forged_run.py SPOOL '{"user": "root", "channels": [...]}'

Writes a run record for this very process (so the daemon accepts it: the
files are the author's own), with the JSON object's fields put over the
honest ones, prints "READY <run_id>" and waits to be killed. Stdlib and
sentinel only.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from sentinel.host.procid import ProcessIdentity
from tests.victims._common import wait_forever
from tests.victims.hand_records import write_own_record


def main() -> None:
    spool_dir, overrides = Path(sys.argv[1]), json.loads(sys.argv[2])
    run_id = write_own_record(spool_dir, "forged", ProcessIdentity.current(), overrides)
    print(f"READY {run_id}", flush=True)
    wait_forever()  # nobody kills it: it still ends by itself


if __name__ == "__main__":
    main()
