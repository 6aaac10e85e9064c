"""The house's one direction: shared/ knows no side; client/ and server/ never import each other or what sits on
top (simulations/, scripts/); nothing imports tests/. Parsed from the sources, lazy imports included."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "shared": {"client", "server", "simulations", "scripts", "tests"},
    "client": {"server", "simulations", "scripts", "tests"},
    "server": {"client", "simulations", "scripts", "tests"},
    "simulations": {"scripts", "tests"},
    "scripts": {"tests"},
}
KNOWN = {("client/evaluation.py", "simulations.hydra_run")}
"""Left to move (issue 17): the evaluation harness (evaluate_users, Predictions and the baselines it runs) still
lives in simulations/ and the federated test clients call it through client/evaluation.py."""


def imported_modules(source: str) -> list[str]:
    """Every module an import statement of ``source`` names (absolute imports).

    >>> imported_modules("import a.b\\nfrom c import d\\ndef f():\\n    from e.f import g")
    ['a.b', 'c', 'e.f']
    """
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append(node.module)
    return out


def violations(package: str, source: str, path: str) -> list[tuple[str, str]]:
    """(path, module) for each import of ``source`` that runs against the direction from ``package``."""
    return [(path, m) for m in imported_modules(source) if m.split(".")[0] in FORBIDDEN.get(package, set())]


def test_no_import_runs_against_the_house_direction():
    found = set()
    for package in FORBIDDEN:
        for file in sorted((REPO / package).rglob("*.py")):
            rel = file.relative_to(REPO).as_posix()
            found |= set(violations(package, file.read_text(encoding="utf-8"), rel))
    assert found - KNOWN == set(), f"imports against the direction: {sorted(found - KNOWN)}"
    assert KNOWN <= found  # an exception that is fixed must leave the list


def test_a_planted_forbidden_import_is_caught():
    planted = "from shared.config import RunConfig\n\ndef f():\n    from server.strategies import build_strategy\n"
    assert violations("client", planted, "client/x.py") == [("client/x.py", "server.strategies")]
    assert violations("server", planted, "server/x.py") == []
