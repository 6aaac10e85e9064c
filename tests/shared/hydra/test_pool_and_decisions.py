from __future__ import annotations

import numpy as np

from shared.hydra.candidates import build_pool, personal_habits
from shared.hydra.context import UserContext
from shared.hydra.decision import decide, weighted_median
from shared.hydra.editor import InputEditor
from shared.hydra.features import ADAPTER_FEATURES
from shared.readability import droppable_words, is_broken
from shared.tasks import get_task


def test_label_pool_with_votes_and_record_evidence():
    t = get_task("LaMP-3")
    ctx = UserContext.build(t, [{"text": "a", "score": "5"}, {"text": "b", "score": "5"}, {"text": "c", "score": "4"}])
    pool = build_pool(
        t, ctx, "query", greedy="4", samples=["4", "5", "oops"], editor=None, record_answers=["5", "5", "3"]
    )
    assert pool.texts == ["1", "2", "3", "4", "5"] and set(pool.sources) == {"label"}
    f = {name: pool.extras[:, i] for i, name in enumerate(ADAPTER_FEATURES)}
    assert np.allclose(f["llm_vote"], [0, 0, 0, 0.5, 0.25])
    assert np.allclose(f["record_vote"], [0, 0, 1 / 3, 0, 2 / 3])
    assert np.allclose(f["value"], [-1, -0.5, 0, 0.5, 1])
    assert f["greedy"].tolist() == [0, 0, 0, 1, 0]
    assert np.isclose(f["num_a"][4], (5 - 13 / 3) / 4) and np.isclose(f["num_b"][4], f["num_a"][4] ** 2)
    # nothing summarizes the user (their label prior, their mean score): that is the personal head's job
    other = UserContext.build(t, [{"text": "a", "score": "1"}, {"text": "b", "score": "1"}])
    again = build_pool(
        t, other, "query", greedy="4", samples=["4", "5", "oops"], editor=None, record_answers=["5", "5", "3"]
    )
    assert np.array_equal(again.extras, pool.extras)


def test_rewrite_pool_has_input_edits_styles_and_llm_without_duplicates():
    t = get_task("LaMP-7")
    ctx = UserContext.build(t, [{"text": "u r great, thx"}, {"text": "see u tmrw"}, {"text": "u know"}])
    assert ctx.habits.rules == ()  # the spellings are the shared style model's choice, not the history's majority
    editor = InputEditor()
    editor.style.shared[:] = [0.0, 1.0, 0.0]  # a style model that applies a rule where the user's share is > 1/2
    assert "u" in personal_habits(ctx, editor).rules
    editor.dense[5] = 3.0  # keep words the user wrote
    editor.bias[0] = -3.0
    query = "Thank you, I really will see you tomorrow"
    pool = build_pool(t, ctx, query, greedy=query, samples=["bye now", "Thank you, I will you tomorrow"], editor=editor)
    assert pool.texts[0] == query and pool.sources[0] == "input"
    assert "edit" in pool.sources and "llm" in pool.sources
    # the editor drops the filler only, and the LLM's broken sample stays out
    assert "Thank you, I will see you tomorrow" in pool.texts and "Thank you, I will you tomorrow" not in pool.texts
    assert not any(is_broken(text, query) for text in pool.texts)
    assert any("u" in text.split() for text in pool.texts)  # the user's quirk applied
    assert len(pool.texts) == len(set(pool.texts))  # the greedy answer equal to the input was not added twice
    assert pool.extras.shape == (len(pool.texts), len(ADAPTER_FEATURES))


