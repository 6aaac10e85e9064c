"""The one LLM resolver (shared/llm/resolver.py): which endpoint it picks, and the lifecycle of an embedded server it
starts. The embedded server here is a stand-in (the ``fake_llama_server`` fixture: the stub endpoint under
llama-server's name), so these tests need neither the model nor the real server (those: test_embedded_llm.py)."""

from __future__ import annotations

import logging

import pytest

from shared.llm import LLMClient, LLMConfig
from shared.llm.embedded import EMBEDDED_MODEL, running_server, start_server, stop_server
from shared.llm.resolver import STOP_HINT, resolve_llm
from shared.procs import pid_alive


def test_an_explicit_endpoint_wins_and_starts_nothing(tmp_path, monkeypatch):
    given = LLMConfig(base_url="http://127.0.0.1:9/v1")
    assert resolve_llm(given, url="http://127.0.0.1:8/v1").config is given
    monkeypatch.setenv("FEDHYDRA_LLM_MODEL", "from-env")
    url = resolve_llm(url="http://127.0.0.1:8/v1", timeout_s=5.0, cache_path=None)
    assert (url.source, url.config.model, url.config.timeout_s, url.config.identity) == (
        "url",
        "from-env",
        5.0,
        "http://127.0.0.1:8/v1",
    )
    embedded = resolve_llm(url="http://127.0.0.1:8/v1", model=EMBEDDED_MODEL).config
    assert embedded.identity.startswith("embedded:llama-server:") and embedded.same_prompt_in_turn
    monkeypatch.setenv("FEDHYDRA_LLM_BASE_URL", "http://127.0.0.1:7/v1")
    env = resolve_llm(concurrency=3, state_dir=tmp_path)
    assert (env.source, env.config.base_url, env.config.concurrency, env.server) == (
        "environment",
        "http://127.0.0.1:7/v1",
        3,
        None,
    )
    assert running_server(tmp_path) is None


def test_a_server_it_starts_is_stopped_when_the_endpoint_closes(tmp_path, fake_llama_server):
    with resolve_llm(state_dir=tmp_path, concurrency=2) as endpoint:
        info = endpoint.server
        assert endpoint.source == "embedded server (started)" and info is not None and pid_alive(info.pid)
        assert endpoint.config.base_url == info.url and endpoint.config.concurrency == 2
        assert endpoint.config.identity.startswith("embedded:llama-server:")
        assert LLMClient(LLMConfig(base_url=info.url, cache_path="")).complete(
            [{"role": "user", "content": "a b c"}], max_tokens=4
        )
    assert running_server(tmp_path) is None and not pid_alive(info.pid)
    assert endpoint.close() is None  # idempotent


def test_endpoints_of_one_process_share_the_server_it_started(tmp_path, fake_llama_server):
    first = resolve_llm(state_dir=tmp_path)
    second = resolve_llm(state_dir=tmp_path)
    assert first.server == second.server and first.server is not None
    pid = first.server.pid
    assert first.close() is None and pid_alive(pid)  # the second still holds it
    assert second.close() is not None and not pid_alive(pid)


def test_a_server_already_running_is_used_and_left_running(tmp_path, fake_llama_server):
    info = start_server(state_dir=tmp_path)
    try:
        with resolve_llm(state_dir=tmp_path) as endpoint:
            assert endpoint.source == "embedded server (running)" and endpoint.server is None
            assert endpoint.config.base_url == info.url
        assert running_server(tmp_path) == info
    finally:
        stop_server(tmp_path)


def test_a_kept_server_stays_and_the_log_says_how_to_stop_it(tmp_path, fake_llama_server, caplog):
    caplog.set_level(logging.INFO, logger="shared.llm.resolver")
    endpoint = resolve_llm(state_dir=tmp_path, keep=True)
    info = endpoint.kept
    try:
        assert endpoint.source == "embedded server (kept)" and info is not None and endpoint.server is None
        assert any("keeps running" in r.message and STOP_HINT in r.message for r in caplog.records)
        caplog.clear()
        assert endpoint.close() is None and pid_alive(info.pid)
        assert any("left running" in r.message and STOP_HINT in r.message for r in caplog.records)
        assert running_server(tmp_path) == info
        # a node resolves a kept server once per message: nothing is held for it, nothing grows
        again = [resolve_llm(state_dir=tmp_path, keep=True) for _ in range(3)]
        assert all(e.kept is None and e.config.base_url == info.url for e in again)
        assert not any((tmp_path / "holders").glob("*"))
    finally:
        stop_server(tmp_path)
    assert not pid_alive(info.pid)


