"""Per-pair extra features of the reranker and the adapter (besides the two embeddings).

Reranker, per (query, record), :data:`RERANKER_FEATURES`: the BM25 score relative to the best record,
the BM25 rank, the record's length and its position in the profile (recency in time-ordered data).

Adapter, per (query, candidate), :data:`ADAPTER_FEATURES`: where the candidate comes from (the input, an
edit of it, the LLM, the label set), how many of the LLM's answers agree with it, how the user's best
records agree with it, and task-dependent numeric features (for ratings: its value, its distance to the
retrieved records' mean score and that distance squared; for text: its length and overlap with the input).
For ratings, ``own_gap`` is the candidate's distance to the prediction of the user's own rating model (a
ridge on embeddings of the user's rated items, :meth:`shared.hydra.context.UserContext.predicted_score`; 0 when
there is none), and ``own_gap_sq`` its square: a personal model fitted on the device from the history's own
(item, score) pairs, at no LLM cost. No other feature summarizes the user as a whole (a label prior, a mean
score): how much to trust each signal is left to that user's personal head (see the planted-structure test).

Example:
    >>> [round(float(x), 2) for x in reranker_extras([3.0, 1.0], [10, 20], [0, 5], profile_size=10)[1]]
    [0.33, 1.0, 0.38, 0.5]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from shared.metrics import rouge_pair
from shared.tasks import TaskKind, TaskSpec

__all__ = ["RERANKER_FEATURES", "ADAPTER_FEATURES", "reranker_extras", "adapter_extras", "SOURCES"]

RERANKER_FEATURES = ("bm25_rel", "rank", "length", "position")
ADAPTER_FEATURES = (
    "src_input",
    "src_edit",
    "src_llm",
    "src_label",
    "llm_vote",
    "record_vote",
    "value",
    "num_a",
    "num_b",
    "edit_strength",
    "style",
    "greedy",
    "own_gap",
    "own_gap_sq",
)
SOURCES = ("input", "edit", "llm", "label")


def reranker_extras(
    bm25: Sequence[float], lengths: Sequence[int], positions: Sequence[int], *, profile_size: int
) -> np.ndarray:
    """``[len(bm25), 4]`` features of the retrieved records, best BM25 first."""
    n = len(bm25)
    out = np.zeros((n, len(RERANKER_FEATURES)), dtype=np.float32)
    top = max(bm25) if n and max(bm25) > 0 else 1.0
    for i in range(n):
        out[i] = [
            bm25[i] / top if top else 0.0,
            i / max(1, n - 1) if n > 1 else 0.0,
            math.log1p(lengths[i]) / 8.0,
            positions[i] / max(1, profile_size),
        ]
    return out


def _agreement(task: TaskSpec, candidate: str, others: Sequence[str], weights: Sequence[float] | None = None) -> float:
    """Weighted share of ``others`` equal to the candidate (labels) or their mean ROUGE-L with it (text)."""
    if not others:
        return 0.0
    w = list(weights) if weights is not None else [1.0] * len(others)
    total = sum(w) or 1.0
    if task.labels:
        return sum(wi for o, wi in zip(others, w) if o == candidate) / total
    return sum(wi * rouge_pair(candidate, o)[1] for o, wi in zip(others, w)) / total


def adapter_extras(
    task: TaskSpec,
    query: str,
    candidates: Sequence[str],
    sources: Sequence[str],
    *,
    llm_answers: Sequence[str],
    greedy: str | None,
    record_answers: Sequence[str],
    record_weights: Sequence[float] | None,
    edit_strength: Sequence[float],
    styled: Sequence[bool],
    own_score: float | None = None,
) -> np.ndarray:
    """``[len(candidates), 14]`` features; see :data:`ADAPTER_FEATURES` (``own_score``: the user's rating model's
    prediction, for ratings)."""
    out = np.zeros((len(candidates), len(ADAPTER_FEATURES)), dtype=np.float32)
    rating = task.kind is TaskKind.RATING
    rec_mean = None
    if rating and record_answers:
        w = list(record_weights) if record_weights is not None else [1.0] * len(record_answers)
        vals = [(float(a), wi) for a, wi in zip(record_answers, w) if a in task.labels]
        if vals:
            rec_mean = sum(v * wi for v, wi in vals) / (sum(wi for _, wi in vals) or 1.0)
    q_len = max(1, len(query.split()))
    for i, (cand, src) in enumerate(zip(candidates, sources)):
        row = out[i]
        row[SOURCES.index(src)] = 1.0
        row[4] = _agreement(task, cand, llm_answers)
        row[5] = _agreement(task, cand, record_answers, record_weights)
        if rating:
            value = float(cand) if cand in task.labels else 3.0
            row[6] = (value - 3.0) / 2.0
            row[7] = (value - rec_mean) / 4.0 if rec_mean is not None else 0.0
            row[8] = row[7] ** 2
            if own_score is not None:
                row[12] = (value - own_score) / 4.0
                row[13] = row[12] ** 2
        elif not task.labels:
            row[7] = len(cand.split()) / q_len
            row[8] = rouge_pair(cand, query)[1]
        row[9] = edit_strength[i]
        row[10] = float(styled[i])
        row[11] = float(greedy is not None and cand == greedy)
    return out
