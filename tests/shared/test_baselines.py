"""The baseline registry (shared/baselines.py): which methods apply to which tasks, the majority label, and the
non-LLM methods on one question (running them over users and scoring: tests/simulations/test_baseline.py)."""

from __future__ import annotations

import pytest

from shared.baselines import METHODS, BaselineContext, majority_label, methods_for
from shared.data import Question
from shared.errors import ConfigError
from shared.tasks import get_task


def test_ridge_baselines_apply_to_ratings_only():
    assert {"user-ridge", "global-ridge"} <= set(methods_for(get_task("LaMP-3")))
    for task in ("LaMP-1", "LaMP-2", "LaMP-7"):
        assert not {"user-ridge", "global-ridge"} & set(methods_for(get_task(task)))
    assert not METHODS["user-ridge"].uses_llm and not METHODS["global-ridge"].uses_llm
    assert [m for m, method in METHODS.items() if method.uses_llm] == ["zero-shot", "rag"]


def test_majority_label_counts_labels_only_and_breaks_ties_by_first_seen():
    task = get_task("LaMP-3")
    items = [{"text": "a", "score": s} for s in ("2", "nan", "nan", "nan", "4", "2", "4")]
    assert majority_label(task, items) == "2"  # "nan" is no label; 2 and 4 tie, 2 came first
    assert majority_label(task, []) is None
    assert majority_label(get_task("LaMP-7"), [{"text": "x"}]) is None  # no labels


def test_non_llm_methods_answer_one_question():
    task = get_task("LaMP-3")
    profile = ({"id": "1", "text": "meh", "score": "2"}, {"id": "2", "text": "ok", "score": "3"},
               {"id": "3", "text": "fine", "score": "3"})
    q = Question("q", task.instruction + "great stuff", profile, "u", "great stuff")
    ctx = BaselineContext(task=task, llm=None, global_majority="5")
    assert METHODS["majority"].run(ctx, q) == "5"
    assert METHODS["user-mean"].run(ctx, q) == "3"  # 2.67 rounds half up to 3
    with pytest.raises(ConfigError, match="needs an LLM"):
        METHODS["zero-shot"].run(ctx, q)
