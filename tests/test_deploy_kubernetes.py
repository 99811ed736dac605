"""The Kubernetes manifests in deploy/kubernetes/: valid against the API's own schemas
(kubernetes-validate ships them: no cluster, no network), and consistent with what
the daemon and the container identity code expect."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from sentinel.daemon.config import load_config
from sentinel.host import containers
from tests.unit_caps import unit_privileges
from tests.victims.harness import missing

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml"))
KUBERNETES = "1.30"  # the oldest release still supported upstream when this was written
SPOOL = "/var/lib/sentinel/spool"


def documents() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in MANIFESTS:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                found.append((f"{path.name}:{doc['kind']}/{doc['metadata']['name']}", doc))
    return found


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in documents() if doc["kind"] == kind]


def validator() -> Any:
    """kubernetes-validate (the test extra in pyproject.toml); a skip, a failure under CI."""
    try:
        import kubernetes_validate
    except ImportError:
        missing("kubernetes-validate is not installed (pip install -e '.[test]')")
    return kubernetes_validate


def test_there_are_manifests_to_check() -> None:
    assert {p.name for p in MANIFESTS} >= {"daemonset.yaml", "training-job.yaml", "config.yaml"}


@pytest.mark.parametrize(("name", "doc"), [pytest.param(n, d, id=n) for n, d in documents()])
def test_manifest_is_valid_kubernetes(name: str, doc: dict[str, Any]) -> None:
    kubernetes_validate = validator()
    kubernetes_validate.validate(doc, KUBERNETES, strict=True)  # raises, naming the path, if not


def systemd_capabilities() -> set[str]:
    return {cap.removeprefix("CAP_") for cap in unit_privileges().bounding}


def test_the_daemonset_watches_the_node_with_the_services_capabilities_only() -> None:
    [daemonset] = of_kind("DaemonSet")
    pod = daemonset["spec"]["template"]["spec"]
    assert pod["hostPID"] is True
    [container] = pod["containers"]
    security = container["securityContext"]
    assert security["capabilities"]["drop"] == ["ALL"]
    assert set(security["capabilities"]["add"]) == systemd_capabilities()
    assert security["allowPrivilegeEscalation"] is False and security.get("privileged") is False
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert mounts["spool"] == SPOOL and volumes["spool"]["hostPath"]["path"] == SPOOL


def test_the_training_job_mounts_the_nodes_spool_and_names_its_pod() -> None:
    [job] = of_kind("Job")
    pod = job["spec"]["template"]["spec"]
    [container] = pod["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["SENTINEL_SPOOL"]["value"] == SPOOL
    downward = {name: e["valueFrom"]["fieldRef"]["fieldPath"] for name, e in env.items() if "valueFrom" in e}
    assert downward == {"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace",
                        "NODE_NAME": "spec.nodeName"}
    # ... exactly the variables sentinel.host.containers reads from a pod's environment.
    raw = b"\0".join(f"{name}=x1".encode() for name in downward)
    assert set(containers.parse_environ(raw)) == {"pod", "namespace", "node"}
    [volume] = pod["volumes"]
    assert volume["hostPath"]["path"] == SPOOL


@pytest.mark.parametrize("config_map", ["sentinel-config", "sentinel-sidecar-config"])
def test_the_daemon_configs_load(config_map: str, tmp_path: Path) -> None:
    [doc] = [d for d in of_kind("ConfigMap") if d["metadata"]["name"] == config_map]
    path = tmp_path / "config.yaml"
    path.write_text(doc["data"]["config.yaml"])
    path.chmod(0o600)
    config = load_config(path, env={"NODE_NAME": "gpu-node-3", "BARK_URL": "https://api.day.app/AbCdEfGh12345"})
    assert list(config.channels) == ["phone"]
    if "host:" in doc["data"]["config.yaml"]:
        assert config.host == "gpu-node-3"


def test_the_validator_refuses_a_broken_daemonset() -> None:
    kubernetes_validate = validator()
    [daemonset] = of_kind("DaemonSet")
    broken = yaml.safe_load(yaml.safe_dump(daemonset))
    broken["spec"]["template"]["spec"]["hostPID"] = "yes"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES, strict=True)
