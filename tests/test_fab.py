"""What a deployment and an installed wheel carry (pyproject.toml): the app bundle (FAB) that ``flwr run`` builds holds
the ServerApp, the ClientApp and what they import, never the lab (fault injection, the scale harness, the stub LLMs);
the wheel's packages leave the lab out too."""

from __future__ import annotations

import io
import re
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LAB_WORDS = re.compile(r"fault|scale|stub", re.IGNORECASE)
"""What names a lab module (lab/faults/, lab/scale/, lab/llm_stub.py, lab/faulty_llm_stub.py)."""


def fab_files(app: Path) -> list[str]:
    """The files of the FAB of the app in ``app``, built in memory as ``flwr run`` builds it (nothing written)."""
    from flwr.cli.build import build_fab_from_disk

    return zipfile.ZipFile(io.BytesIO(build_fab_from_disk(app))).namelist()


def app_config() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def names() -> list[str]:
    return fab_files(REPO)


def test_the_bundle_holds_the_apps_and_no_lab_code(names):
    code = [n for n in names if n.endswith(".py")]
    assert "server/server_app.py" in code and "client/client_app.py" in code
    assert {n.split("/")[0] for n in code} == {"server", "client", "shared"}  # no simulations/, no lab/
    assert not [n for n in names if n.startswith("lab/")]
    assert not [n for n in code if LAB_WORDS.search(n)], "fault, scale or stub code in the FAB"


def test_the_bundle_holds_every_module_the_apps_import(names):
    """Each ServerApp and ClientApp component's module, and every module of the product it names, is in the bundle."""
    components = app_config()["tool"]["flwr"]["app"]["components"]
    for ref in components.values():
        assert ref.split(":")[0].replace(".", "/") + ".py" in names
    tracked = {
        p.relative_to(REPO).as_posix()
        for package in ("server", "client", "shared")
        for p in (REPO / package).rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert tracked <= set(names)


def test_the_bundle_pattern_check_catches_planted_lab_code(tmp_path):
    """The same build on an app folder whose fab-include adds the lab: the checks above would see it."""
    import shutil

    import tomli_w

    config = app_config()
    config["tool"]["flwr"]["app"]["fab-include"] = [*config["tool"]["flwr"]["app"]["fab-include"], "lab/**/*.py"]
    app = tmp_path / "app"
    for pattern in config["tool"]["flwr"]["app"]["fab-include"]:
        for path in REPO.glob(pattern):
            if path.is_file() and "__pycache__" not in path.parts:
                (app / path.relative_to(REPO)).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, app / path.relative_to(REPO))
    (app / "pyproject.toml").write_text(tomli_w.dumps(config), encoding="utf-8")
    planted = fab_files(app)
    assert "lab/faults/client_app.py" in planted and [n for n in planted if LAB_WORDS.search(n)]


def test_the_wheel_carries_no_lab_code():
    from setuptools import find_packages

    include = app_config()["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = find_packages(where=str(REPO), include=include)
    assert {"server", "client", "shared", "simulations"} <= set(packages)
    assert not [p for p in packages if p.split(".")[0] in ("lab", "tests", "scripts")]
    assert not [p for p in packages if LAB_WORDS.search(p)], "fault, scale or stub packages in the wheel"
