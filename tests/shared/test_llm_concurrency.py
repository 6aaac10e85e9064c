"""The LLM client with several requests in flight: order, cache, budget, retries and the breaker stay exact."""

from __future__ import annotations

import threading
import time

import pytest

from lab.faulty_llm_stub import StubLLM
from lab.llm_stub import StubEndpoint, stub_answer
from shared.errors import LLMHTTPError, LLMRetriesExhausted, LLMUnavailable
from shared.llm import BudgetExhausted, CallBudget, LLMClient, LLMConfig
from shared.llm.client import LLMCall


def calls(n: int, prefix: str = "q") -> list[LLMCall]:
    return [LLMCall([{"role": "user", "content": f"{prefix}{i}"}], temperature=0.7, seed=i) for i in range(n)]


def client_for(url, tmp_path, concurrency, name="cache.sqlite", **overrides):
    config = LLMConfig(
        base_url=url,
        model="stub",
        cache_path=str(tmp_path / name),
        concurrency=concurrency,
        **{"timeout_s": 5.0, "max_retries": 3, **overrides},
    )
    return LLMClient(config, sleep=lambda s: None)


def test_concurrency_is_validated():
    for bad in (0, -1, 1.5, True):
        with pytest.raises(Exception, match="concurrency"):
            LLMConfig(base_url="http://x/v1", concurrency=bad)


def test_requests_overlap_up_to_the_limit_and_answers_keep_the_batch_order(tmp_path):
    with StubEndpoint(delay_s=0.2) as stub:
        client = client_for(stub.url, tmp_path, concurrency=4)
        batch = calls(12)
        started = time.monotonic()
        answers = client.complete_many(batch)
        elapsed = time.monotonic() - started
    assert stub.max_in_flight == 4  # never more than the limit, and the limit is used
    assert elapsed < 12 * 0.2 / 2  # one at a time would take 2.4 s
    expected = [stub_answer(client.request(c.messages, temperature=c.temperature, seed=c.seed)) for c in batch]
    assert answers == expected


def test_a_slow_first_request_does_not_reorder_the_answers(tmp_path):
    with StubLLM(script=["slow"], slow_s=0.5) as stub:
        client = client_for(stub.url, tmp_path, concurrency=4)
        answers = client.complete_many(calls(6))
    assert answers == [f"echo:q{i}:seed={i}" for i in range(6)]
    # the slow one is whichever request reached the stub first: one of the four first in flight, answered after
    # later ones (which request of the four arrives first is up to the threads)
    assert stub.requests[0]["messages"][0]["content"] in {"q0", "q1", "q2", "q3"}


def test_the_same_requests_are_sent_at_every_concurrency_and_the_cache_serves_reruns(tmp_path):
    sent = {}
    for c in (1, 8):
        with StubEndpoint(delay_s=0.01) as stub:
            client = client_for(stub.url, tmp_path, concurrency=c, name=f"c{c}.sqlite")
            batch = calls(10) + calls(3)  # three repeats inside the batch: sent once
            budget = CallBudget(7)
            with client.meter() as meter:
                answers = client.complete_many(batch, budget=budget)
            sent[c] = (stub.served, [a if isinstance(a, str) else type(a).__name__ for a in answers])
            assert meter.requests == 7 and budget.used == 7
            assert client.complete_many(batch[:7]) == answers[:7]  # cached: nothing more sent
            assert stub.served == 7
    assert sent[1] == sent[8]
    # the budget goes to the first requests of the batch, whatever finishes first
    assert sent[1][1][7:10] == ["BudgetExhausted"] * 3 and all(isinstance(a, str) for a in sent[1][1][:7])


def test_a_request_in_flight_is_sent_once_for_every_thread_that_asks(tmp_path):
    with StubEndpoint(delay_s=0.3) as stub:
        client = client_for(stub.url, tmp_path, concurrency=8)
        out: list[str] = []
        threads = [
            threading.Thread(target=lambda: out.append(client.complete([{"role": "user", "content": "same"}])))
            for _ in range(6)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert stub.served == 1 and len(set(out)) == 1 and len(out) == 6
    assert client.stats.calls == 1 and client.stats.cache_hits == 5


def test_retries_and_retry_after_are_exact_with_requests_in_flight(tmp_path):
    with StubLLM(script=["500", "429", "503"]) as stub:  # whichever requests draw them are retried
        client = client_for(stub.url, tmp_path, concurrency=4)
        answers = client.complete_many(calls(8))
    assert answers == [f"echo:q{i}:seed={i}" for i in range(8)]
    assert client.stats.retries == 3 and client.stats.calls == 8 and client.stats.failures == 0
    assert len(stub.requests) == 11 and stub.counts == {"500": 1, "429": 1, "503": 1, "ok": 8}


def test_the_retry_budget_holds_across_threads(tmp_path):
    with StubLLM(mix={"503": 1.0}) as stub:
        client = client_for(
            stub.url, tmp_path, concurrency=4, retry_budget_min=2, retry_budget_ratio=0.0, breaker_threshold=100
        )
        answers = client.complete_many(calls(6))
    assert all(isinstance(a, LLMRetriesExhausted) for a in answers)
    assert client.stats.retries == 2  # not one more, though four threads were retrying at once
    assert len(stub.requests) == 6 + 2


def test_the_breaker_opens_with_requests_in_flight(tmp_path):
    threshold, concurrency, n = 3, 4, 20
    with StubLLM(mix={"503": 1.0}) as stub:
        client = client_for(
            stub.url,
            tmp_path,
            concurrency=concurrency,
            max_retries=0,
            breaker_threshold=threshold,
            breaker_cooldown_s=60.0,
        )
        answers = client.complete_many(calls(n))
    reached = len(stub.requests)
    # once `threshold` calls failed in a row, only those already in flight still reach the endpoint
    assert threshold <= reached <= threshold + concurrency - 1
    assert sum(isinstance(a, LLMRetriesExhausted) for a in answers) == reached
    assert sum(isinstance(a, LLMUnavailable) for a in answers) == n - reached == client.stats.refused


def test_an_error_answer_is_returned_in_place_and_raised_by_complete(tmp_path):
    with StubLLM(script=["400"]) as stub:
        client = client_for(stub.url, tmp_path, concurrency=1)
        answers = client.complete_many(calls(3))
        assert isinstance(answers[0], LLMHTTPError) and answers[1:] == ["echo:q1:seed=1", "echo:q2:seed=2"]
        with pytest.raises(BudgetExhausted):
            client.complete([{"role": "user", "content": "new"}], budget=CallBudget(0))
    assert len(stub.requests) == 3


def test_meters_charge_the_thread_that_asked(tmp_path):
    with StubEndpoint(delay_s=0.05) as stub:
        client = client_for(stub.url, tmp_path, concurrency=4)
        totals = {}

        def user(name: str, n: int) -> None:
            with client.meter() as m:
                client.complete_many(calls(n, prefix=name))
                client.complete_many(calls(1, prefix=name))  # a cache hit
            totals[name] = (m.requests, m.cache_hits, m.seconds)

        threads = [threading.Thread(target=user, args=(f"u{i}", i + 2)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert {k: v[:2] for k, v in totals.items()} == {"u0": (2, 1), "u1": (3, 1), "u2": (4, 1)}
    assert all(v[2] >= 0.05 * v[0] for v in totals.values())
