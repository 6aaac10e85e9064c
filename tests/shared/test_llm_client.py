"""The LLM client against a stub that misbehaves on purpose, and its cache."""

from __future__ import annotations

import multiprocessing
import socket

import pytest

from shared.errors import (
    ConfigError,
    LLMConnectionError,
    LLMHTTPError,
    LLMResponseError,
    LLMRetriesExhausted,
    LLMTimeoutError,
)
from shared.llm import BudgetExhausted, CallBudget, LLMClient, LLMConfig, ResponseCache
from shared.llm.faulty_stub import StubLLM

MSG = [{"role": "user", "content": "hi"}]


def make_client(url, tmp_path, sleeps=None, **overrides):
    config = LLMConfig(base_url=url, model="stub", cache_path=str(tmp_path / "cache.sqlite"),
                       **{"timeout_s": 2.0, "max_retries": 3, **overrides})
    return LLMClient(config, sleep=(sleeps.append if sleeps is not None else (lambda s: None)))


def test_answers_and_caches(tmp_path):
    with StubLLM() as stub:
        client = make_client(stub.url, tmp_path)
        assert client.complete(MSG) == "echo:hi:seed=0"
        assert client.complete(MSG) == "echo:hi:seed=0"
        assert len(stub.requests) == 1
        assert client.stats.calls == 1 and client.stats.cache_hits == 1
        assert stub.requests[0]["model"] == "stub" and stub.requests[0]["max_tokens"] == 64


@pytest.mark.parametrize("fault", ["500", "503", "429", "drop", "slow"])
def test_retryable_faults_are_retried_then_succeed(tmp_path, fault):
    sleeps = []
    with StubLLM([fault, fault], slow_s=1.5) as stub:
        client = make_client(stub.url, tmp_path, sleeps, timeout_s=0.5)
        assert client.complete(MSG).startswith("echo:hi")
        assert client.stats.retries == 2 and client.stats.calls == 1
    assert len(sleeps) == 2


def test_backoff_is_exponential_with_jitter_and_capped(tmp_path):
    sleeps = []
    with StubLLM(["500"] * 10) as stub:
        client = make_client(stub.url, tmp_path, sleeps, max_retries=6, backoff_s=1.0, backoff_max_s=4.0)
        with pytest.raises(LLMRetriesExhausted) as err:
            client.complete(MSG)
    assert err.value.attempts == 7 and isinstance(err.value.last, LLMHTTPError) and err.value.last.status == 500
    caps = [1, 2, 4, 4, 4, 4]
    assert all(0 <= s <= c for s, c in zip(sleeps, caps)) and len(sleeps) == 6
    assert len(set(sleeps)) > 1  # jittered


def test_retry_after_header_is_honoured(tmp_path):
    sleeps = []
    with StubLLM(["429"]) as stub:
        make_client(stub.url, tmp_path, sleeps, backoff_s=5.0).complete(MSG)
    assert sleeps == [0.0]


def test_timeouts_exhaust_into_a_typed_error(tmp_path):
    with StubLLM(["slow"] * 5, slow_s=1.0) as stub:
        client = make_client(stub.url, tmp_path, timeout_s=0.2, max_retries=1)
        with pytest.raises(LLMRetriesExhausted) as err:
            client.complete(MSG)
    assert isinstance(err.value.last, LLMTimeoutError)
    assert client.stats.failures == 1


