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
    profile = (
        {"id": "1", "text": "meh", "score": "2"},
        {"id": "2", "text": "ok", "score": "3"},
        {"id": "3", "text": "fine", "score": "3"},
    )
    q = Question("q", task.instruction + "great stuff", profile, "u", "great stuff")
    ctx = BaselineContext(task=task, llm=None, global_majority="5")
    assert METHODS["majority"].run(ctx, q) == "5"
    assert METHODS["user-mean"].run(ctx, q) == "3"  # 2.67 rounds half up to 3
    with pytest.raises(ConfigError, match="needs an LLM"):
        METHODS["zero-shot"].run(ctx, q)


def test_style_rules_writes_the_input_the_users_way_and_deletes_nothing(lamp_data):
    """On 300 real LaMP-7 questions: each answer is the input with the user's spellings, case and final period; no
    word of the input is lost (every canonical word survives) and it changes only where the user's history says so."""
    from shared.data import load_split
    from shared.readability import canonical_tokens, is_broken
    from shared.style import StyleHabits

    ds = load_split(lamp_data / "lamp7", "LaMP-7")
    ctx = BaselineContext(task=ds.task, llm=None)
    changed = 0
    for q in ds.questions[:300]:
        answer = METHODS["style-rules"].run(ctx, q)
        assert canonical_tokens(answer)[0] == canonical_tokens(q.query)[0] or not is_broken(answer, q.query)
        habits = StyleHabits.of(q.profile_texts(ds.task))
        if habits == StyleHabits(signature=habits.signature):
            assert answer == q.query  # formal writers keep their input
        changed += answer != q.query
    assert changed > 100


def test_a_users_habits_come_from_their_own_majority():
    from shared.style import StyleHabits

    formal = StyleHabits.of(["I am home.", "You are late.", "Thank you."])
    assert formal.rules == () and not formal.lower_first and not formal.drop_period
    casual = StyleHabits.of(["im home", "u r late", "thx so much"])
    assert {"u", "r"} <= set(casual.rules) and casual.lower_first and casual.drop_period
    assert casual.apply("I am home. You are late.") == "im home. You're late"  # contractions first; a capital kept
    assert StyleHabits.of([]) == StyleHabits()
