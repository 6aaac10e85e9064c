"""The LLM client against a stub that misbehaves on purpose (and raw 127.0.0.1 servers that trickle or flood), and
its cache."""

from __future__ import annotations

import json
import multiprocessing
import socket
import sqlite3
import threading
import time

import pytest

from lab.faulty_llm_stub import StubLLM
from shared.errors import (
    ConfigError,
    FedHydraError,
    LLMConnectionError,
    LLMHTTPError,
    LLMResponseError,
    LLMRetriesExhausted,
    LLMTimeoutError,
)
from shared.llm import BudgetExhausted, CallBudget, LLMClient, LLMConfig, ResponseCache

MSG = [{"role": "user", "content": "hi"}]


def make_client(url, tmp_path, sleeps=None, **overrides):
    config = LLMConfig(
        base_url=url,
        model="stub",
        cache_path=str(tmp_path / "cache.sqlite"),
        **{"timeout_s": 2.0, "max_retries": 3, **overrides},
    )
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


@pytest.mark.parametrize(
    "fault,error", [("badjson", LLMResponseError), ("nochoices", LLMResponseError), ("400", LLMHTTPError)]
)
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

    client = make_client(
        f"http://127.0.0.1:{port}/v1", tmp_path, max_retries=0, breaker_threshold=2, breaker_cooldown_s=0.5
    )
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
        client = make_client(
            stub.url, tmp_path, max_retries=3, retry_budget_min=4, retry_budget_ratio=0.5, breaker_threshold=100
        )
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


@pytest.mark.parametrize(
    "fault,error", [("badjson", LLMResponseError), ("nochoices", LLMResponseError), ("400", LLMHTTPError)]
)
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


# -- issue 28, items 12-14: a deadline per request, bounded answers, a damaged cache file ------------------------

COMPLETION = json.dumps({"choices": [{"message": {"role": "assistant", "content": "fine"}}]}).encode()


class RawEndpoint:
    """A TCP server on 127.0.0.1 that reads one HTTP request per connection and answers with ``respond(sock, stop)``
    (raw bytes: for what an HTTP library will not send, such as a byte every half second)."""

    def __init__(self, respond):
        self.respond = respond
        self.stop = threading.Event()
        self.connections = 0
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}/v1"
        self.threads = [threading.Thread(target=self._serve, daemon=True)]

    def _serve(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.server.accept()
            except OSError:
                continue
            self.connections += 1
            worker = threading.Thread(target=self._handle, args=(conn,), daemon=True)
            self.threads.append(worker)
            worker.start()

    def _handle(self, conn):
        with conn:
            conn.settimeout(5)
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, _, body = data.partition(b"\r\n\r\n")
            length = next(
                int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
            )
            while len(body) < length:
                body += conn.recv(65536)
            try:
                self.respond(conn, self.stop)
            except OSError:
                pass  # the client hung up: what these tests want

    def __enter__(self):
        self.threads[0].start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=5)
        self.server.close()


def trickle(data: bytes, every_s: float = 0.5):
    def respond(conn, stop):
        for i in range(len(data)):
            if stop.wait(every_s):
                return
            conn.sendall(data[i : i + 1])

    return respond


HEADERS = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"


@pytest.mark.parametrize("phase", ["body", "headers"])
def test_a_server_sending_a_byte_every_half_second_cannot_outlive_the_deadline(tmp_path, phase):
    # issue 28, item 12: each byte arrived within the 2 s read timeout, so the request lived 40 s and counted as a
    # success; now 2 s is the deadline of the whole attempt: a timeout, retried per the policy, never cached
    if phase == "body":

        def respond(conn, stop):
            conn.sendall(HEADERS % len(COMPLETION))
            trickle(COMPLETION)(conn, stop)
    else:  # the status line and headers themselves trickle, then a close-delimited body
        respond = trickle(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + COMPLETION)
    with RawEndpoint(respond) as endpoint:
        client = make_client(endpoint.url, tmp_path, timeout_s=2.0, max_retries=1)
        started = time.monotonic()
        with pytest.raises(LLMRetriesExhausted) as err:
            client.complete(MSG)
        elapsed = time.monotonic() - started
    assert isinstance(err.value.last, LLMTimeoutError) and "timeout_s = 2.0" in str(err.value.last)
    assert err.value.attempts == 2 and client.stats.retries == 1 and endpoint.connections == 2
    assert elapsed < 2 * 2.0 + 1.5  # two attempts of at most 2 s each (plus a read's slack)
    assert client.stats.calls == 0 and len(client.cache) == 0  # not a success, not cached


