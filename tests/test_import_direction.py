"""The house's one direction: shared/ knows no side; client/ and server/ never import each other or what sits on
top (simulations/, lab/, scripts/); the product (shared/, client/, server/) and simulations/ never import the lab
(lab/: instruments for experiments and tests), which sits on top with scripts/ (only scripts/ and tests/ import it);
nothing imports tests/; and no module imports itself back through others (no cycle). Parsed from the sources, lazy
imports (inside functions) included. docs/design.md, "The import graph", draws it."""

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


def violations(package: str, source: str, path: str) -> list[tuple[str, str]]:
    """(path, module) for each import of ``source`` that runs against the direction from ``package``."""
    return [(path, m) for m in dict.fromkeys(imported_modules(source)) if m.split(".")[0] in FORBIDDEN.get(package, set())]


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
    return {module_name(f): f.read_text(encoding="utf-8") for package in FORBIDDEN
            for f in sorted((REPO / package).rglob("*.py"))}


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
    assert violations("client", planted, "client/x.py") == [("client/x.py", "server.strategies"),
                                                             ("client/x.py", "server.strategies.build_strategy")]
    assert violations("server", planted, "server/x.py") == []
    assert violations("shared", "import simulations.cli\n", "shared/x.py") == [("shared/x.py", "simulations.cli")]


def test_only_scripts_and_tests_import_the_lab():
    assert {p for p, banned in FORBIDDEN.items() if "lab" not in banned} == {"lab", "scripts"}
    assert all("lab" in FORBIDDEN[p] for p in PRODUCT)
    assert violations("simulations", "from lab.faults.app import fault_app\n", "simulations/x.py") == [
        ("simulations/x.py", "lab.faults.app"), ("simulations/x.py", "lab.faults.app.fault_app")]
    assert violations("server", "def f():\n    import lab.llm_stub\n", "server/x.py") == [("server/x.py", "lab.llm_stub")]
    assert violations("lab", "from simulations.federated import app_copy\n", "lab/x.py") == []
    assert violations("lab", "import scripts.fed_sweep\n", "lab/x.py") == [("lab/x.py", "scripts.fed_sweep")]


def test_a_planted_cycle_is_caught():
    sources = repository_sources()
    assert cycles(import_graph(sources)) == []
    # shared.users imports shared.data; a lazy import back from shared.data closes a cycle
    sources["shared.data"] += "\n\ndef _planted():\n    from shared.users import split_users\n"
    assert cycles(import_graph(sources)) == [["shared.data", "shared.users"]]
