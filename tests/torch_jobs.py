"""Real torchrun jobs for tests and benchmarks: 4 CPU ranks (gloo) on this host.

    with TorchJob(daemon, "sleep", python=torch_python()) as job:   # all ranks up, rank 0 READY
        os.kill(job.ranks[3], signal.SIGKILL)

The job runs ``tests/job_victims/torch_worker.py`` under
``python -m torch.distributed.run`` in its own session, so the agent and
every worker are killed at the end whatever happened. torch comes from its
own environment (``SENTINEL_TEST_PY_TORCH``, built by tests/run.py).

``TorchJob(..., uid=U, home=H)`` runs the job as another local user (root
only): in a private mount namespace where the interpreter under root's 0700
home is reachable (``as_user_with_torch``), then ``setpriv`` to that user.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
from pathlib import Path
from typing import Optional

from tests.daemon_harness import DaemonProcess
from tests.victims.harness import ROOT, Victim, wait_for

WORKER = ROOT / "tests" / "job_victims" / "torch_worker.py"
ENV_TORCH = "SENTINEL_TEST_PY_TORCH"


def torch_python_path() -> Optional[str]:
    """The interpreter with torch: $SENTINEL_TEST_PY_TORCH, else the repository's .venv-torch."""
    for path in (os.environ.get(ENV_TORCH), str(ROOT / ".venv-torch" / "bin" / "python")):
        if path and Path(path).exists():
            return path
    return None


class TorchJob:
    """``torchrun --standalone --nproc-per-node N torch_worker.py ...`` in its own session."""

    def __init__(self, daemon: DaemonProcess, mode: str, *args: str, python: str, nproc: int = 4,
                 uid: Optional[int] = None, home: Optional[Path] = None,
                 env: Optional[dict[str, str]] = None) -> None:
        self.nproc = nproc
        tmp = home if home is not None else daemon.tmp
        self.victim = Victim(python, WORKER, [], tmp, spool_dir=daemon.spool, env=env)  # its own session
        self.victim.argv = [python, "-m", "torch.distributed.run", "--standalone",
                            f"--nproc-per-node={nproc}", "--monitor-interval=0.1", str(WORKER), mode, *args]
        if uid is not None:
            self.victim.argv = [*as_user_with_torch(uid, python), *self.victim.argv]
        self.ranks: dict[int, int] = {}  # rank -> pid
        self.run_id = ""

    def start(self) -> TorchJob:
        self.victim.start()
        for _ in range(self.nproc):
            _, rank, pid = self.victim.expect("RANK ", timeout=120).split()
            self.ranks[int(rank)] = int(pid)
        self.run_id = self.victim.ready(timeout=60)
        return self

    def kill_all(self) -> None:
        if self.victim.proc is not None and self.victim.proc.poll() is None:
            os.killpg(self.victim.proc.pid, signal.SIGKILL)
            self.victim.proc.wait()
        for pid in self.ranks.values():  # workers left behind by a dead agent
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def __enter__(self) -> TorchJob:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill_all()


# Root's home is 0700: another user cannot reach the interpreter under it.
# In a private mount namespace (nobody else sees it), /root becomes an empty
# tmpfs holding only the interpreter's tree, then the command runs as the user.
_REACH_AND_BECOME = """set -e
stage=$(mktemp -d)
mount --bind "$1" "$stage"
mount -t tmpfs -o mode=0755,size=1m sentinel-root /root
mkdir -p "$1"
mount --move "$stage" "$1"
rmdir "$stage"
shift
exec "$@"
"""


def as_user_with_torch(uid: int, python: str) -> list[str]:
    """A command prefix: run as ``uid`` (its group, no others) with ``python`` reachable."""
    tools = {name: shutil.which(name) for name in ("unshare", "setpriv")}
    if os.geteuid() != 0 or None in tools.values():
        raise RuntimeError("running a job as another user needs root, unshare(1) and setpriv(1)")
    gid = pwd.getpwuid(uid).pw_gid
    real = Path(python).resolve()
    under_root = [p for p in real.parents if p.parent == Path("/root")]
    become = [str(tools["setpriv"]), f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--"]
    if not under_root:
        return become
    return [str(tools["unshare"]), "--mount", "--propagation", "private", "sh", "-c", _REACH_AND_BECOME, "sh",
            str(under_root[0]), *become]


def watching_siblings(daemon: DaemonProcess, count: int, jobs: int = 1, timeout: float = 60.0) -> None:
    """The daemon found the job's ``count`` other ranks (its log says so, once for each of ``jobs`` jobs)."""
    text = f"watching {count} more rank(s) on this host"
    wait_for(lambda: daemon.log().count(text) >= jobs, timeout, what=f"{text!r} {jobs} time(s) in the log")
