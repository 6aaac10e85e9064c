"""BM25 retrieval over one user's profile (rank-bm25's BM25Okapi).

Tokenizer (documented, used for queries and documents alike): lowercase, then every maximal run of
Unicode letters and digits is a token (``[^\\W_]+``); punctuation, underscores and whitespace only
separate tokens. So ``"Can't wait!! #bgt"`` becomes ``["can", "t", "wait", "bgt"]``.

Edge cases: an empty profile returns nothing; a one-item profile returns that item; when no document
has a token (or the query has none) every score is 0 and the profile order is kept. Ties keep the
profile order (stable), so retrieval is deterministic.

Example:
    >>> bm25_top_k("cats and dogs", ["I love cats", "stock market news", "dogs rule"], k=2)
    [2, 0]
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Sequence

from rank_bm25 import BM25Okapi

__all__ = ["tokenize", "bm25_scores", "bm25_top_k"]

_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)


def tokenize(text: str) -> list[str]:
    """Lowercased runs of letters and digits.

    >>> tokenize("Can't wait!! #bgt")
    ['can', 't', 'wait', 'bgt']
    """
    return _TOKEN.findall(text.lower())


_INDEXES: OrderedDict[tuple[str, ...], BM25Okapi | None] = OrderedDict()
_INDEX_LOCK = threading.Lock()
_KEEP = 16
"""Indexes kept (least recently used dropped): the same profile is searched by every method answering a question."""


def _index(documents: Sequence[str]) -> BM25Okapi | None:
    """The BM25 index of ``documents`` (None when no document has a token), built once while it is in use."""
    key = tuple(documents)
    with _INDEX_LOCK:
        if key in _INDEXES:
            _INDEXES.move_to_end(key)
            return _INDEXES[key]
    corpus = [tokenize(d) for d in documents]
    index = BM25Okapi(corpus) if any(corpus) else None
    with _INDEX_LOCK:
        _INDEXES[key] = index
        while len(_INDEXES) > _KEEP:
            _INDEXES.popitem(last=False)
    return index


def bm25_scores(query: str, documents: Sequence[str]) -> list[float]:
    """BM25Okapi score of every document for the query (rank-bm25 defaults: k1=1.5, b=0.75, epsilon=0.25)."""
    if not documents:
        return []
    terms = tokenize(query)
    index = _index(documents) if terms else None
    if index is None:
        return [0.0] * len(documents)
    return [float(s) for s in index.get_scores(terms)]


def bm25_top_k(query: str, documents: Sequence[str], k: int) -> list[int]:
    """Indices of the ``k`` best documents, best first (ties keep document order); fewer if there are fewer."""
    if k <= 0:
        return []
    scores = bm25_scores(query, documents)
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    return order[:k]