def test_connection_refused_is_a_typed_error(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = make_client(f"http://127.0.0.1:{port}/v1", tmp_path, max_retries=2)
    with pytest.raises(LLMRetriesExhausted) as err:
        client.complete(MSG)
    assert isinstance(err.value.last, LLMConnectionError) and err.value.attempts == 3


@pytest.mark.parametrize("fault,error", [("badjson", LLMResponseError), ("nochoices", LLMResponseError),
                                         ("400", LLMHTTPError)])
def test_non_retryable_faults_raise_typed_errors_at_once(tmp_path, fault, error):
    with StubLLM([fault]) as stub:
        client = make_client(stub.url, tmp_path)
        with pytest.raises(error):
            client.complete(MSG)
        assert len(stub.requests) == 1 and client.stats.failures == 1
        assert client.complete(MSG).startswith("echo")  # the failure was not cached


def test_n_candidates_are_n_seeded_requests(tmp_path):
    with StubLLM() as stub:
        client = make_client(stub.url, tmp_path)
        out = client.sample(MSG, 3, temperature=0.8, seed=10)
        assert out == [f"echo:hi:seed={s}" for s in (10, 11, 12)]
        assert [r["temperature"] for r in stub.requests] == [0.8] * 3
        assert client.sample(MSG, 3, temperature=0.8, seed=10) == out and len(stub.requests) == 3


def test_cache_key_covers_endpoint_model_messages_and_sampling(tmp_path):
    with StubLLM() as stub:
        base = make_client(stub.url, tmp_path)
        keys = {
            base.cache_key(base.request(MSG)),
            base.cache_key(base.request(MSG, temperature=0.5)),
            base.cache_key(base.request(MSG, max_tokens=8)),
            base.cache_key(base.request([{"role": "user", "content": "other"}])),
            base.cache_key(base.request(MSG, temperature=0.5, seed=1)),
            make_client(stub.url, tmp_path, endpoint_id="elsewhere").cache_key(base.request(MSG)),
        }
        assert len(keys) == 6
        # with temperature 0 the seed does not matter
        assert base.cache_key(base.request(MSG, seed=3)) == base.cache_key(base.request(MSG, seed=4))


def test_api_key_is_sent_but_never_cached(tmp_path):
    with StubLLM() as stub:
        client = make_client(stub.url, tmp_path, api_key="secret-token-123")
        client.complete(MSG)
        assert stub.headers[0]["Authorization"] == "Bearer secret-token-123"
    assert b"secret-token-123" not in (tmp_path / "cache.sqlite").read_bytes()
    assert "secret" not in repr(client.config)


def test_budget_caps_network_calls_but_not_cache_hits(tmp_path):
    with StubLLM() as stub:
        client = make_client(stub.url, tmp_path)
        budget = CallBudget(1)
        client.complete(MSG, budget=budget)
        client.complete(MSG, budget=budget)  # cached: free
        with pytest.raises(BudgetExhausted):
            client.complete([{"role": "user", "content": "new"}], budget=budget)
        assert len(stub.requests) == 1


def test_config_from_env_and_validation(monkeypatch):
    monkeypatch.setenv("FEDHYDRA_LLM_BASE_URL", "http://h:1/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    config = LLMConfig.from_env(model="m")
    assert (config.base_url, config.model, config.api_key) == ("http://h:1/v1", "m", "k")
    with pytest.raises(ConfigError, match="base_url"):
        LLMConfig(base_url="ftp://x")
    with pytest.raises(ConfigError, match="timeout_s"):
        LLMConfig(base_url="http://x", timeout_s=0)
    monkeypatch.delenv("FEDHYDRA_LLM_BASE_URL")
    with pytest.raises(ConfigError, match="FEDHYDRA_LLM_BASE_URL"):
        LLMConfig.from_env()


def _writer(path, start):
    cache = ResponseCache(path)
    for i in range(start, start + 200):
        cache.put(f"k{i % 300}", {"i": i}, f"v{i % 300}")


def test_cache_is_safe_when_processes_share_it(tmp_path):
    path = tmp_path / "shared.sqlite"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, s)) for s in (0, 100, 200)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    cache = ResponseCache(path)
    assert len(cache) == 300
    assert all(cache.get(f"k{i}") == f"v{i}" for i in range(300))


