"""Which job is this process a rank of? Read from the launcher's environment.

torchrun (and Accelerate, which runs torchrun in-process) gives every worker
``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``LOCAL_WORLD_SIZE``,
``GROUP_RANK``, ``TORCHELASTIC_RUN_ID``, ``TORCHELASTIC_RESTART_COUNT``,
``MASTER_ADDR``/``MASTER_PORT`` and ``TORCHELASTIC_ERROR_FILE``; DeepSpeed's
launcher sets ``RANK``/``LOCAL_RANK``/``WORLD_SIZE``; Slurm sets
``SLURM_JOB_ID``, ``SLURM_STEP_ID``, ``SLURM_PROCID``, ``SLURM_LOCALID``,
``SLURM_NODEID``, ``SLURM_JOB_NAME`` and ``SLURM_ARRAY_*``. The launcher's
agent is the rank's parent process: every local rank of one job is a child
of the same agent (torchrun's elastic agent, DeepSpeed's ``launch.py``,
Slurm's ``slurmstepd``).

The recorder calls ``from_environ`` once per run and the daemon calls it on
a sibling's ``/proc/<pid>/environ``, so both sides agree on what "the same
job" means (``group_key``). Stdlib only: the training side imports this.
"""

from __future__ import annotations

from typing import Mapping, Optional

from sentinel.formats.spool import SLURM_FIELDS, JobRecord
from sentinel.host.pidns import sees_every_namespace
from sentinel.host.procid import start_ticks


def _int(env: Mapping[str, str], name: str) -> Optional[int]:
    raw = env.get(name, "").strip()
    if not raw.isdigit() or len(raw) > 9:
        return None
    return int(raw)


def _launcher(env: Mapping[str, str]) -> Optional[str]:
    if env.get("TORCHELASTIC_RUN_ID") is not None:
        # Accelerate runs torch.distributed.run in-process and marks its workers.
        return "accelerate" if any(k.startswith("ACCELERATE_") for k in env) else "torchrun"
    if env.get("RANK") is not None and env.get("LOCAL_RANK") is not None:
        # DeepSpeed's launch.py sets these, and CROSS_RANK/CROSS_SIZE besides.
        return "deepspeed" if env.get("CROSS_RANK") is not None else "launcher"
    if env.get("SLURM_JOB_ID"):
        return "slurm"
    return None


def from_environ(env: Mapping[str, str], parent_pid: Optional[int]) -> Optional[JobRecord]:
    """The job this environment makes a process a rank of; None for a lone process."""
    launcher = _launcher(env)
    if launcher is None:
        return None
    slurm = {name: env[f"SLURM_{name.upper()}"] for name in SLURM_FIELDS
             if env.get(f"SLURM_{name.upper()}")}
    rdzv = env.get("TORCHELASTIC_RUN_ID", "")
    master = f"{env['MASTER_ADDR']}:{env.get('MASTER_PORT', '')}" if env.get("MASTER_ADDR") else ""
    job_id = slurm.get("job_id") or (rdzv if rdzv and rdzv != "none" else "") or master
    rank = _int(env, "RANK")
    local_rank = _int(env, "LOCAL_RANK")
    if launcher == "slurm":  # srun without a torch launcher: Slurm's task ids are the ranks
        rank = _int(env, "SLURM_PROCID")
        local_rank = _int(env, "SLURM_LOCALID")
    # Parent pid 1 is init adopting an orphan, except in a container's PID namespace,
    # where the launcher is often the entrypoint: pid 1 itself.
    agent_ticks = (start_ticks(parent_pid) if parent_pid and (parent_pid > 1 or not sees_every_namespace())
                   else None)
    return JobRecord(
        launcher=launcher,
        job_id=job_id,
        rank=rank,
        local_rank=local_rank,
        world_size=_int(env, "WORLD_SIZE") or _int(env, "SLURM_NTASKS"),
        local_world_size=_int(env, "LOCAL_WORLD_SIZE"),
        group_rank=_int(env, "GROUP_RANK"),
        restart_count=_int(env, "TORCHELASTIC_RESTART_COUNT"),
        rdzv_id=rdzv,
        master=master,
        agent_pid=parent_pid if agent_ticks is not None else None,
        agent_start_ticks=agent_ticks,
        error_file=env.get("TORCHELASTIC_ERROR_FILE", ""),
        slurm=slurm,
    )


def group_key(job: JobRecord, uid: int) -> str:
    """The ranks on one host that form one job event: same user, same agent
    (when known), same job (Slurm step, rendezvous id, master), same attempt."""
    agent = f"agent:{job.agent_pid}:{job.agent_start_ticks}" if job.agent_pid is not None else "agent:?"
    slurm = f"{job.slurm.get('job_id', '')}.{job.slurm.get('step_id', '')}"
    return f"{uid}/{agent}/slurm:{slurm}/rdzv:{job.rdzv_id}@{job.master}/attempt:{job.restart_count or 0}"


def display_id(job: JobRecord) -> str:
    """A job id short enough for a phone: a Slurm id, or the start of a UUID."""
    job_id = job.job_id or job.master or "?"
    if len(job_id) == 36 and job_id.count("-") == 4:  # torchrun --standalone: a UUID
        return job_id[:8]
    return job_id


def labels(job: Optional[JobRecord]) -> dict[str, str]:
    """The ``job`` and ``rank`` a run's metrics are labelled with (empty for a lone process)."""
    if job is None:
        return {}
    return {"job": display_id(job), "rank": "" if job.rank is None else str(job.rank)}


def parse_environ(raw: bytes) -> dict[str, str]:
    """``/proc/<pid>/environ``: NUL-separated ``NAME=value`` entries."""
    env: dict[str, str] = {}
    for entry in raw.split(b"\0"):
        name, sep, value = entry.partition(b"=")
        if sep and name:
            env[name.decode("utf-8", "replace")] = value.decode("utf-8", "replace")
    return env
