"""The real embedded LLM server (llama.cpp's llama-server + SmolLM2-135M-Instruct), end to end, no mocks."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from shared.errors import LLMServerError
from shared.llm import LLMClient
from shared.llm.embedded import (
    EMBEDDED_SLOTS,
    gguf_path,
    llama_server_binary,
    recommended_concurrency,
    running_server,
    start_server,
    stop_server,
)
from shared.llm.resolver import resolve_llm
from shared.procs import pid_alive

pytestmark = [pytest.mark.llm, pytest.mark.slow]


def _chat(url: str, content: str, **params) -> str:
    body = {"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": content}], **params}
    response = requests.post(url + "/chat/completions", json=body, timeout=120)
    response.raise_for_status()
    return response.json()["choices"][0]["message"]["content"]


def test_model_file_and_server_binary_are_installed():
    path = gguf_path()
    assert path.suffix == ".gguf" and path.stat().st_size > 50_000_000
    binary = llama_server_binary()
    assert binary.name == "llama-server" and os.access(binary, os.X_OK)


def test_a_missing_binary_is_a_typed_error_naming_setup(monkeypatch, tmp_path):
    monkeypatch.delenv("FEDHYDRA_LLAMA_SERVER", raising=False)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(LLMServerError, match="scripts/setup.sh"):
        llama_server_binary()


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
    assert llm_config.identity.startswith("embedded:llama-server:")


def test_requests_in_flight_at_once_are_all_answered(llm_server):
    assert llm_server.slots == EMBEDDED_SLOTS == recommended_concurrency(llm_server)
    props = requests.get(llm_server.url.removesuffix("/v1") + "/props", timeout=10).json()
    assert props["total_slots"] == llm_server.slots
    prompts = [f"Write one word that rhymes with {w}." for w in ("cat", "dog", "tree", "sun", "moon", "car")]
    with ThreadPoolExecutor(max_workers=len(prompts)) as pool:
        answers = list(pool.map(lambda p: _chat(llm_server.url, p, max_tokens=6, temperature=0.7, seed=1), prompts))
    assert len(answers) == len(prompts) and all(a.strip() for a in answers)


def test_sampling_parameters_are_honoured(llm_server):
    url, q = llm_server.url, "Tell me a short story about a cat."
    greedy = [_chat(url, q, temperature=0.0, max_tokens=12) for _ in range(2)]
    assert greedy[0] == greedy[1]  # greedy is deterministic
    seeded = [_chat(url, q, temperature=1.0, top_p=0.95, max_tokens=12, seed=7) for _ in range(2)]
    assert seeded[0] == seeded[1]  # the same seed gives the same sample
    others = {_chat(url, q, temperature=1.0, max_tokens=12, seed=s) for s in (1, 2, 3)}
    assert len(others | {seeded[0]}) > 1  # other seeds give other samples
    body = {"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": q}], "max_tokens": 5}
    usage = requests.post(url + "/chat/completions", json=body, timeout=60).json()["usage"]
    assert usage["completion_tokens"] <= 5
    long = _chat(url, "Count from 1 to 20, separated by commas.", temperature=0.0, max_tokens=40)
    cut = _chat(url, "Count from 1 to 20, separated by commas.", temperature=0.0, max_tokens=40, stop=["5"])
    assert "5" in long and "5" not in cut and long.startswith(cut.rstrip())


def test_cli_serve_and_stop(tmp_path):
    env = {**os.environ, "FEDHYDRA_HOME": str(tmp_path)}
    cmd = [sys.executable, "-m", "simulations.cli", "llm"]
    served = subprocess.run(cmd + ["serve", "--slots", "2"], env=env, capture_output=True, text=True, timeout=300)
    assert served.returncode == 0, served.stderr
    url = served.stdout.strip()
    assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
    assert requests.get(url + "/models", timeout=10).status_code == 200
    assert requests.get(url.removesuffix("/v1") + "/health", timeout=10).status_code == 200
    info = running_server(tmp_path / "llm-server")
    assert info is not None and info.url == url and info.slots == 2
    assert subprocess.run(cmd + ["status"], env=env, capture_output=True, text=True).stdout.strip() == url
    stopped = subprocess.run(cmd + ["stop"], env=env, capture_output=True, text=True, timeout=60)
    assert stopped.returncode == 0 and f"stopped pid {info.pid}" in stopped.stdout
    assert not pid_alive(info.pid)
    with pytest.raises(requests.ConnectionError):
        requests.get(url + "/models", timeout=5)
    assert subprocess.run(cmd + ["status"], env=env, capture_output=True, text=True).returncode == 1


def test_the_resolver_starts_on_demand_and_stops_what_it_started(tmp_path):
    with resolve_llm(state_dir=tmp_path) as endpoint:
        config = endpoint.config
        assert config.model == "smollm2-135m-instruct" and config.identity.startswith("embedded:llama-server:")
        assert LLMClient(config).complete([{"role": "user", "content": "Say yes."}], max_tokens=4)
        info = running_server(tmp_path)
        assert info is not None and pid_alive(info.pid)
    assert running_server(tmp_path) is None and not pid_alive(info.pid)


def test_start_reuses_a_running_server_and_stop_is_idempotent(tmp_path):
    first = start_server(state_dir=tmp_path, slots=1)
    try:
        assert start_server(state_dir=tmp_path, slots=1) == first
    finally:
        assert stop_server(tmp_path) == first
    assert not pid_alive(first.pid) and stop_server(tmp_path) is None
    assert not Path(tmp_path / "server.json").exists()
