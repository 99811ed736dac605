"""The package's import graph: no circles, and no module imports a higher layer.

Layers, lowest first (a module may import its own layer and those below):
on-disk formats and process facts; the alert model; rendering and channels;
the outbox and delivery; the daemon and the in-process side; the CLI.
Every import counts, also one inside a function.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "sentinel"

FORMAT, MODEL, CHANNELS, OUTBOX, SIDES, CLI = range(6)
LAYER_NAMES = ["format", "model", "channels", "outbox/delivery", "daemon/in-process", "cli"]

LAYERS = {
    "sentinel": SIDES,  # the package's front door: the in-process API
    "sentinel.__main__": CLI,
    "sentinel.procid": FORMAT,
    "sentinel.containers": FORMAT,  # a process's container, from its cgroup and environment
    "sentinel.pidns": FORMAT,  # PID namespaces: a run's process found from another namespace
    "sentinel.spool": FORMAT,  # the run directories and their records
    "sentinel.safe_json": FORMAT,  # atomic writes, hostile-input-safe reads of every JSON file
    "sentinel.record_rules": FORMAT,  # field rules: how a record read from disk is checked
    "sentinel.drop_dirs": FORMAT,  # where users leave requests for the daemon (.mutes/, .resend/)
    "sentinel.live_file": FORMAT,  # live.bin: the mapped last step and scalars
    "sentinel.systemd": FORMAT,
    "sentinel.redact": FORMAT,
    "sentinel.state_dir": FORMAT,
    "sentinel.daemon_file": FORMAT,
    "sentinel.spool_lock": FORMAT,  # one daemon per spool; planted names moved away (daemon_file too)
    "sentinel.logsetup": FORMAT,
    "sentinel.sparkline": FORMAT,
    "sentinel.latency_trace": FORMAT,  # stamps along an alert's way, for the latency benchmark
    "sentinel.mutes": FORMAT,  # the mute files: written by the CLI, read by the daemon
    "sentinel.history": SIDES,  # reads the outbox journal, as status does
    "sentinel.exit_status": FORMAT,  # a kernel wait status in words
    "sentinel.rules": FORMAT,  # argument and config value rules, shared by both sides
    "sentinel.safetext": FORMAT,
    "sentinel.bounded_http": FORMAT,  # the metrics / status server's connection cap and deadline
    "sentinel.peer_uid": FORMAT,  # the local user at the other end of a loopback TCP connection
    "sentinel.evidence": FORMAT,  # the stack dump files of a run directory (faulthandler's text)
    "sentinel.stack_dumps": SIDES,  # the recorder arms faulthandler into the run directory
    "sentinel.output_tail": FORMAT,  # sys.stdout/stderr teed into memory: the last printed lines
    "sentinel.jobs": FORMAT,  # a rank's job from its launcher's environment (the run record's ``job``)
    "sentinel.accounts": FORMAT,  # uid -> account and groups, for verified identity
    "sentinel.run_options": SIDES,  # checks a run's inline channels with the channels' rules
    "sentinel.alerts": MODEL,
    "sentinel.run_states": MODEL,  # the pure state machine: (state, event) -> state, alert
    "sentinel.config": OUTBOX,  # validates channel options with the channels' own rules
    "sentinel.render": CHANNELS,
    "sentinel.endings": FORMAT,  # the table of endings; the run record format names them
    "sentinel.outbox": OUTBOX,
    "sentinel.resend": OUTBOX,  # resend requests: a dead letter handed back to the outbox
    "sentinel.delivery": OUTBOX,
    "sentinel.fallback": OUTBOX,
    "sentinel.recorder": SIDES,
    "sentinel.watching": SIDES,
    "sentinel.runner": SIDES,
    "sentinel.notify": SIDES,
    "sentinel.swanlab_adapter": SIDES,
    "sentinel.swanlab_log_hook": SIDES,  # swanlab.log wrapped for a run's lifetime
    "sentinel.status": SIDES,
    "sentinel.selftest": SIDES,
    "sentinel.fleet_config": FORMAT,  # the fleet keys' rules, used by the config validator
    "sentinel.fleet_labels": FORMAT,
    "sentinel.observer": MODEL,  # the hooks the daemon and delivery call
    "sentinel.fleet": SIDES,  # the daemon's observers: metrics, healthchecks.io
    "sentinel.metrics": SIDES,
    "sentinel.healthchecks": SIDES,
    "sentinel.status_page": SIDES,
    "sentinel.cli": CLI,
    "sentinel.cli_completion": CLI,
}
PREFIX_LAYERS = {"sentinel.channels": CHANNELS, "sentinel.daemon": SIDES}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer(module: str) -> int:
    if module in LAYERS:
        return LAYERS[module]
    for prefix, value in PREFIX_LAYERS.items():
        if module == prefix or module.startswith(prefix + "."):
            return value
    raise AssertionError(f"{module} has no layer: add it to LAYERS in {Path(__file__).name}")


def imports(path: Path, modules: set[str]) -> set[str]:
    """The package modules ``path`` imports, anywhere in it (TYPE_CHECKING ones too)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from sentinel.channels import http`` imports the submodule;
            # ``from sentinel.spool import RunRecord`` the module itself.
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                       for alias in node.names]
        else:
            continue
        for target in targets:
            # The deepest package module named (``from sentinel import spool`` is sentinel.spool).
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imports(p, modules) - {"sentinel"} for p in paths}


def test_every_module_has_a_layer() -> None:
    for module in graph():
        layer(module)


def test_no_import_goes_up_a_layer() -> None:
    upward = [f"{a} ({LAYER_NAMES[layer(a)]}) imports {b} ({LAYER_NAMES[layer(b)]})"
              for a, targets in graph().items() for b in sorted(targets) if layer(b) > layer(a)]
    assert upward == []


def test_no_import_circles() -> None:
    edges = graph()
    circles: list[str] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        stack.append(module)
        for target in sorted(edges.get(module, ())):
            if state.get(target) == 1:
                circles.append(" -> ".join([*stack[stack.index(target):], target]))
            elif target not in state:
                visit(target)
        stack.pop()
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module)
    assert circles == []


# Pairs that talk one way only: the first tells the second what happened and
# acts on what it returns; the second never reaches back (not even for types).
ONE_WAY = {
    ("sentinel.daemon.tracking", "sentinel.daemon.job_watch"),  # the tracker tells the job watch
}


def test_one_way_pairs_never_import_back() -> None:
    edges = graph()
    assert all(b in edges[a] for a, b in ONE_WAY), "a one-way pair no longer talks at all: update ONE_WAY"
    back = [f"{b} imports {a}" for a, b in sorted(ONE_WAY) if a in edges[b]]
    assert back == []
