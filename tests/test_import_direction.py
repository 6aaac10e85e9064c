"""The house's one direction: shared/ knows no side; client/ and server/ never import each other or what sits on
top (simulations/, lab/, scripts/); the product (shared/, client/, server/) and simulations/ never import the lab
(lab/: instruments for experiments and tests), which sits on top with scripts/ (only scripts/ and tests/ import it);
nothing imports tests/; and no module imports itself back through others (no cycle). Parsed from the sources, lazy
imports (inside functions) included. docs/design.md, "The import graph", draws it.

The device rule: what a device runs is a folder, not a habit. The device modules are ``shared/hydra/`` and the SDK's
entry points (:data:`DEVICE_ENTRIES`), with every module they import, transitively; none of them imports torch,
transformers, peft, flwr or onnx (:data:`NOT_ON_DEVICE`) nor the training package ``shared/training/``, at any level
(module, function, ``importlib.import_module("...")``)."""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "shared": {"client", "server", "simulations", "lab", "scripts", "tests"},
    "client": {"server", "simulations", "lab", "scripts", "tests"},
    "server": {"client", "simulations", "lab", "scripts", "tests"},
    "simulations": {"lab", "scripts", "tests"},
    "lab": {"scripts", "tests"},
    "scripts": {"tests"},
}
PRODUCT = ("shared", "client", "server")
"""What a deployment and an installed wheel run (with simulations/, the ``fedhydra`` command): never the lab."""
DEVICE_FOLDERS = ("shared/hydra",)
"""Folders of device code: numpy and onnxruntime only."""
DEVICE_ENTRIES = ("client/sdk.py", "client/device.py", "client/store.py", "client/guard.py")
"""The on-device SDK (:class:`client.sdk.PersonalClient`) and the modules its answering and fitting run on."""
TRAINING_PACKAGE = "shared.training"
"""Training and export (torch, transformers, peft, onnx): never imported by a device module."""
NOT_ON_DEVICE = ("torch", "transformers", "peft", "flwr", "onnx")
"""Top-level packages a device install lacks (``tests/client/test_device_install.py``)."""


def imported_modules(source: str) -> list[str]:
    """Every module an import statement of ``source`` names (absolute imports), and ``module.name`` for each name a
    ``from module import name`` takes (it may be a submodule).

    >>> imported_modules("import a.b\\nfrom c import d\\ndef f():\\n    from e.f import g")
    ['a.b', 'c', 'c.d', 'e.f', 'e.f.g']
    """
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out += [node.module] + [f"{node.module}.{a.name}" for a in node.names if a.name != "*"]
    return out


def dynamic_imports(source: str) -> list[str]:
    """Modules ``source`` imports by name at run time: ``importlib.import_module("m")`` and ``__import__("m")`` with a
    literal name.

    >>> dynamic_imports("import importlib\\ndef f():\\n    return importlib.import_module('torch.nn')")
    ['torch.nn']
    """
    out = []
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if name in ("import_module", "__import__"):
                out.append(node.args[0].value)
    return out


def violations(package: str, source: str, path: str) -> list[tuple[str, str]]:
    """(path, module) for each import of ``source`` that runs against the direction from ``package``."""
    return [
        (path, m) for m in dict.fromkeys(imported_modules(source)) if m.split(".")[0] in FORBIDDEN.get(package, set())
    ]


def module_name(file: Path) -> str:
    """``shared/llm/client.py`` -> ``shared.llm.client``; a package's ``__init__.py`` is the package."""
    parts = file.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(sources: Mapping[str, str]) -> dict[str, set[str]]:
    """module -> the modules of ``sources`` it imports (a ``from m import name`` counts as importing ``m.name`` when
    that is a module of ``sources``, else ``m``); imports of other modules and of itself are left out."""
    graph: dict[str, set[str]] = {}
    for name, source in sources.items():
        edges = set()
        for target in imported_modules(source):
            while target and target not in sources:
                target = target.rpartition(".")[0]
            if target and target != name:
                edges.add(target)
        graph[name] = edges
    return graph


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The import cycles of ``graph``: each strongly connected component of more than one module, sorted (Tarjan).

    >>> cycles({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]})
    [['a', 'b', 'c']]
    >>> cycles({"a": ["b"], "b": []})
    []
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:  # recursion depth is bounded by the number of modules (a few hundred)
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def repository_sources() -> dict[str, str]:
    """Module name -> source of every module of the layered packages."""
    return {
        module_name(f): f.read_text(encoding="utf-8")
        for package in FORBIDDEN
        for f in sorted((REPO / package).rglob("*.py"))
    }


