"""The evaluation harness (shared/evaluation.py) on its own: every method answers every question, costs and failures
are counted per method, the oracle reads the gold only after answering, and per-user parts merge."""

from __future__ import annotations

import pytest

from lab.llm_stub import StubEndpoint
from shared.config import RunConfig, default_mapping
from shared.data import load_split
from shared.errors import LLMUnavailable
from shared.evaluation import Predictions, evaluate_users, merge_predictions
from shared.hydra.infer import Answer
from shared.llm.client import LLMClient, LLMConfig
from shared.synthetic import write_synthetic
from shared.users import split_users


@pytest.fixture
def users(tmp_path):
    dataset = load_split(
        write_synthetic(tmp_path / "d", "LaMP-7", n_users=3, items_per_user=6, questions_per_user=2), "LaMP-7"
    )
    _, test = split_users(dataset, train_users=1, test_users=2)
    return dataset, test


def test_every_method_answers_every_question_and_failures_are_counted(users, tmp_path):
    dataset, test = users
    cfg = RunConfig.from_mapping(default_mapping())
    seen = []

    def hydra(user, question, ctx, *, variant):
        seen.append(variant)
        if variant == "hydra-adapter":
            raise LLMUnavailable("down")
        degraded = "no LLM" if variant == "hydra-reranker" else None
        return Answer(
            output=question.query,
            candidates=[{"text": question.query}, {"text": "something else"}],
            degraded=degraded,
            baseline=question.query,
        )

    with StubEndpoint(delay_s=0.0) as stub:
        llm = LLMClient(LLMConfig(base_url=stub.url, model="stub", cache_path=str(tmp_path / "c.sqlite")))
        preds = evaluate_users(
            dataset.task,
            test,
            hydra,
            llm,
            cfg,
            dataset.golds,
            methods=["input", "zero-shot", "hydra", "hydra-adapter", "hydra-reranker"],
            progress=False,
        )
    questions = [q.id for u in test for q in u.questions]
    assert list(preds.by_method) == ["input", "zero-shot", "hydra", "hydra-adapter", "hydra-reranker"]
    assert all(list(p) == questions for p in preds.by_method.values())
    assert preds.by_method["input"] == {q.id: q.query for u in test for q in u.questions}
    assert preds.calls["zero-shot"] == len(questions) == stub.served and preds.calls["input"] == 0
    assert preds.failures == {
        "input": 0,
        "zero-shot": 0,
        "hydra": 0,
        "hydra-adapter": len(questions),
        "hydra-reranker": len(questions),
    }
    assert set(preds.by_method["hydra-adapter"].values()) == {""}  # an LLM error answers empty
    assert set(preds.oracle) == set(questions) and preds.baselines["hydra"] == preds.by_method["input"]
    assert seen.count("hydra") == len(questions)


def test_merged_parts_add_up():
    a = Predictions(
        by_method={"hydra": {"q1": "x"}},
        oracle={"q1": "x"},
        seconds={"hydra": 1.0},
        calls={"hydra": 2},
        asked={"hydra": 3},
        failures={"hydra": 1},
        baselines={"hydra": {"q1": "b"}},
    )
    b = Predictions(by_method={"hydra": {"q2": "y"}, "input": {"q2": "y"}}, seconds={"hydra": 0.5}, calls={"hydra": 1})
    merged = merge_predictions([a, b])
    assert merged.by_method == {"hydra": {"q1": "x", "q2": "y"}, "input": {"q2": "y"}}
    assert merged.calls == {"hydra": 3, "input": 0} and merged.asked == {"hydra": 3, "input": 0}
    assert merged.seconds == {"hydra": 1.5, "input": 0.0} and merged.failures == {"hydra": 1, "input": 0}
    assert merged.oracle == {"q1": "x"} and merged.baselines == {"hydra": {"q1": "b"}}


def test_the_oracle_comes_from_the_variant_the_registry_marks_and_from_no_other(users):
    from shared.hydra.variants import VARIANTS

    assert [name for name, v in VARIANTS.items() if v.oracle] == ["hydra"]
    dataset, test = users
    cfg = RunConfig.from_mapping(default_mapping())

    def hydra(user, question, ctx, *, variant):
        return Answer(output=question.query, candidates=[{"text": question.query}])

    def oracle_of(methods):
        llm = LLMClient(LLMConfig(base_url="http://127.0.0.1:9/v1", model="none", cache_path=""))  # never asked
        return evaluate_users(dataset.task, test, hydra, llm, cfg, dataset.golds, methods=methods, progress=False)

    assert oracle_of(["hydra-reranker", "hydra-shared-head"]).oracle == {}
    assert set(oracle_of(["hydra-reranker", "hydra"]).oracle) == {q.id for u in test for q in u.questions}
