from __future__ import annotations

import pytest
from rank_bm25 import BM25Okapi

from shared.retrieval import bm25_scores, bm25_top_k, tokenize

DOCS = [
    "I love my cat and my dog",
    "The stock market fell today",
    "cats are better than dogs",
    "my dog ate my homework",
    "",
    "Dogs! Dogs? DOGS.",
]


def test_tokenizer_is_documented_behaviour():
    assert tokenize("Can't wait!! #bgt_2day") == ["can", "t", "wait", "bgt", "2day"]
    assert tokenize("Ünïcode café") == ["ünïcode", "café"]
    assert tokenize("...") == []


@pytest.mark.parametrize("query", ["my dog", "cats dogs", "stock", "homework dog cat", "unseen words"])
def test_scores_match_rank_bm25_called_directly(query):
    reference = BM25Okapi([tokenize(d) for d in DOCS]).get_scores(tokenize(query))
    assert bm25_scores(query, DOCS) == pytest.approx(list(reference))


def test_top_k_is_ordered_and_stable_on_ties():
    scores = bm25_scores("my dog", DOCS)
    top = bm25_top_k("my dog", DOCS, 3)
    assert [scores[i] for i in top] == sorted(scores, reverse=True)[:3]
    assert bm25_top_k("nothing matches", DOCS, 3) == [0, 1, 2]


def test_edge_cases():
    assert bm25_top_k("x", [], 4) == []
    assert bm25_top_k("x", ["only one"], 4) == [0]
    assert bm25_top_k("", ["a", "b"], 1) == [0]
    assert bm25_top_k("a", ["", ""], 2) == [0, 1]
    assert bm25_top_k("a", ["a"], 0) == []


def test_a_profile_searched_again_scores_the_same_and_another_profile_is_not_confused_with_it():
    from rank_bm25 import BM25Okapi

    from shared.retrieval import bm25_scores, tokenize

    docs = ["I love cats", "stock market news", "dogs rule", "cats and dogs together"]
    other = ["cats cats cats", "nothing here", "dogs", "market"]
    first = bm25_scores("cats dogs", docs)
    assert bm25_scores("cats dogs", docs) == first  # from the kept index
    assert bm25_scores("cats dogs", other) == [
        float(s) for s in BM25Okapi([tokenize(d) for d in other]).get_scores(["cats", "dogs"])
    ]
    assert bm25_scores("cats dogs", docs) == [
        float(s) for s in BM25Okapi([tokenize(d) for d in docs]).get_scores(["cats", "dogs"])
    ]
