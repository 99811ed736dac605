#!/usr/bin/env python3
"""Set up everything the test suite needs, then run ruff, mypy and pytest.

    python3 tests/run.py [PYTEST ARGS ...]

Standard library only, so it works on a machine with nothing but Python 3.
It creates (or reuses) four virtual environments in the repository root:

    .venv                  this project, editable, with the test, swanlab,
                           prometheus, apprise, docs and stacks extras (the latest SwanLab
                           release; py-spy for the daemon's stacks of processes without the recorder)
    .venv-swanlab-0.7.20   swanlab 0.7.20 + psutil (the vendored-callback era)
    .venv-swanlab-0.6.11   swanlab 0.6.11 + swankit (the swankit-callback era)
    .venv-torch            torch 2.13.0 (the CPU wheel) + psutil: real torchrun jobs

The last three only run victim scripts (with the repository on PYTHONPATH);
tests find their interpreters through SENTINEL_TEST_PY_SWANLAB_0720,
SENTINEL_TEST_PY_SWANLAB_0611 and SENTINEL_TEST_PY_TORCH. The Debian packages
the tests run for real (Prometheus and Alertmanager for the fleet tests, Slurm
and munge for the scheduler tests, Docker for the container tests) are
installed with apt-get when missing and this runs as root; their services are
never started (the tests start the binaries, a dockerd of their own included).
An environment is reused when its marker file says it was built from the same
requirements (and, for .venv, the same pyproject.toml); otherwise it is
(re)installed.

Every step runs even if an earlier one failed: ruff on the repository,
mypy on sentinel/ (configured in pyproject.toml), then pytest.

Exit status: non-zero if any step fails, including a pytest run that
collected no test at all.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

ROOT = Path(__file__).resolve().parent.parent
MARKER = ".sentinel-env"
PYTEST_NO_TESTS = 5


class Env:
    def __init__(self, name: str, requirements: Sequence[str], env_var: Optional[str] = None,
                 editable: bool = False) -> None:
        self.name = name
        self.dir = ROOT / name
        self.requirements = list(requirements)
        self.env_var = env_var
        self.editable = editable

    @property
    def python(self) -> Path:
        return self.dir / "bin" / "python"

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        digest.update(sys.version.encode())
        digest.update("\n".join(self.requirements).encode())
        if self.editable:
            digest.update((ROOT / "pyproject.toml").read_bytes())
        return digest.hexdigest()


ENVS = [
    Env(".venv", [".[test,swanlab,prometheus,apprise,docs,stacks]"], editable=True),
    Env(".venv-swanlab-0.7.20", ["swanlab==0.7.20", "psutil"], env_var="SENTINEL_TEST_PY_SWANLAB_0720"),
    Env(".venv-swanlab-0.6.11", ["swanlab==0.6.11", "swankit"], env_var="SENTINEL_TEST_PY_SWANLAB_0611"),
    Env(".venv-torch", ["torch==2.13.0", "psutil"], env_var="SENTINEL_TEST_PY_TORCH"),
]


def say(text: str) -> None:
    print(f"[tests/run.py] {text}", flush=True)


def run(argv: List[str], env: Optional[Dict[str, str]] = None) -> int:
    say("$ " + " ".join(argv))
    return subprocess.call(argv, cwd=ROOT, env=env)


def ensure(venv: Env) -> bool:
    """Create or update one environment; False if that failed."""
    marker = venv.dir / MARKER
    wanted = venv.fingerprint()
    if venv.python.exists() and marker.exists() and marker.read_text().strip() == wanted:
        say(f"{venv.name}: up to date")
        return True
    started = time.monotonic()
    args = [str(venv.python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    for requirement in venv.requirements:
        args += ["-e", requirement] if venv.editable else [requirement]
    # An environment left broken (an interrupted build, a moved interpreter)
    # gets one rebuild from scratch before we give up.
    for fresh in (False, True):
        if fresh or not venv.python.exists():
            say(f"{venv.name}: creating")
            if run([sys.executable, "-m", "venv", "--clear", str(venv.dir)]) != 0:
                return False
        if run(args) == 0:
            break
        say(f"{venv.name}: installing {' '.join(venv.requirements)} failed")
    else:
        return False
    marker.write_text(wanted + "\n")
    say(f"{venv.name}: ready in {time.monotonic() - started:.0f}s")
    return True


# Debian packages the tests run for real, by a binary each installs (never as services: the tests
# start the binaries): Prometheus and Alertmanager (fleets), Slurm and munge (schedulers).
DEBIAN_PACKAGES = {"prometheus": "prometheus", "prometheus-alertmanager": "prometheus-alertmanager",
                   "promtool": "prometheus", "slurmctld": "slurm-wlm", "slurmd": "slurm-wlm",
                   "scontrol": "slurm-wlm", "munged": "munge",
                   # the container tests start their own dockerd (tests/docker_harness.py)
                   "dockerd": "docker.io"}
# Where they land, also when the PATH of whoever runs this lacks sbin.
SYSTEM_BIN_DIRS = ("/usr/bin", "/usr/sbin")


def ensure_debian_packages() -> None:
    """Install the packages of DEBIAN_PACKAGES that are missing, when this machine can (root,
    apt-get). Where it cannot, the tests that need them say so and skip (they fail under CI=true)."""
    missing = sorted({pkg for binary, pkg in DEBIAN_PACKAGES.items()
                      if not shutil.which(binary)
                      and not any(os.path.exists(f"{bindir}/{binary}") for bindir in SYSTEM_BIN_DIRS)})
    if not missing:
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        say(f"missing {', '.join(missing)} (apt-get install -y {' '.join(missing)}); "
            "the tests that need them will skip")
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    # policy-rc.d 101: the packages' services are not started on install.
    policy = Path("/usr/sbin/policy-rc.d")
    made_policy = not policy.exists()
    if made_policy:
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    try:
        if run(["apt-get", "update"], env) != 0 or run(["apt-get", "install", "-y", *missing], env) != 0:
            say(f"installing {', '.join(missing)} failed; the tests that need them will skip")
    finally:
        if made_policy:
            policy.unlink()


def main(argv: Sequence[str]) -> int:
    if sys.version_info < (3, 9):  # noqa: UP036 -- run by whatever python3 a machine has
        say(f"Python >= 3.9 is needed, this is {sys.version.split()[0]}")
        return 1
    for venv in ENVS:
        if not ensure(venv):
            return 1
    ensure_debian_packages()
    env = dict(os.environ)
    for venv in ENVS:
        if venv.env_var:
            env[venv.env_var] = str(venv.python)
    python = str(ENVS[0].python)

    failures = []
    if run([python, "-m", "ruff", "check", "."], env) != 0:
        failures.append("ruff check")
    if run([python, "-m", "mypy"], env) != 0:  # files and options: [tool.mypy] in pyproject.toml
        failures.append("mypy")
    code = run([python, "-m", "pytest", *argv], env)
    if code == PYTEST_NO_TESTS:
        say("pytest collected no tests: that is a failure here")
        failures.append("pytest (no tests ran)")
    elif code != 0:
        failures.append(f"pytest (exit {code})")
    if failures:
        say("FAILED: " + ", ".join(failures))
        return 1
    say("all passed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
