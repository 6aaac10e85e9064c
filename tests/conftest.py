"""Shared fixtures: an isolated FEDHYDRA_HOME, the real LaMP data in ../shared, and the real embedded LLM."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def lamp_dir() -> Path | None:
    """The provided real LaMP data (``../shared/data/lamp`` beside the repository), or FEDHYDRA_LAMP_DIR."""
    path = Path(os.environ.get("FEDHYDRA_LAMP_DIR") or REPO.parent / "shared" / "data" / "lamp")
    return path if (path / "lamp7").is_dir() else None


@pytest.fixture
def lamp_data() -> Path:
    path = lamp_dir()
    if path is None:
        pytest.skip("real LaMP data not found beside the repository (../shared/data/lamp); set FEDHYDRA_LAMP_DIR")
    return path


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Every test gets its own FEDHYDRA_HOME (cache, server state) unless it asks for the session server."""
    home = tmp_path_factory.mktemp("fedhydra-home")
    monkeypatch.setenv("FEDHYDRA_HOME", str(home))
    monkeypatch.delenv("FEDHYDRA_LLM_BASE_URL", raising=False)
    monkeypatch.delenv("FEDHYDRA_LLM_CACHE", raising=False)
    yield home


@pytest.fixture(scope="session")
def llm_server(tmp_path_factory):
    """The real embedded LLM server (llama.cpp's llama-server + SmolLM2, default slots), started once for the session."""
    from shared.llm.embedded import start_server, stop_server

    state = tmp_path_factory.mktemp("llm-server")
    info = start_server(state_dir=state)
    yield info
    stop_server(state)


@pytest.fixture
def llm_config(llm_server, tmp_path):
    """A client config for the session server with a fresh, empty cache."""
    from shared.llm.embedded import embedded_config

    return embedded_config(llm_server.url, cache_path=str(tmp_path / "cache.sqlite"))


FAKE_LLAMA_SERVER = """#!/bin/bash
# llama-server's command line in, the deterministic stub endpoint out (lab/llm_stub.py), named llama-server
port=
while [ $# -gt 0 ]; do if [ "$1" = "--port" ]; then port="$2"; fi; shift; done
export PYTHONPATH={repo}
exec -a llama-server {python} -m lab.llm_stub --port "$port" --delay 0
"""


@pytest.fixture
def fake_llama_server(tmp_path, monkeypatch) -> Path:
    """``FEDHYDRA_LLAMA_SERVER`` set to a stand-in for llama-server that serves the stub endpoint (not a language
    model; starts in a second): for testing who starts and stops the embedded server, without the real one."""
    import shlex
    import sys

    path = tmp_path / "bin" / "llama-server"
    path.parent.mkdir()
    path.write_text(FAKE_LLAMA_SERVER.format(repo=shlex.quote(str(REPO)), python=shlex.quote(sys.executable)))
    path.chmod(0o755)
    monkeypatch.setenv("FEDHYDRA_LLAMA_SERVER", str(path))
    return path


@pytest.fixture
def flower_task_identity():
    """Flower messages built outside a Flower process need a task identity; restored afterwards."""
    from flwr.supercore.task_identity import TaskIdentity

    saved = (TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id)
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 1, 1
    yield
    TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id = saved