def test_circuit_breaker_fails_fast_on_a_dead_endpoint_then_retries(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    from shared.errors import LLMUnavailable

    client = make_client(f"http://127.0.0.1:{port}/v1", tmp_path, max_retries=0, breaker_threshold=2,
                         breaker_cooldown_s=0.5)
    for _ in range(2):
        with pytest.raises(LLMRetriesExhausted):
            client.complete([{"role": "user", "content": f"q{_}"}])
    with pytest.raises(LLMUnavailable):
        client.complete([{"role": "user", "content": "q3"}])
    assert client.stats.refused == 1 and client.stats.attempts == 2  # no network call while open
    import time

    time.sleep(0.6)
    with pytest.raises(LLMRetriesExhausted):  # half-open: it tries the endpoint again
        client.complete([{"role": "user", "content": "q4"}])
    assert client.stats.attempts == 3


def test_the_retry_budget_caps_retries_across_calls_then_calls_fail_at_once(tmp_path):
    from shared.errors import LLMError

    with StubLLM(["500"] * 100) as stub:
        client = make_client(stub.url, tmp_path, max_retries=3, retry_budget_min=4, retry_budget_ratio=0.5,
                             breaker_threshold=100)
        failures = 0
        for i in range(6):
            with pytest.raises(LLMRetriesExhausted) as err:
                client.complete([{"role": "user", "content": f"q{i}"}])
            failures += isinstance(err.value, LLMError)
        # at most 4 + 0.5 * 6 = 7 retries in all, not 6 * 3 = 18
        assert client.stats.retries == 7 and len(stub.requests) == 6 + 7
        assert client.stats.retries_denied == 6 - 1  # the first calls retried, the later ones could not
        assert "retry budget is spent" in str(err.value)
        assert client.stats.failures == 6 and failures == 6


def test_the_retry_budget_refills_as_calls_succeed(tmp_path):
    with StubLLM(["500"] * 2 + ["ok"] * 20 + ["500", "ok"]) as stub:
        client = make_client(stub.url, tmp_path, max_retries=3, retry_budget_min=2, retry_budget_ratio=0.1)
        client.complete([{"role": "user", "content": "a"}])  # two retries: the reserve is spent
        for i in range(20):
            client.complete([{"role": "user", "content": f"b{i}"}])
        assert client.complete([{"role": "user", "content": "c"}]).startswith("echo")  # 2 + 0.1 * 22 > 2: retried
        assert client.stats.retries == 3 and client.stats.retries_denied == 0
    assert make_client("http://127.0.0.1:9/v1", tmp_path, retry_budget_ratio=-1)._retry_allowed()


@pytest.mark.parametrize("fault,error", [("badjson", LLMResponseError), ("nochoices", LLMResponseError),
                                         ("400", LLMHTTPError)])
def test_an_endpoint_that_answers_badly_is_not_cut_off_by_the_breaker(tmp_path, fault, error):
    with StubLLM([fault] * 5) as stub:
        client = make_client(stub.url, tmp_path, breaker_threshold=2)
        for i in range(5):
            with pytest.raises(error):
                client.complete([{"role": "user", "content": f"q{i}"}])
        assert client.complete(MSG).startswith("echo") and client.stats.refused == 0
        assert len(stub.requests) == 6


def test_empty_and_offlabel_answers_come_back_as_text(tmp_path):
    with StubLLM(["empty", "offlabel"]) as stub:
        client = make_client(stub.url, tmp_path)
        assert client.complete(MSG) == ""
        assert client.complete([{"role": "user", "content": "x"}]) == "Sorry, I cannot tell."
        assert stub.counts == {"empty": 1, "offlabel": 1}


def test_the_stub_mix_is_seeded():
    draws = []
    for _ in range(2):
        stub = StubLLM(mix={"500": 0.3, "429": 0.2}, seed=7)
        draws.append([stub.next_action() for _ in range(200)])
        stub.server.server_close()
    assert draws[0] == draws[1]
    assert 40 < draws[0].count("500") < 80 and 20 < draws[0].count("429") < 60
