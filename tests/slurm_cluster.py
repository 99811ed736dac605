"""A real one-node Slurm cluster on 127.0.0.1 for tests (Debian's slurm-wlm + munge).

    with SlurmCluster(tmp) as cluster:          # munged, slurmctld, slurmd started
        job_id = cluster.sbatch(script, "--time=1")
        cluster.scancel(job_id)

Everything lives in ``tmp``: a private munge key and socket, slurm.conf on
free loopback ports, state and logs; the daemons are stopped at the end.
Two partitions share the node (``low``, and ``high`` with a higher priority
tier, ``PreemptMode=REQUEUE``) so a job can be preempted. Needs root (the
daemons run as root here) and the binaries; ``unavailable()`` says why not.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any, Optional

from tests.victims.harness import wait_for

BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "scancel", "scontrol")


def unavailable() -> Optional[str]:
    """Why a cluster cannot start here, or None."""
    if os.geteuid() != 0:
        return "needs root to run slurmctld/slurmd/munged"
    missing = [b for b in BINARIES if shutil.which(b) is None]
    if missing:
        return f"Slurm is not installed ({', '.join(missing)} missing: apt-get install slurm-wlm munge)"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SlurmCluster:
    def __init__(self, tmp: Path) -> None:
        self.dir = Path(tmp)
        self.conf = self.dir / "slurm.conf"
        self.munge = self.dir / "munge"
        self.env = dict(os.environ, SLURM_CONF=str(self.conf))
        self.pids: dict[str, Path] = {}

    def start(self) -> SlurmCluster:
        for sub in ("state", "spool", "log"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        self.munge.mkdir(mode=0o711, exist_ok=True)
        key = self.munge / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        d = self.dir
        self.conf.write_text(f"""\
ClusterName=sentineltest
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
AuthType=auth/munge
AuthInfo=socket={self.munge}/socket
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/log/slurmctld.log
SlurmdLogFile={d}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
KillWait=5
MinJobAge=300
InactiveLimit=0
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
NodeName=localhost NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN
PartitionName=low Nodes=localhost Default=YES MaxTime=INFINITE State=UP PriorityTier=1
PartitionName=high Nodes=localhost MaxTime=INFINITE State=UP PriorityTier=2
""")
        self._daemon("munged", ["munged", "--force", f"--socket={self.munge}/socket", f"--key-file={key}",
                                f"--log-file={self.munge}/log", f"--pid-file={self.munge}/pid",
                                f"--seed-file={self.munge}/seed"], self.munge / "pid")
        self._daemon("slurmctld", ["slurmctld", "-f", str(self.conf)], d / "slurmctld.pid")
        self._daemon("slurmd", ["slurmd", "-f", str(self.conf), "-N", "localhost"], d / "slurmd.pid")
        wait_for(lambda: "idle" in self.run("sinfo", "-h", "-o", "%T", check=False), 60,
                 what=f"the Slurm node to be idle; logs in {d / 'log'}")
        return self

    def _daemon(self, name: str, argv: list[str], pid_file: Path) -> None:
        subprocess.run(argv, env=self.env, check=True, stdin=subprocess.DEVNULL, timeout=60)
        self.pids[name] = pid_file
        wait_for(pid_file.exists, 30, what=f"{name}'s pid file")

    def run(self, *argv: str, check: bool = True) -> str:
        out = subprocess.run(list(argv), env=self.env, capture_output=True, text=True, timeout=60,
                             check=False)
        if check and out.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} failed ({out.returncode}): {out.stderr}")
        return out.stdout

    def sbatch(self, script: Path, *args: str, env: Optional[dict[str, str]] = None) -> str:
        """Submit ``script``; its output goes to ``<dir>/job-<id>.out``. Returns the job id."""
        out = subprocess.run(["sbatch", "--parsable", "-o", str(self.dir / "job-%j.out"), *args, str(script)],
                             env=dict(env or os.environ, SLURM_CONF=str(self.conf)), capture_output=True,
                             text=True, timeout=60, check=False)
        if out.returncode != 0:
            raise AssertionError(f"sbatch failed ({out.returncode}): {out.stderr}")
        return out.stdout.strip().split(";")[0]

    def job(self, job_id: str) -> dict[str, str]:
        fields: dict[str, str] = {}
        for word in self.run("scontrol", "show", "job", "-o", job_id, check=False).split():
            key, _, value = word.partition("=")
            fields.setdefault(key, value)
        return fields

    def output(self, job_id: str) -> str:
        path = self.dir / f"job-{job_id}.out"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        self.run("scancel", "--user", "root", check=False)
        for name in ("slurmd", "slurmctld", "munged"):
            pid_file = self.pids.pop(name, None)
            if pid_file is None or not pid_file.exists():
                continue
            try:
                pid = int(pid_file.read_text().strip())
                os.kill(pid, signal.SIGTERM)
            except (ValueError, ProcessLookupError):
                continue
            wait_for(lambda pid=pid: not _alive(pid), 30, what=f"{name} to stop")

    def __enter__(self) -> SlurmCluster:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except (OSError, IndexError):
        return False