def device_modules(sources: Mapping[str, str]) -> set[str]:
    """The modules of :data:`DEVICE_FOLDERS` and :data:`DEVICE_ENTRIES`, with every module of ``sources`` they import
    (lazily too), transitively, and the packages (``__init__``) that hold them."""
    graph = import_graph(sources)
    for name, source in sources.items():  # a module named to importlib counts as imported
        for target in dynamic_imports(source):
            while target and target not in sources:
                target = target.rpartition(".")[0]
            if target and target != name:
                graph[name].add(target)
    folders = tuple(f.replace("/", ".") + "." for f in DEVICE_FOLDERS)
    todo = [m for m in sources if m.startswith(folders)] + [module_name(REPO / f) for f in DEVICE_ENTRIES]
    found: set[str] = set()
    while todo:
        module = todo.pop()
        if module in found:
            continue
        found.add(module)
        todo += graph.get(module, ())
        parent = module.rpartition(".")[0]
        if parent in sources:
            todo.append(parent)
    return found


def device_violations(sources: Mapping[str, str]) -> list[tuple[str, str]]:
    """(device module, what it imports) for each import of a device module that a device must not run."""
    found = []
    for module in sorted(device_modules(sources)):
        if module == TRAINING_PACKAGE or module.startswith(TRAINING_PACKAGE + "."):
            found.append((module, module))
        for target in dict.fromkeys(imported_modules(sources[module]) + dynamic_imports(sources[module])):
            if (
                target.split(".")[0] in NOT_ON_DEVICE
                or target == TRAINING_PACKAGE
                or target.startswith(TRAINING_PACKAGE + ".")
            ):
                found.append((module, target))
    return found


def test_no_import_runs_against_the_house_direction():
    found = []
    for package in FORBIDDEN:
        for file in sorted((REPO / package).rglob("*.py")):
            rel = file.relative_to(REPO).as_posix()
            found += violations(package, file.read_text(encoding="utf-8"), rel)
    assert found == [], f"imports against the direction: {sorted(found)}"


def test_no_module_imports_itself_back():
    assert cycles(import_graph(repository_sources())) == []


def test_a_planted_forbidden_import_is_caught():
    planted = "from shared.config import RunConfig\n\ndef f():\n    from server.strategies import build_strategy\n"
    assert violations("client", planted, "client/x.py") == [
        ("client/x.py", "server.strategies"),
        ("client/x.py", "server.strategies.build_strategy"),
    ]
    assert violations("server", planted, "server/x.py") == []
    assert violations("shared", "import simulations.cli\n", "shared/x.py") == [("shared/x.py", "simulations.cli")]


def test_only_scripts_and_tests_import_the_lab():
    assert {p for p, banned in FORBIDDEN.items() if "lab" not in banned} == {"lab", "scripts"}
    assert all("lab" in FORBIDDEN[p] for p in PRODUCT)
    assert violations("simulations", "from lab.faults.app import fault_app\n", "simulations/x.py") == [
        ("simulations/x.py", "lab.faults.app"),
        ("simulations/x.py", "lab.faults.app.fault_app"),
    ]
    assert violations("server", "def f():\n    import lab.llm_stub\n", "server/x.py") == [
        ("server/x.py", "lab.llm_stub")
    ]
    assert violations("lab", "from simulations.federated import app_copy\n", "lab/x.py") == []
    assert violations("lab", "import scripts.fed_sweep\n", "lab/x.py") == [("lab/x.py", "scripts.fed_sweep")]


def test_a_planted_cycle_is_caught():
    sources = repository_sources()
    assert cycles(import_graph(sources)) == []
    # shared.users imports shared.data; a lazy import back from shared.data closes a cycle
    sources["shared.data"] += "\n\ndef _planted():\n    from shared.users import split_users\n"
    assert cycles(import_graph(sources)) == [["shared.data", "shared.users"]]


def test_device_modules_import_no_training_stack_at_any_level():
    sources = repository_sources()
    device = device_modules(sources)
    assert {"client.sdk", "client.device", "client.store", "shared.hydra.scorer_graph", "shared.llm.client"} <= device
    assert not any(m.startswith(TRAINING_PACKAGE) for m in device)
    assert device_violations(sources) == []


def test_a_planted_training_import_on_the_device_is_caught():
    sources = repository_sources()
    clean = dict(sources)
    sources["client.device"] += "\n\ndef _planted():\n    import torch\n"
    assert device_violations(sources) == [("client.device", "torch")]
    sources = dict(clean)  # two levels down from the SDK, through a module outside the device folders
    sources["shared.tasks"] += "\n\ndef _planted():\n    from shared.training.model import HydraBase\n"
    found = device_violations(sources)
    assert {
        ("shared.tasks", "shared.training.model"),
        ("shared.training.model", "shared.training.model"),
        ("shared.training.model", "torch"),
    } <= set(found)
    sources = dict(clean)
    sources["shared.hydra.spec"] += "\n\ndef _planted():\n    import importlib\n    importlib.import_module('onnx')\n"
    assert device_violations(sources) == [("shared.hydra.spec", "onnx")]
    sources = dict(clean)
    sources["client.guard"] += "\nfrom flwr.app import Message\n"
    assert ("client.guard", "flwr.app") in device_violations(sources)