def test_keeping_wins_over_an_endpoint_that_would_stop_it(tmp_path, fake_llama_server):
    owner = resolve_llm(state_dir=tmp_path)
    kept = resolve_llm(state_dir=tmp_path, keep=True)  # this process's server, asked to stay
    assert kept.kept is None and kept.config.base_url == owner.server.url
    pid = owner.server.pid
    try:
        assert owner.close() is None and pid_alive(pid)
    finally:
        stop_server(tmp_path)


@pytest.mark.parametrize("keep", [False, True])
def test_the_process_exit_stops_what_was_not_kept(tmp_path, fake_llama_server, keep):
    import subprocess
    import sys

    from tests.conftest import REPO

    script = (
        "from pathlib import Path; import sys; from shared.llm.resolver import resolve_llm; "
        f"e = resolve_llm(state_dir=Path(sys.argv[1]), keep={keep}); print((e.server or e.kept).pid)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    pid = int(done.stdout.strip())
    try:
        assert pid_alive(pid) is keep
        assert (STOP_HINT in done.stderr) is keep
    finally:
        stop_server(tmp_path)


_HOLDER = (
    "import sys; from pathlib import Path; from shared.llm.resolver import resolve_llm; "
    "e = resolve_llm(state_dir=Path(sys.argv[1])); print(e.config.base_url, flush=True); "
    "sys.stdin.readline(); e.close(); print('closed', flush=True)"
)


def _holders(state_dir, n):
    """``n`` processes that resolve the embedded server at once, each holding it until told to close."""
    import subprocess
    import sys

    from tests.conftest import REPO

    return [
        subprocess.Popen(
            [sys.executable, "-c", _HOLDER, str(state_dir)],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for _ in range(n)
    ]


def _close(proc) -> None:
    proc.stdin.write("\n")
    proc.stdin.flush()
    assert proc.stdout.readline().strip() == "closed"
    assert proc.wait(timeout=60) == 0


def test_processes_started_together_share_one_server_and_the_last_to_close_stops_it(tmp_path, fake_llama_server):
    procs = _holders(tmp_path, 3)
    try:
        urls = {p.stdout.readline().strip() for p in procs}
        info = running_server(tmp_path)
        assert info is not None and urls == {info.url}  # one server, not one each
        assert len(list(tmp_path.glob("server-*.log"))) == 1  # only one was ever started
        for proc in procs[:-1]:
            _close(proc)
            assert running_server(tmp_path) == info  # not stopped under the one still using it
        _close(procs[-1])
        assert running_server(tmp_path) is None and not pid_alive(info.pid)
        assert not list((tmp_path / "holders").iterdir())
    finally:
        for proc in procs:
            proc.kill()
        stop_server(tmp_path)


def test_a_process_that_dies_without_closing_does_not_keep_the_server_forever(tmp_path, fake_llama_server):
    killed, survivor = _holders(tmp_path, 2)
    try:
        assert killed.stdout.readline().strip() == survivor.stdout.readline().strip()
        info = running_server(tmp_path)
        killed.kill()  # no atexit: its hold stays on disk, naming a dead pid
        killed.wait(timeout=30)
        assert running_server(tmp_path) == info
        _close(survivor)
        assert running_server(tmp_path) is None and not pid_alive(info.pid)
    finally:
        killed.kill()
        survivor.kill()
        stop_server(tmp_path)


def test_a_server_started_by_fedhydra_llm_start_is_never_stopped_by_its_users(tmp_path, fake_llama_server):
    info = start_server(state_dir=tmp_path)  # what ``fedhydra llm start`` does: no one asked it to stop
    try:
        (proc,) = _holders(tmp_path, 1)
        assert proc.stdout.readline().strip() == info.url
        _close(proc)
        assert running_server(tmp_path) == info
    finally:
        stop_server(tmp_path)
