"""The user's own rating model: a ridge on the embeddings of the user's rated items, a feature of each label."""

from __future__ import annotations

import numpy as np
import pytest

from shared.hydra.candidates import build_pool
from shared.hydra.context import MIN_RATED, UserContext
from shared.hydra.features import ADAPTER_FEATURES
from shared.tasks import get_task

TASK = get_task("LaMP-3")
WORDS = ("awful", "poor", "fine", "good", "great")


def embed(texts):
    """A transparent embedding: one coordinate per sentiment word, plus a constant."""
    return np.array([[float(w in t) for w in WORDS] + [1.0] for t in texts])


def profile(n: int):
    return [{"id": str(i), "text": f"a {WORDS[i % 5]} product", "score": str(i % 5 + 1)} for i in range(n)]


def test_the_rating_model_learns_the_users_scores_and_becomes_the_own_gap_feature():
    ctx = UserContext.build(TASK, profile(20), embed=embed)
    assert ctx.predicted_score("a great blender") == pytest.approx(5.0, abs=0.3)
    assert ctx.predicted_score("an awful kettle") == pytest.approx(1.0, abs=0.3)
    pool = build_pool(TASK, ctx, "a great blender", greedy=None, samples=[], editor=None)
    gap = pool.extras[:, ADAPTER_FEATURES.index("own_gap")]
    expected = (np.array([1, 2, 3, 4, 5]) - ctx.predicted_score("a great blender")) / 4
    assert pool.texts == ["1", "2", "3", "4", "5"] and np.allclose(gap, expected, atol=1e-6)
    assert np.allclose(pool.extras[:, ADAPTER_FEATURES.index("own_gap_sq")], gap**2, atol=1e-6)


def test_no_model_without_an_encoder_or_with_too_few_rated_items_and_none_for_text_tasks():
    assert UserContext.build(TASK, profile(20)).predicted_score("a great one") is None
    assert UserContext.build(TASK, profile(MIN_RATED - 1), embed=embed).predicted_score("a great one") is None
    ctx = UserContext.build(TASK, profile(MIN_RATED - 1), embed=embed)
    pool = build_pool(TASK, ctx, "a great blender", greedy=None, samples=[], editor=None)
    assert not pool.extras[:, ADAPTER_FEATURES.index("own_gap")].any()
    lamp7 = get_task("LaMP-7")
    assert UserContext.build(lamp7, [{"id": str(i), "text": "hi"} for i in range(20)], embed=embed).rating_model is None


def test_a_pseudo_questions_context_refits_without_the_item_it_was_made_from():
    items = profile(20)
    ctx = UserContext.build(TASK, items, embed=embed)
    # the one "great" review rated 1: only the context that still holds it has learned from it
    odd = {"id": "x", "text": "a great product", "score": "1"}
    with_odd = UserContext.build(TASK, items + [odd], embed=embed)
    without = with_odd.without_items(items)
    assert without.embed is embed
    assert without.predicted_score("a great one") == pytest.approx(ctx.predicted_score("a great one"))
    assert with_odd.predicted_score("a great one") < ctx.predicted_score("a great one")


def test_the_strongest_non_llm_answer_of_a_rating_is_the_users_own_model_else_their_mean():
    from shared.hydra.candidates import baseline_output

    ctx = UserContext.build(TASK, profile(20), embed=embed)  # mean score 3
    assert baseline_output(TASK, ctx, "a great blender") == "5"
    assert baseline_output(TASK, ctx, "an awful kettle") == "1"
    pool = build_pool(TASK, ctx, "a great blender", greedy=None, samples=[], editor=None)
    assert pool.texts[pool.baseline] == "5"
    # without an encoder, or with too few rated items, it is the user's mean score, rounded
    assert baseline_output(TASK, UserContext.build(TASK, profile(20)), "a great blender") == "3"
    few = profile(MIN_RATED - 1)  # scores 1..5, 1..4: mean 2.78
    assert baseline_output(TASK, UserContext.build(TASK, few, embed=embed), "a great blender") == "3"
