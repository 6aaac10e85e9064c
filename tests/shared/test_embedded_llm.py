"""The real embedded LLM server (llama.cpp + SmolLM2-135M-Instruct), end to end."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import requests

from shared.llm import LLMClient
from shared.llm.embedded import ensure_llm, gguf_path, running_server

pytestmark = [pytest.mark.llm, pytest.mark.slow]


def test_model_file_ships_in_the_package():
    path = gguf_path()
    assert path.suffix == ".gguf" and path.stat().st_size > 50_000_000


def test_real_server_answers_and_the_cache_serves_reruns(llm_config):
    client = LLMClient(llm_config)
    messages = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
    first = client.complete(messages, max_tokens=8)
    assert isinstance(first, str) and first.strip()
    samples = client.sample(messages, 3, temperature=1.0, max_tokens=8, seed=5)
    assert len(samples) == 3 and client.stats.calls == 4
    again = LLMClient(llm_config)  # a new process would see the same file
    assert again.complete(messages, max_tokens=8) == first
    assert again.sample(messages, 3, temperature=1.0, max_tokens=8, seed=5) == samples
    assert again.stats.calls == 0 and again.stats.cache_hits == 4


def test_cli_serve_and_stop(tmp_path):
    env = {**os.environ, "FEDHYDRA_HOME": str(tmp_path)}
    cmd = [sys.executable, "-m", "simulations.cli", "llm"]
    served = subprocess.run(cmd + ["serve"], env=env, capture_output=True, text=True, timeout=300)
    assert served.returncode == 0, served.stderr
    url = served.stdout.strip()
    assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
    assert requests.get(url + "/models", timeout=10).status_code == 200
    info = running_server(tmp_path / "llm-server")
    assert info is not None and info.url == url
    stopped = subprocess.run(cmd + ["stop"], env=env, capture_output=True, text=True, timeout=60)
    assert stopped.returncode == 0 and f"stopped pid {info.pid}" in stopped.stdout
    with pytest.raises(requests.ConnectionError):
        requests.get(url + "/models", timeout=5)
    assert subprocess.run(cmd + ["status"], env=env, capture_output=True, text=True).returncode == 1


def test_ensure_llm_starts_on_demand_and_stops_what_it_started(tmp_path):
    with ensure_llm(state_dir=tmp_path) as config:
        assert config.model == "smollm2-135m-instruct" and config.identity.startswith("embedded:")
        assert LLMClient(config).complete([{"role": "user", "content": "Say yes."}], max_tokens=4)
        assert running_server(tmp_path) is not None
    assert running_server(tmp_path) is None
