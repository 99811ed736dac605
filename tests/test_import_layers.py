"""The package's import graph: no circles, no import up a layer, folders import only what they may.

Layers are read off folder names, lowest first (a module may import its own
layer and those below): ``common/``; ``host/`` and ``formats/`` (the contract
both sides share); ``model/``; ``channels/``; ``delivery/``; the sides that
run (``training/``, ``daemon/``, ``fleet/``); ``cli/``. ``EXCEPTIONS`` lists
the few modules whose layer is not their folder's. Every import counts, also
one inside a function.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "sentinel"

COMMON, SHARED, MODEL, CHANNELS, DELIVERY, SIDES, CLI = range(7)
LAYER_NAMES = ["common", "host/formats", "model", "channels", "delivery", "training/daemon/fleet", "cli"]

FOLDER_LAYERS = {
    "sentinel.common": COMMON,
    "sentinel.host": SHARED,
    "sentinel.formats": SHARED,
    "sentinel.model": MODEL,
    "sentinel.channels": CHANNELS,
    "sentinel.delivery": DELIVERY,
    "sentinel.training": SIDES,
    "sentinel.daemon": SIDES,
    "sentinel.fleet": SIDES,
    "sentinel.cli": CLI,
}
EXCEPTIONS = {
    "sentinel": SIDES,  # the package's front door: the in-process API, loaded lazily
    "sentinel.__main__": CLI,
    "sentinel.model.endings": SHARED,  # the table of endings: the run record format names its rows
}

# What each folder may import besides itself. The training side never imports
# the daemon, the fleet or the command line: it runs inside someone's training.
ALLOWED = {
    "sentinel.common": set(),
    "sentinel.host": {"sentinel.common", "sentinel.formats"},
    "sentinel.formats": {"sentinel.common", "sentinel.host", "sentinel.model.endings"},
    "sentinel.model": {"sentinel.common", "sentinel.host", "sentinel.formats"},
    "sentinel.channels": {"sentinel.common", "sentinel.host", "sentinel.formats", "sentinel.model"},
    "sentinel.delivery": {"sentinel.common", "sentinel.host", "sentinel.formats", "sentinel.model",
                          "sentinel.channels"},
    "sentinel.training": {"sentinel.common", "sentinel.host", "sentinel.formats", "sentinel.model",
                          "sentinel.channels", "sentinel.delivery"},
    "sentinel.daemon": {"sentinel.common", "sentinel.host", "sentinel.formats", "sentinel.model",
                        "sentinel.channels", "sentinel.delivery", "sentinel.fleet"},
    "sentinel.fleet": {"sentinel.common", "sentinel.host", "sentinel.formats", "sentinel.model",
                       "sentinel.channels", "sentinel.delivery", "sentinel.daemon"},
    "sentinel.cli": {"sentinel.common", "sentinel.host", "sentinel.formats", "sentinel.model",
                     "sentinel.channels", "sentinel.delivery", "sentinel.training", "sentinel.daemon",
                     "sentinel.fleet"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def folder(module: str) -> str:
    for prefix in FOLDER_LAYERS:
        if module == prefix or module.startswith(prefix + "."):
            return prefix
    raise AssertionError(f"{module} is in no folder: move it into one (or add it to EXCEPTIONS)")


def layer(module: str) -> int:
    if module in EXCEPTIONS:
        return EXCEPTIONS[module]
    return FOLDER_LAYERS[folder(module)]


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
            # ``from sentinel.formats.spool import RunRecord`` the module itself.
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                       for alias in node.names]
        else:
            continue
        for target in targets:
            # The deepest package module named (``from sentinel.formats import spool``
            # is sentinel.formats.spool).
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    # A folder's __init__ holds only its docstring: importing a module in it
    # names the folder too, which is no import of anything.
    folders = set(FOLDER_LAYERS) - {"sentinel.channels", "sentinel.daemon", "sentinel.cli"}
    return {module_name(p): imports(p, modules) - {"sentinel"} - folders for p in paths}


def test_every_module_has_a_layer() -> None:
    for module in graph():
        layer(module)


def test_flat_modules_are_only_the_front_door() -> None:
    flat = sorted(p.stem for p in PACKAGE.glob("*.py"))
    assert flat == ["__init__", "__main__"]


def test_folder_inits_import_nothing() -> None:
    for name in set(FOLDER_LAYERS) - {"sentinel.channels", "sentinel.daemon", "sentinel.cli"}:
        init = PACKAGE / name.split(".", 1)[1] / "__init__.py"
        tree = ast.parse(init.read_text())
        assert not [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))], init


def test_no_import_goes_up_a_layer() -> None:
    upward = [f"{a} ({LAYER_NAMES[layer(a)]}) imports {b} ({LAYER_NAMES[layer(b)]})"
              for a, targets in graph().items() for b in sorted(targets) if layer(b) > layer(a)]
    assert upward == []


def test_each_folder_imports_only_the_folders_it_may() -> None:
    def allowed(source: str, target: str) -> bool:
        if source in EXCEPTIONS and source.count(".") == 0 or source == "sentinel.__main__":
            return True  # the front door and ``python -m sentinel`` may name anything
        home = folder(source)
        return folder(target) == home or any(
            target == ok or target.startswith(ok + ".") for ok in ALLOWED[home])
    wrong = [f"{a} imports {b}" for a, targets in graph().items() for b in sorted(targets)
             if not allowed(a, b)]
    assert wrong == []


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
