"""One hostile local user beside a benchmark's normal load (the soak's "hostile" phase).

A throw-away user (``tests.users.throwaway_user``) does at once what a
local user can do to a shared daemon:

- a flood of run records naming pids that never existed (paced, per second);
- many records naming one live process of theirs and four of its threads;
- job records beside many idle processes of theirs (``/proc`` work);
- a run that writes a burst of messages to the shared channel;
- connections to the metrics port that never finish their request
  (``fairness.SlowClients``: reopened as the daemon cuts them).

Root only (it makes the user). Everything it starts is stopped on exit.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from fairness import SlowClients

from tests.users import become, home_for, throwaway_user
from tests.victims.harness import VICTIMS, WATCH_VICTIM, Victim

USER_PYTHON = "/usr/bin/python3"
RECORD_FLOOD = VICTIMS / "record_flood.py"
JOB_FLOOD = Path(__file__).resolve().parent.parent / "tests" / "daemon_victims" / "job_flood.py"
HOSTILE_NAME = "hostile"  # the message flooder's run name (the soak's own runs are soak-NNNNN)


@dataclass(frozen=True)
class HostileSize:
    records_per_second: int  # run records naming pids that never existed
    hog_records: int  # records naming one process and 4 of its threads
    jobs: int  # job records ...
    idle: int  # ... beside this many idle processes
    messages: int  # messages one run writes at once
    slow_clients: int  # never-finished connections to the metrics port


FULL = HostileSize(records_per_second=100, hog_records=300, jobs=150, idle=1500, messages=1000,
                   slow_clients=300)
TINY = HostileSize(records_per_second=20, hog_records=50, jobs=20, idle=100, messages=200, slow_clients=50)


class HostileUser:
    """``with HostileUser(shared, spool, port, size) as mallory:`` her load runs inside."""

    def __init__(self, shared: Path, spool: Path, metrics_port: int, size: HostileSize,
                 seconds: float) -> None:
        self.shared, self.spool, self.port, self.size = shared, spool, metrics_port, size
        self.seconds = seconds
        self.uid: Optional[int] = None
        self.home: Optional[Path] = None
        self.slow: Optional[SlowClients] = None
        self._stack = ExitStack()

    def _victim(self, script: Path, args: list[str]) -> Victim:
        assert self.home is not None
        victim = Victim(USER_PYTHON, script, args, self.home, spool_dir=self.spool,
                        preexec_fn=become(self.uid)).start()
        return self._stack.enter_context(victim)

    def __enter__(self) -> HostileUser:
        try:
            self.uid = self._stack.enter_context(throwaway_user())
            self.home = home_for(self.shared, self.uid)
            size, spool = self.size, str(self.spool)
            self._victim(RECORD_FLOOD, [spool, "self", str(size.hog_records)]).ready(timeout=120)
            self._victim(JOB_FLOOD, [spool, str(size.jobs), str(size.idle)]).ready(timeout=120)
            flood_count = int(size.records_per_second * (self.seconds + 600))  # outlasts the phase
            self._victim(RECORD_FLOOD, [spool, "fake", str(flood_count), str(size.records_per_second)])
            sends = [arg for n in range(size.messages) for arg in ("--send", f"{HOSTILE_NAME} flood {n}")]
            self._victim(WATCH_VICTIM, ["--heartbeat", "0.2", "sleep-forever", "--name", HOSTILE_NAME,
                                        "--steps", "1", *sends]).ready()
            self.slow = self._stack.enter_context(SlowClients(self.port, size.slow_clients))
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stack.close()


def is_normal_push(push: dict[str, Any], prefix: str) -> bool:
    """A push about one of the normal load's runs (their names start with ``prefix``)."""
    return prefix in str(push.get("title", "")) or prefix in str(push.get("body", ""))
