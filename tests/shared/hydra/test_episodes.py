"""What a user's episodes cost: LLM-labelled pseudo-questions and, for rewrite tasks, ones that cost only their
paraphrase (against the deterministic stub endpoint: its answers are not a language model's)."""

from __future__ import annotations

from lab.llm_stub import StubEndpoint
from shared.hydra.candidates import PoolConfig
from shared.hydra.episodes import EpisodeConfig, build_user_episodes
from shared.llm.client import LLMClient, LLMConfig
from shared.tasks import get_task

LAMP7 = get_task("LaMP-7")
TWEETS = [{"id": f"t{i}", "text": f"tweet {i} about my cat and the rain today"} for i in range(30)]


def test_a_rewrite_tasks_free_questions_cost_one_paraphrase_each_and_no_labels():
    config = EpisodeConfig(
        pseudo_questions=2, free_questions=10, label_records=2, pool=PoolConfig(n_samples=1), calls_per_user=200
    )
    with StubEndpoint(delay_s=0.0) as stub:
        llm = LLMClient(LLMConfig(base_url=stub.url, model="stub", cache_path=""))
        episodes, report = build_user_episodes(LAMP7, "u", TWEETS, [], llm, config)
    labelled = [ep for ep in episodes if ep.greedy is not None]
    free = [ep for ep in episodes if ep.greedy is None]
    assert len(labelled) == 2 and len(free) == 10 and report.skipped == 0
    assert all(ep.pseudo and ep.rerank_answers == [] and ep.samples == [] for ep in free)
    # 12 paraphrases, then per labelled question 2 record labels + greedy + 1 sample
    assert report.llm_calls == stub.served == 12 + 2 * (2 + 1 + 1)
    # the gold of a pseudo-question is the user's own tweet, which is not in its corpus
    assert all(ep.gold not in [t["text"] for t in ep.corpus] for ep in episodes)


def test_a_free_training_users_questions_cost_no_call_and_keep_their_golds():
    config = EpisodeConfig(
        pseudo_questions=0, free_questions=10, label_records=2, pool=PoolConfig(n_samples=1), label_questions=False
    )
    questions = [("q1", "Paraphrase the following tweet without any explanation before or after it: my cat", "cat!")]
    episodes, report = build_user_episodes(LAMP7, "u", TWEETS, questions, None, config)
    # no LLM: the real question is kept as a no-call episode; a rewrite task's free questions would need paraphrases
    assert [ep.qid for ep in episodes] == ["q1"] and episodes[0].gold == "cat!" and not episodes[0].pseudo
    assert episodes[0].greedy is None and episodes[0].rerank_answers == [] and episodes[0].top
    assert report.llm_calls == 0 and report.skipped == 0


def test_a_rounds_sample_of_episodes_is_fresh_each_round_the_same_in_any_process_and_covers_them_all():
    from shared.hydra.episodes import Episode, round_sample

    eps = [Episode(qid=f"q{i}", input="x", query="x", gold=None, corpus=(), top=[], bm25=[]) for i in range(12)]

    def drawn(rnd: int, user: str = "u") -> list[str]:
        return [e.qid for e in round_sample(eps, 4, seed=0, server_round=rnd, user=user)]

    rounds = [drawn(r) for r in range(1, 9)]
    assert all(len(d) == 4 and d == sorted(d, key=lambda q: int(q[1:])) for d in rounds)  # kept in their order
    assert rounds[0] == drawn(1) and len({tuple(d) for d in rounds}) > 1  # the same round draws the same
    assert drawn(1, "v") != drawn(1) or drawn(2, "v") != drawn(2)  # users draw apart
    assert {q for d in rounds for q in d} == {e.qid for e in eps}  # over rounds a client sees all its episodes
    assert round_sample(eps, 0, seed=0, server_round=1, user="u") == eps  # 0: all
