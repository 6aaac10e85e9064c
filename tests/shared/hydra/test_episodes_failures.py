"""``BuildReport.failed`` counts the labels an endpoint failure cost, apart from the call budget (which asking again
would not change): the SDK retries an onboarding only for the former."""

from __future__ import annotations

import socket

from lab.llm_stub import StubEndpoint
from shared.hydra.episodes import EpisodeConfig, build_user_episodes
from shared.llm import LLMClient, LLMConfig
from shared.synthetic import generate
from shared.tasks import get_task


def dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/v1"


def build(url: str, calls: int):
    questions, _, _ = generate("LaMP-7", n_users=1, items_per_user=10, seed=3)
    llm = LLMClient(LLMConfig(base_url=url, cache_path="", max_retries=0, breaker_cooldown_s=0.01))
    return build_user_episodes(
        get_task("LaMP-7"),
        "u",
        questions[0]["profile"],
        [],
        llm,
        EpisodeConfig(pseudo_questions=2, free_questions=0, calls_per_user=calls),
    )


def test_an_endpoint_down_counts_as_failed_and_a_spent_budget_does_not():
    episodes, down = build(dead_url(), 20)
    assert episodes == [] and down.failed > 0 and down.skipped >= down.failed
    with StubEndpoint(delay_s=0.0) as stub:
        episodes, spent = build(stub.url, 0)  # no call allowed: skipped, not failed
        assert spent.skipped > 0 and spent.failed == 0 and stub.served == 0
        episodes, up = build(stub.url, 20)
        assert episodes and up.failed == 0