def test_a_candidate_that_differs_only_in_case_and_final_period_is_kept_so_the_users_habit_reaches_the_answer():
    t = get_task("LaMP-7")
    ctx = UserContext.build(t, [{"text": "going home now"}, {"text": "so tired"}, {"text": "love it"}])
    assert ctx.habits.lower_first and ctx.habits.drop_period and ctx.habits.rules == ()
    query = "Going to bed early tonight."
    pool = build_pool(t, ctx, query, greedy=None, samples=[], editor=InputEditor(), anchor="style")
    assert pool.texts[:2] == [query, "going to bed early tonight"]  # the same ROUGE tokens, two answers
    assert pool.texts[pool.baseline] == "going to bed early tonight"
    again = build_pool(t, ctx, query, greedy=query, samples=[query + " "], editor=InputEditor())
    assert again.texts.count(query) == 1 and "llm" not in again.sources  # the same words are one candidate


def test_weighted_median_minimizes_expected_absolute_error():
    values = ["1", "2", "3", "4", "5"]
    rng = np.random.default_rng(1)
    for _ in range(20):
        w = rng.dirichlet(np.ones(5))
        expected = [sum(wi * abs(int(v) - c) for v, wi in zip(values, w)) for c in range(1, 6)]
        best = min(expected)
        choice = int(weighted_median(values, w))
        assert expected[choice - 1] <= best + 1e-12


def test_decide_uses_argmax_for_text_and_median_for_ratings():
    assert decide(get_task("LaMP-7"), ["a", "b"], np.array([0.1, 2.0])) == "b"
    assert decide(get_task("LaMP-3"), ["1", "2", "3", "4", "5"], np.log(np.array([0.4, 0.05, 0.05, 0.1, 0.4]))) == "3"


def test_the_anchor_of_a_rewrite_pool_is_the_input_its_styled_form_or_the_chosen_edit_and_nothing_else():
    import pytest

    from shared.errors import ConfigError
    from shared.hydra.candidates import EDIT_LEVELS, anchors_for
    from shared.hydra.editor import f1_optimal_keep

    t = get_task("LaMP-7")
    ctx = UserContext.build(t, [{"text": "see u tmrw"}, {"text": "u know"}])
    editor = InputEditor()
    editor.style.shared[:] = [0.0, 1.0, 0.0]  # a style model that applies a rule where the user's share is > 1/2
    editor.dense[5] = 3.0  # keep words the user wrote
    editor.bias[0] = -3.0
    query = "Thank you so much, see you tomorrow at the usual place"
    kwargs = dict(greedy=None, samples=[], editor=editor)
    plain = build_pool(t, ctx, query, **kwargs)
    assert plain.texts[plain.baseline] == query and set(plain.anchors) == set(anchors_for(t))
    words = query.split()
    p = np.where(droppable_words(words), editor.keep_probabilities(words, ctx.counts), 1.0)
    assert build_pool(t, ctx, query, anchor="style", **kwargs).texts[0] == query
    styled = build_pool(t, ctx, query, anchor="style", **kwargs)
    assert styled.texts[styled.baseline] == "thank u so much, see u tmrw at the usual place"  # their case too
    for level in EDIT_LEVELS:
        pool = build_pool(t, ctx, query, anchor=f"edit-{level:g}", **kwargs)
        assert pool.texts == plain.texts  # the anchor moves nothing but the kept answer
        assert pool.texts[pool.baseline] == f1_optimal_keep(words, p, level * len(words))
        both = build_pool(t, ctx, query, anchor=f"style-edit-{level:g}", **kwargs)  # the edit written their way
        assert both.texts[both.baseline] == personal_habits(ctx, editor).apply(pool.texts[pool.baseline])
        assert "u" in both.texts[both.baseline].split() and both.texts == plain.texts
    # no editor, no edits: an edit anchor falls back to the input
    assert build_pool(t, ctx, query, greedy=None, samples=[], editor=None, anchor="edit-1").baseline == 0
    with pytest.raises(ConfigError, match="edit-0.5"):
        build_pool(t, ctx, query, anchor="edit-0.5", **kwargs)
    with pytest.raises(ConfigError, match="edit-1"):
        build_pool(
            get_task("LaMP-3"),
            UserContext.build(get_task("LaMP-3"), []),
            "nice",
            greedy=None,
            samples=[],
            editor=None,
            anchor="edit-1",
        )
