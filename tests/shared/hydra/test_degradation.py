"""When the LLM fails, a user's training data loses examples (skipped and counted), never gains invented ones."""

from __future__ import annotations

import socket

import pytest

from client.node import offlabel_answers
from lab.faulty_llm_stub import StubLLM
from shared.hydra.candidates import PoolConfig
from shared.hydra.episodes import EpisodeConfig, build_user_episodes
from shared.llm.client import LLMClient, LLMConfig
from shared.tasks import get_task

TASK = get_task("LaMP-3")
ITEMS = [{"id": f"p{i}", "text": f"review number {i} of a fine product", "score": str(1 + i % 5)} for i in range(10)]
QUESTIONS = [("q1", TASK.instruction + "a review of a product", "4")]
CONFIG = EpisodeConfig(pseudo_questions=3, free_questions=4, label_records=2, pool=PoolConfig(n_samples=1))


def client(url: str, **kw) -> LLMClient:
    return LLMClient(LLMConfig(base_url=url, model="stub", cache_path="", max_retries=1, backoff_s=0.0, **kw))


def test_a_dead_llm_leaves_only_the_llm_free_examples():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    llm = client(f"http://127.0.0.1:{port}/v1", breaker_threshold=2)
    episodes, report = build_user_episodes(TASK, "u", ITEMS, QUESTIONS, llm, CONFIG)
    assert report.skipped == 1 + CONFIG.pseudo_questions  # the real question and every LLM-labelled pseudo-question
    assert len(episodes) == CONFIG.free_questions
    assert all(ep.pseudo and ep.greedy is None and ep.samples == [] and ep.rerank_answers == [] for ep in episodes)
    assert llm.stats.refused >= 1 and llm.stats.calls == 0  # the breaker stopped calling after two failures


@pytest.mark.parametrize("script", [["badjson"], ["nochoices"], ["empty", "badjson"], ["500", "503"]])
def test_a_failing_answer_costs_its_example_and_the_others_are_kept(script):
    with StubLLM(script) as stub:  # one call fails (a 5xx twice: with its one retry), then all is well
        llm = client(stub.url)
        episodes, report = build_user_episodes(TASK, "u", ITEMS, QUESTIONS, llm, CONFIG)
    assert report.skipped == 1 and len(report.errors) == 1
    assert len(episodes) == 1 + CONFIG.pseudo_questions - 1 + CONFIG.free_questions
    assert all(ep.greedy is not None for ep in episodes if not ep.pseudo)


def test_answers_outside_the_label_set_are_kept_as_given_and_counted():
    with StubLLM(["offlabel"] * 1000) as stub:
        episodes, report = build_user_episodes(TASK, "u", ITEMS, QUESTIONS, client(stub.url), CONFIG)
    assert report.skipped == 0
    labelled = [ep for ep in episodes if ep.greedy is not None]
    assert len(labelled) == 1 + CONFIG.pseudo_questions
    assert all(ep.greedy not in TASK.labels for ep in labelled)  # never mapped onto a label
    per_episode = CONFIG.label_records + 1 + CONFIG.pool.n_samples
    assert offlabel_answers(TASK, episodes) == per_episode * len(labelled)
