"""Which container a process runs in: Docker, containerd, CRI-O, Podman, Kubernetes.

Read from the host (the daemon's side), for a live process:

* ``/proc/<pid>/cgroup`` — the trusted source. The container runtime puts
  every container in a cgroup named after its 64-hex id, and Kubernetes puts
  a pod's containers under a cgroup named after the pod's uid:

  ==========================  ====================================================================
  Docker, cgroupfs (v1/v2)    ``/docker/<id>``
  Docker, systemd driver      ``/system.slice/docker-<id>.scope``
  Podman                      ``/machine.slice/libpod-<id>.scope``
  Kubernetes, cgroupfs        ``/kubepods/burstable/pod<uid>/<id>``
  Kubernetes, systemd driver  ``/kubepods.slice/kubepods-burstable.slice/``
                              ``kubepods-burstable-pod<uid with _>.slice/cri-containerd-<id>.scope``
                              (``crio-<id>.scope`` under CRI-O, ``docker-<id>.scope`` under dockershim)
  ==========================  ====================================================================

  A process can neither leave its cgroup nor rename it, so the container id
  and pod uid are facts.
* ``/proc/<pid>/environ`` — what the pod *says*: Kubernetes sets ``HOSTNAME``
  to the pod name; the pod spec sets ``POD_NAME``, ``POD_NAMESPACE`` and
  ``NODE_NAME`` through the downward API (``fieldRef: metadata.name``,
  ``metadata.namespace``, ``spec.nodeName``). The process can set these to
  anything, so they only label its own alerts; every value is bounded and
  must look like a Kubernetes name or it is dropped. Reading another user's
  environ needs the same uid or CAP_SYS_PTRACE: without it the pod is named
  by its uid alone.

Both files are read relative to one ``/proc/<pid>`` directory fd whose
start time is checked first, so a pid reused between the reads cannot lend
another process's container. Stdlib only.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Mapping, Optional

_ID_RE = re.compile(r"^[0-9a-f]{64}$")
_SCOPE_RE = re.compile(r"^(docker|cri-containerd|crio|libpod)-([0-9a-f]{64})\.scope$")
_UID = r"[0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12}"
_POD_RE = re.compile(rf"pod({_UID})(?:\.slice)?$")
_RUNTIMES = {"docker": "docker", "cri-containerd": "containerd", "crio": "cri-o", "libpod": "podman"}
# A DNS-1123 subdomain (pod, namespace and node names are at most this).
_K8S_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$")
_ENV_KEYS = {"POD_NAME": "pod", "POD_NAMESPACE": "namespace", "NODE_NAME": "node", "HOSTNAME": "hostname"}
_CGROUP_MAX = 64 * 1024
_ENVIRON_MAX = 1024 * 1024  # ARG_MAX-sized environments exist; we stop reading here
SHORT_ID = 12  # as `docker ps` shows it


@dataclass(frozen=True)
class ContainerIdentity:
    container_id: str  # 64 hex, from the cgroup
    runtime: str  # docker, containerd, cri-o, podman
    pod_uid: str = ""  # Kubernetes: from the cgroup
    pod: str = ""  # Kubernetes: from the environment (POD_NAME, else HOSTNAME)
    namespace: str = ""  # POD_NAMESPACE
    node: str = ""  # NODE_NAME

    @property
    def short_id(self) -> str:
        return self.container_id[:SHORT_ID]

    def label(self) -> str:
        """'pod ns/name', 'pod <uid>' or 'container 3f2a9c1b7d4e'."""
        if self.pod_uid:
            if self.pod:
                return f"pod {self.namespace}/{self.pod}" if self.namespace else f"pod {self.pod}"
            return f"pod {self.pod_uid}"
        return f"container {self.short_id}"

    def as_dict(self) -> dict[str, str]:
        out = {"id": self.container_id, "runtime": self.runtime}
        for key in ("pod_uid", "pod", "namespace", "node"):
            value = getattr(self, key)
            if value:
                out[key] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Optional[ContainerIdentity]:
        """From ``as_dict``'s output (an alert, status.json); None if it is not one."""
        cid = data.get("id")
        if not isinstance(cid, str) or not _ID_RE.match(cid):
            return None

        def text(key: str) -> str:
            value = data.get(key, "")
            return value if isinstance(value, str) and _K8S_NAME_RE.match(value) else ""

        pod_uid = data.get("pod_uid", "")
        pod_uid = pod_uid if isinstance(pod_uid, str) and _POD_RE.match("pod" + pod_uid) else ""
        runtime = data.get("runtime")
        runtime = runtime if isinstance(runtime, str) and runtime in _RUNTIMES.values() else "docker"
        return cls(cid, runtime, pod_uid,
                   text("pod"), text("namespace"), text("node"))