def test_the_deadline_leaves_a_healthy_endpoint_alone_and_the_pool_usable(tmp_path):
    with StubLLM(["slow"], slow_s=3.0) as stub:
        client = make_client(stub.url, tmp_path, timeout_s=1.0, max_retries=2)
        assert client.complete(MSG) == "echo:hi:seed=0"  # the slow attempt timed out, the retry answered
        assert client.stats.retries == 1
        for i in range(20):  # connections reused after a timed-out attempt; no deadline fires late on them
            assert client.complete([{"role": "user", "content": f"q{i}"}]) == f"echo:q{i}:seed=0"
        time.sleep(1.2)
        assert client.complete([{"role": "user", "content": "after"}]) == "echo:after:seed=0"


def big(n_bytes: int, *, declare: bool):
    """A valid chat completion whose answer is ``n_bytes`` of "x" (what the client accepted and cached before)."""
    prefix, suffix = b'{"choices": [{"message": {"content": "', b'"}}]}'

    def respond(conn, stop):
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        total = len(prefix) + n_bytes + len(suffix)
        head += b"Content-Length: %d\r\n\r\n" % total if declare else b"Connection: close\r\n\r\n"
        conn.sendall(head + prefix)
        block = b"x" * 65536
        for start in range(0, n_bytes, len(block)):
            if stop.is_set():
                return
            conn.sendall(block[: n_bytes - start])
        conn.sendall(suffix)

    return respond


@pytest.mark.parametrize("declare", [True, False])
def test_a_10_mb_body_is_refused_while_streaming_naming_the_bound(tmp_path, declare):
    # issue 28, item 13: a 10 MB answer was read whole, parsed and cached
    with RawEndpoint(big(10 << 20, declare=declare)) as endpoint:
        client = make_client(endpoint.url, tmp_path, max_retries=3)
        started = time.monotonic()
        with pytest.raises(LLMResponseError, match=r"over max_response_bytes = 1048576"):
            client.complete(MSG, max_tokens=8)
        assert time.monotonic() - started < 2.0
    assert endpoint.connections == 1 and client.stats.retries == 0  # the endpoint answered: not retried
    assert len(client.cache) == 0 and client.stats.failures == 1


def test_an_answer_longer_than_max_tokens_allows_is_refused_and_not_cached(tmp_path):
    long_text = "word " * 2000  # 10,000 characters
    body = json.dumps({"choices": [{"message": {"content": long_text}}]}).encode()

    def respond(conn, stop):
        conn.sendall(HEADERS % len(body) + body)

    with RawEndpoint(respond) as endpoint:
        client = make_client(endpoint.url, tmp_path)
        with pytest.raises(LLMResponseError) as err:
            client.complete(MSG, max_tokens=8)
        assert "10000 characters, over the bound of 768 for max_tokens = 8" in str(err.value)
        assert len(client.cache) == 0 and client.stats.retries == 0
        assert client.complete(MSG, max_tokens=200) == long_text  # within 64 characters a token: accepted
    # an over-long answer already in a cache (written by an older version) is not used either
    body8 = client.request(MSG, max_tokens=8)
    client.cache.put(client.cache_key(body8), body8, long_text)
    with pytest.raises(LLMResponseError, match="cached answer holds 10000 characters"):
        client.complete(MSG, max_tokens=8)
    assert client.cached(MSG, max_tokens=8) is None


@pytest.mark.parametrize("content", [b"this is no database, it is a user's notes\n" * 50, "truncated"])
def test_a_garbage_cache_file_is_a_typed_error_saying_what_to_do(tmp_path, content):
    # issue 28, item 14: a raw sqlite3.DatabaseError traceback; the file is refused (not rebuilt: it may be a file
    # of the user's given as the cache by mistake) and left as it was
    path = tmp_path / "cache.sqlite"
    if content == "truncated":  # a real cache cut short: the header is right, the pages are gone
        with StubLLM() as stub:
            make_client(stub.url, tmp_path).complete(MSG)
        conn = sqlite3.connect(path)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        content = path.read_bytes()[:200] + b"\xff" * 3000
    path.write_bytes(content)
    with pytest.raises(FedHydraError) as err:  # one line and exit 2 from the command line
        make_client("http://127.0.0.1:9/v1", tmp_path)
    assert type(err.value).__name__ == "LLMCacheError"
    message = str(err.value)
    assert "LLM answer cache" in message and "move it away" in message and "FEDHYDRA_LLM_CACHE" in message
    assert str(tmp_path) not in message and "notes" not in message
    assert path.read_bytes() == content


@pytest.mark.parametrize(
    "field,value",
    [
        ("max_response_bytes", 0),
        ("max_response_bytes", 1.5e6),
        ("answer_chars_per_token", 0),
        ("timeout_s", float("inf")),
        ("timeout_s", float("nan")),
    ],
)
def test_the_bounds_themselves_are_checked(field, value):
    with pytest.raises(ConfigError, match=f"llm {field} must be"):
        LLMConfig(base_url="http://127.0.0.1:9/v1", **{field: value})
