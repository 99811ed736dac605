"""The privileges systemd/sentinel.service gives the daemon, as a command prefix.

    daemon.wrapper = unit_privileges().command()   # the daemon runs as the unit starts it

The unit's ``CapabilityBoundingSet=``, ``AmbientCapabilities=`` and
``NoNewPrivileges=`` are parsed from the shipped file and turned into a
``setpriv(1)`` prefix. Started by root through it, the daemon's permitted and
effective sets are exactly the unit's bounding set (root's capabilities on
exec are its bounding set), so a feature that needs a capability the unit
does not grant fails here as it would in production: the unit and the code
cannot drift apart. ``SystemCallFilter=`` cannot be applied without systemd;
tests/test_systemd.py checks the system calls the features need against
``systemd-analyze syscall-filter`` instead.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "sentinel.service"
_CAP_NAME = re.compile(r"^CAP_[A-Z_]+$")


def unit_settings(unit: Path) -> dict[str, list[str]]:
    """``Section.Key`` -> its assignments in order, from a unit file (comments dropped)."""
    values: dict[str, list[str]] = {}
    section = ""
    for raw in unit.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        values.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return values


def service_settings(unit: Path = UNIT) -> dict[str, list[str]]:
    """``[Service]`` key -> its assignments in order (an empty one resets a list, as systemd does)."""
    return {key.removeprefix("Service."): assignments for key, assignments in unit_settings(unit).items()
            if key.startswith("Service.")}


def _capability_list(assignments: list[str]) -> frozenset[str]:
    """systemd's semantics for a capability list: assignments add up, an empty one resets,
    a leading ``~`` inverts (not used by our unit: refused rather than guessed)."""
    caps: set[str] = set()
    for value in assignments:
        if not value:
            caps.clear()
            continue
        if value.startswith("~"):
            raise ValueError(f"inverted capability list not supported here: {value!r}")
        for name in value.split():
            if not _CAP_NAME.match(name):
                raise ValueError(f"not a capability name: {name!r}")
            caps.add(name)
    return frozenset(caps)


@dataclass(frozen=True)
class UnitPrivileges:
    bounding: frozenset[str]
    ambient: frozenset[str]
    no_new_privileges: bool

    def without(self, *caps: str) -> UnitPrivileges:
        """The same unit with ``caps`` taken out (to prove a feature needs them)."""
        return UnitPrivileges(self.bounding - set(caps), self.ambient - set(caps), self.no_new_privileges)

    def command(self) -> list[str]:
        """A ``setpriv`` prefix that runs a command (as root) with exactly these privileges."""
        tool = shutil.which("setpriv")
        if tool is None:
            raise RuntimeError("setpriv(1) is not installed (util-linux)")

        def spec(caps: frozenset[str]) -> str:
            return ",".join(["-all", *(f"+{c[4:].lower()}" for c in sorted(caps))])

        argv = [tool, f"--bounding-set={spec(self.bounding)}",
                # Inheritable = ambient: an ambient capability must be inheritable too.
                f"--inh-caps={spec(self.ambient)}", f"--ambient-caps={spec(self.ambient)}"]
        if self.no_new_privileges:
            argv.append("--no-new-privs")
        return [*argv, "--"]


def unit_privileges(unit: Path = UNIT) -> UnitPrivileges:
    settings = service_settings(unit)
    return UnitPrivileges(
        bounding=_capability_list(settings.get("CapabilityBoundingSet", [])),
        ambient=_capability_list(settings.get("AmbientCapabilities", [])),
        no_new_privileges=(settings.get("NoNewPrivileges", ["no"])[-1].lower() in ("yes", "true", "1", "on")),
    )


def unavailable() -> Optional[str]:
    """Why the unit's privileges cannot be applied here (None if they can)."""
    if os.geteuid() != 0:
        return "the system unit runs the daemon as root; these tests need root"
    if shutil.which("setpriv") is None:
        return "setpriv(1) is not installed"
    return None


def effective_capabilities(pid: int) -> int:
    """A process's CapEff mask, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    raise AssertionError(f"no CapEff for {pid}")


def capability_mask(caps: frozenset[str]) -> int:
    """The bit mask of capability names, numbered by the running kernel's capsh."""
    mask = 0
    for name in caps:
        out = subprocess.run(["capsh", f"--explain={name.lower()}"], capture_output=True, text=True).stdout
        match = re.search(r"\((\d+)\)", out)
        if match is None:
            raise AssertionError(f"capsh does not know {name}: {out!r}")
        mask |= 1 << int(match.group(1))
    return mask
