"""Victim scripts started as another local user: real processes of that user.

    with user_run(shared, spool, mallory, "sleep-forever", "--name", "x") as run: ...
    with forged_run(home_for(shared, mallory), spool, mallory, {"user": "root"}) as run: ...

Each runs ``USER_PYTHON`` (skipped where there is none) in a working
directory the user owns, its privileges dropped to that user's before exec.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.users import become, home_for, user_python
from tests.victims.harness import VICTIMS, WATCH_VICTIM, Victim

FORGED_RUN = VICTIMS / "forged_run.py"


def user_run(shared: Path, spool: Path, uid: int, *args: str) -> Victim:
    """``watch_victim.py`` started by ``uid`` (heartbeat 0.2 s), ``args`` its mode and options."""
    return Victim(user_python(), WATCH_VICTIM, ["--heartbeat", "0.2", *args], home_for(shared, uid),
                  spool_dir=spool, preexec_fn=become(uid)).start()


def forged_run(home: Path, spool: Path, uid: int, fields: dict[str, Any]) -> Victim:
    """A run record ``uid`` wrote by hand for its own live process, with ``fields`` over it
    (``tests/victims/forged_run.py``; ``home``: a directory of ``uid``'s, ``home_for``)."""
    return Victim(user_python(), FORGED_RUN, [str(spool), json.dumps(fields)], home,
                  spool_dir=spool, preexec_fn=become(uid)).start()