def label_of(data: Mapping[str, Any]) -> str:
    """The label of an alert's ``container`` dict; empty if it holds none."""
    ident = ContainerIdentity.from_dict(data) if data else None
    return ident.label() if ident is not None else ""


def parse_cgroup_path(path: str) -> Optional[tuple[str, str, str]]:
    """(container id, runtime, pod uid or "") named by one cgroup path, else None."""
    parts = [p for p in path.split("/") if p]
    pod_uid = ""
    found: Optional[tuple[str, str]] = None
    for i, part in enumerate(parts):
        pod = _POD_RE.search(part)
        if pod and (part.startswith("pod") or "-pod" in part):
            pod_uid = pod.group(1).replace("_", "-")
            continue
        scope = _SCOPE_RE.match(part)
        if scope:
            found = (scope.group(2), _RUNTIMES[scope.group(1)])
        elif _ID_RE.match(part):
            parent = parts[i - 1] if i else ""
            found = (part, "docker" if parent == "docker" else ("containerd" if pod_uid else "docker"))
    if found is None:
        return None
    return found[0], found[1], pod_uid


def parse_cgroup_file(text: str) -> Optional[tuple[str, str, str]]:
    """The container named by a ``/proc/<pid>/cgroup``: the v2 line first,
    then the memory controller's, then any other."""
    ranked: list[tuple[int, str]] = []
    for line in text.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":
            rank = 0
        elif "memory" in controllers.split(","):
            rank = 1
        else:
            rank = 2
        ranked.append((rank, path))
    for _, path in sorted(ranked, key=lambda item: item[0]):
        found = parse_cgroup_path(path)
        if found is not None:
            return found
    return None


def parse_environ(raw: bytes) -> dict[str, str]:
    """The Kubernetes names an environment block (NUL-separated) gives, checked."""
    out: dict[str, str] = {}
    for entry in raw.split(b"\0"):
        key, sep, value = entry.partition(b"=")
        if not sep:
            continue
        field = _ENV_KEYS.get(key.decode("ascii", "replace"))
        if field is None or len(value) > 253:
            continue
        text = value.decode("ascii", "replace")
        if _K8S_NAME_RE.match(text):
            out[field] = text
    return out


def _read_at(dir_fd: int, name: str, limit: int) -> Optional[bytes]:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC,
                     dir_fd=dir_fd)
    except OSError:
        return None
    try:
        chunks: list[bytes] = []
        size = 0
        while size < limit:
            chunk = os.read(fd, min(65536, limit - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


def _start_ticks_at(dir_fd: int) -> Optional[int]:
    raw = _read_at(dir_fd, "stat", 4096)
    if not raw:
        return None
    fields = raw[raw.rfind(b")") + 2:].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def identify(pid: int, start_ticks: Optional[int] = None, proc: str = "/proc") -> Optional[ContainerIdentity]:
    """The container process ``pid`` (as this process's namespace numbers it)
    runs in; None for a process on the host, one that is gone, or one whose
    start time is not ``start_ticks`` (the pid was reused)."""
    try:
        dir_fd = os.open(f"{proc}/{int(pid)}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if start_ticks is not None and _start_ticks_at(dir_fd) != start_ticks:
            return None
        raw = _read_at(dir_fd, "cgroup", _CGROUP_MAX)
        found = parse_cgroup_file(raw.decode("utf-8", "replace")) if raw else None
        if found is None:
            return None
        container_id, runtime, pod_uid = found
        env: dict[str, str] = {}
        if pod_uid:  # only a pod's environment names anything we show
            env = parse_environ(_read_at(dir_fd, "environ", _ENVIRON_MAX) or b"")
        # The environ read may have raced a pid reuse: the cgroup was read first, check again.
        if start_ticks is not None and _start_ticks_at(dir_fd) != start_ticks:
            return None
    finally:
        os.close(dir_fd)
    return ContainerIdentity(container_id, runtime, pod_uid, env.get("pod") or env.get("hostname", ""),
                             env.get("namespace", ""), env.get("node", ""))
