"""Real Slurm endings: a one-node cluster on 127.0.0.1 (slurm-wlm + munge), a real daemon.

Each batch job runs a ``sentinel.watch`` victim; Slurm then ends it the way
a cluster does — scancel, the time limit, preemption by a higher-priority
partition (requeued), the node going down — and the one alert must name
that ending, not "terminated". Skipped, saying why, where no cluster can
start (not root, Slurm not installed).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Iterator

import pytest

from sentinel.formats import spool
from sentinel.model.alerts import AlertKind
from tests.daemon_harness import DaemonProcess, titles, wait_for_push
from tests.fakes import FakeBark
from tests.slurm_cluster import SlurmCluster, unavailable
from tests.victims.harness import WATCH_VICTIM, victim_env, wait_for

K = AlertKind


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    reason = unavailable()
    if reason:
        if os.environ.get("CI") == "true" and os.geteuid() == 0:
            pytest.fail(reason)
        pytest.skip(reason)
    # AF_UNIX paths are short: the munge socket lives under a short directory.
    with SlurmCluster(tmp_path_factory.mktemp("slurm")) as running:
        yield running


@pytest.fixture
def daemon(tmp_path: Path, bark: FakeBark, cluster: SlurmCluster,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[DaemonProcess]:
    """conftest's ``daemon``, started where the cluster's configuration is known."""
    monkeypatch.setenv("SLURM_CONF", str(cluster.conf))  # the daemon's scontrol finds the cluster
    with DaemonProcess(tmp_path, {"phone": {"type": "bark", "url": bark.key_url}}) as proc:
        yield proc


def submit(cluster: SlurmCluster, daemon: DaemonProcess, name: str, *sbatch_args: str) -> tuple[str, str]:
    """A batch job running a watched victim; (Slurm job id, run id) once it runs."""
    script = daemon.tmp / f"{name}.sh"
    script.write_text(f"#!/bin/sh\nexec {sys.executable} {WATCH_VICTIM} sleep-forever --name {name} "
                      "--heartbeat 0.2\n")
    script.chmod(0o755)
    env = victim_env(daemon.tmp, daemon.spool)
    job_id = cluster.sbatch(script, "--job-name", name, *sbatch_args, env=env)

    def run_of_job() -> str:
        for run_id in spool.list_run_ids(daemon.spool):
            try:
                data = json.loads((daemon.spool / run_id / "run.json").read_text())
            except (OSError, ValueError):
                continue
            if (data.get("job") or {}).get("slurm", {}).get("job_id") == job_id:
                return run_id
        return ""

    run_id = wait_for(run_of_job, 60, what=f"job {job_id}'s run in the spool")
    wait_for(lambda: "RUNNING" in cluster.output(job_id), 60, what=f"job {job_id} running")
    return job_id, run_id


def the_one_alert(daemon: DaemonProcess, bark: FakeBark, run_id: str, kind: AlertKind) -> str:
    assert daemon.stop() == 0
    journal = daemon.journal(run_id)
    assert [a.kind for a in journal] == [kind], journal
    assert len(bark.pushes) == 1, titles(bark)
    return journal[0].detail or ""


def test_scancel_is_cancelled(cluster: SlurmCluster, daemon: DaemonProcess, bark: FakeBark) -> None:
    job_id, run_id = submit(cluster, daemon, "cancel-me")
    cluster.run("scancel", job_id)
    wait_for_push(bark, K.CANCELLED, "cancel-me", timeout=60)
    detail = the_one_alert(daemon, bark, run_id, K.CANCELLED)
    assert f"Job {job_id}: the job was cancelled (scancel)" in detail


def test_time_limit_is_named(cluster: SlurmCluster, daemon: DaemonProcess, bark: FakeBark) -> None:
    job_id, run_id = submit(cluster, daemon, "out-of-time", "--time=1")
    # Slurm checks time limits about every 30 s: the job ends 60-90 s after it started.
    wait_for_push(bark, K.TIME_LIMIT, "out-of-time", timeout=180)
    detail = the_one_alert(daemon, bark, run_id, K.TIME_LIMIT)
    assert f"Job {job_id}: Slurm ended the job at its time limit (00:01:00)" in detail


def test_preemption_with_requeue_is_preempted(cluster: SlurmCluster, daemon: DaemonProcess,
                                              bark: FakeBark) -> None:
    job_id, run_id = submit(cluster, daemon, "low-prio", "--partition=low", "--cpus-per-task=2")
    urgent = cluster.run("sbatch", "--parsable", "--partition=high", "--cpus-per-task=2",
                         "-o", str(cluster.dir / "job-%j.out"), "--wrap", "sleep 1").strip()
    try:
        wait_for_push(bark, K.PREEMPTED, "low-prio", timeout=60)
    finally:
        cluster.run("scancel", job_id, urgent, check=False)  # the requeued job would start again
    detail = the_one_alert(daemon, bark, run_id, K.PREEMPTED)
    assert f"Job {job_id}: Slurm requeued the job (restart 1)" in detail


def test_node_failure_is_named(cluster: SlurmCluster, daemon: DaemonProcess, bark: FakeBark) -> None:
    job_id, run_id = submit(cluster, daemon, "node-down", "--no-requeue")
    cluster.run("scontrol", "update", "nodename=localhost", "state=down", "reason=sentinel-test")
    try:
        wait_for_push(bark, K.NODE_FAILURE, "node-down", timeout=60)
    finally:
        wait_for(lambda: "idle" in cluster.run("sinfo", "-h", "-o", "%T", check=False) or
                 not cluster.run("scontrol", "update", "nodename=localhost", "state=resume", check=False),
                 60, what="the node back")
    detail = the_one_alert(daemon, bark, run_id, K.NODE_FAILURE)
    assert f"Job {job_id}: Slurm lost the node (NODE_FAIL, reason NodeDown)" in detail
