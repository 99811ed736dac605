"""Container identity from /proc/<pid>/cgroup and /proc/<pid>/environ.

The cgroup lines are the runtimes' real layouts (cgroup v1 and v2, Docker's
cgroupfs and systemd drivers, Kubernetes with containerd and CRI-O); the
Docker v1 layout is also read live in tests/test_docker_e2e.py.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from sentinel.daemon.status import render_detail
from sentinel.host.containers import ContainerIdentity, identify, label_of, parse_cgroup_file, parse_environ
from sentinel.model.alerts import Alert, AlertKind
from sentinel.model.render import facts

CID = "8699c0aa86b91a6857cfb30f61b6ad4d895045235eeb5fab99665004b61dbc4b"
UID = "5d9c2c1e-6b0a-4c33-9a51-0f3e5d1c9b7a"

DOCKER_V1 = "\n".join([
    f"9:name=systemd:/docker/{CID}", f"8:pids:/docker/{CID}", f"4:memory:/docker/{CID}",
    f"1:cpu:/docker/{CID}", f"0::/docker/{CID}", ""])


@pytest.mark.parametrize(("text", "expected"), [
    (DOCKER_V1, (CID, "docker", "")),
    (f"0::/system.slice/docker-{CID}.scope\n", (CID, "docker", "")),
    (f"0::/machine.slice/libpod-{CID}.scope/container\n", (CID, "podman", "")),
    (f"11:memory:/kubepods/burstable/pod{UID}/{CID}\n", (CID, "containerd", UID)),
    ("0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod"
     f"{UID.replace('-', '_')}.slice/cri-containerd-{CID}.scope\n", (CID, "containerd", UID)),
    (f"0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID.replace('-', '_')}.slice/"
     f"crio-{CID}.scope\n", (CID, "cri-o", UID)),
    (f"0::/kubepods/pod{UID}/{CID}\n", (CID, "containerd", UID)),
])
def test_every_runtime_layout_names_its_container(text: str, expected: tuple[str, str, str]) -> None:
    assert parse_cgroup_file(text) == expected


@pytest.mark.parametrize("text", [
    "0::/user.slice/user-1000.slice/session-3.scope\n",  # a login session: the host
    "0::/\n", "",
    "4:memory:/docker\n",  # Docker's parent cgroup, no container
    f"0::/system.slice/docker-{CID[:-1]}.scope\n",  # one hex short
    f"0::/docker/{CID.upper()}\n",  # ids are lower-case hex
    "garbage without colons\n" * 3,
])
def test_a_host_process_or_a_malformed_line_names_no_container(text: str) -> None:
    assert parse_cgroup_file(text) is None


def test_the_v2_line_wins_over_a_v1_controller_that_names_another_cgroup() -> None:
    other = "f" * 64
    assert parse_cgroup_file(f"4:memory:/docker/{other}\n0::/docker/{CID}\n") == (CID, "docker", "")


def test_environment_gives_only_well_formed_kubernetes_names() -> None:
    raw = b"\0".join([
        b"PATH=/usr/bin", b"POD_NAME=trainer-7f9c", b"POD_NAMESPACE=ml-team", b"NODE_NAME=gpu-node-3",
        b"HOSTNAME=trainer-7f9c", b"SECRET_TOKEN=hunter2", b"noequals", b""])
    assert parse_environ(raw) == {"pod": "trainer-7f9c", "namespace": "ml-team", "node": "gpu-node-3",
                                  "hostname": "trainer-7f9c"}


@pytest.mark.parametrize("value", [b"Trainer", b"a\x1b[2Jb", b"x" * 254, b"-lead", b"\xff\xfe", b"a b", b""])
def test_a_hostile_environment_value_is_dropped(value: bytes) -> None:
    assert parse_environ(b"POD_NAME=" + value + b"\0NODE_NAME=n1") == {"node": "n1"}


def test_labels_name_the_pod_when_known_else_its_uid_else_the_container() -> None:
    pod = ContainerIdentity(CID, "containerd", UID, "trainer-7f9c", "ml-team", "gpu-node-3")
    assert pod.label() == "pod ml-team/trainer-7f9c"
    assert ContainerIdentity(CID, "containerd", UID).label() == f"pod {UID}"
    assert ContainerIdentity(CID, "docker").label() == "container 8699c0aa86b9"
    assert ContainerIdentity.from_dict(pod.as_dict()) == pod
    assert label_of({"id": "not-an-id"}) == "" and label_of({}) == ""
    forged = dict(pod.as_dict(), pod="x\nFAKE ALERT", runtime="evil")
    assert ContainerIdentity.from_dict(forged) == ContainerIdentity(CID, "docker", UID, "", "ml-team",
                                                                     "gpu-node-3")


def test_an_alert_names_the_node_with_the_container_beside_it() -> None:
    alert = Alert("a1", AlertKind.KILLED, 100.0, run_name="r", hostname="gpu-node-3", user="ana",
                  container=ContainerIdentity(CID, "docker").as_dict())
    assert ("Host", "ana@gpu-node-3 · container 8699c0aa86b9") in facts(alert)
    round_trip = Alert.from_dict(alert.to_dict())
    assert round_trip.container == alert.container


def test_a_host_process_has_no_container_and_a_reused_pid_lends_none(child: subprocess.Popen[bytes]) -> None:
    pid = child.pid
    here = Path(f"/proc/{pid}/cgroup").read_text()
    expected = parse_cgroup_file(here)
    found = identify(pid)
    assert (found.container_id if found else None) == (expected[0] if expected else None)
    ticks = int(Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[19])
    assert identify(pid, ticks + 1) is None  # another process under the same number
    assert identify(2 ** 22 + 1) is None  # no such process


def test_identify_reads_a_process_directory_fd_not_a_path_that_can_be_swapped(tmp_path: Path) -> None:
    fake = tmp_path / "proc" / "42"
    fake.mkdir(parents=True)
    (fake / "stat").write_bytes(b"42 (py) S " + b"0 " * 18 + b"777 0\n")
    (fake / "cgroup").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "elsewhere").write_text(f"0::/docker/{CID}\n")
    assert identify(42, 777, proc=str(tmp_path / "proc")) is None  # a symlinked file is not followed
    (fake / "cgroup").unlink()
    (fake / "cgroup").write_text(f"0::/kubepods/pod{UID}/{CID}\n")
    (fake / "environ").write_bytes(b"HOSTNAME=trainer-0\0POD_NAMESPACE=ml\0")
    assert identify(42, 777, proc=str(tmp_path / "proc")) == ContainerIdentity(CID, "containerd", UID,
                                                                                "trainer-0", "ml")


def test_status_detail_shows_the_container() -> None:
    from sentinel.daemon.status import RunStatus

    run = RunStatus("rid", "r", 5, "ana", "8699c0aa86b9", "watch", 0.0, "running", True, None, None, None,
                    None, None, None, None, container=ContainerIdentity(CID, "docker").as_dict())
    assert "Container  container 8699c0aa86b9" in render_detail(run, [], now=1.0)
