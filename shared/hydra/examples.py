"""Turn episodes into the reranker's and the adapter's examples (texts, extra features, targets).

Targets follow HYDRA: a reranker record is positive when the LLM's answer with that record alone scores
above the user's mean (the task metric against the gold); an adapter candidate's target is a softmax of
its score against the gold (temperature per metric: sharp for ROUGE, softer for ratings), so that the best
candidates carry the mass. At inference the same assembly runs without a gold.

Example:
    >>> [round(float(x), 3) for x in soft_target([0.2, 0.5, 0.5], temperature=0.05)]
    [0.001, 0.499, 0.499]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np

from shared.hydra.candidates import Pool, build_pool
from shared.hydra.context import UserContext
from shared.hydra.decision import BASELINE_ANCHOR
from shared.hydra.editor import InputEditor
from shared.hydra.episodes import Episode
from shared.hydra.features import reranker_extras
from shared.hydra.spec import ROLES
from shared.hydra.style_model import StyleExample, style_examples
from shared.metrics import example_score
from shared.tasks import TaskSpec

__all__ = [
    "RoleExample",
    "soft_target",
    "reranker_example",
    "adapter_example",
    "record_answer",
    "TARGET_TEMPERATURE",
    "user_rerank_baseline",
    "role_examples",
    "editor_examples",
    "style_training_examples",
]

TARGET_TEMPERATURE = {"rouge": 0.05, "rating": 0.5, "classification": 0.2}


@dataclass
class RoleExample:
    """One query with its items (records or candidates) for one role."""

    user: str
    query: str
    items: list[str]
    extras: np.ndarray
    target: np.ndarray | None = None
    utilities: np.ndarray | None = None


def soft_target(utilities: Sequence[float] | np.ndarray, temperature: float) -> np.ndarray:
    """Softmax of utilities / temperature."""
    u = np.asarray(utilities, dtype=np.float64) / temperature
    e = np.exp(u - u.max())
    return (e / e.sum()).astype(np.float32)


def record_answer(task: TaskSpec, item: Mapping[str, str]) -> str:
    """What a record says about the answer: its label or output when it has one, else its text."""
    return task.item_output(item) if task.item_output else task.item_text(item)


def _rerank_utilities(task: TaskSpec, ep: Episode, gold: str) -> list[float]:
    return [example_score(task, a, gold) if a is not None else float("nan") for a in ep.rerank_answers]


def user_rerank_baseline(task: TaskSpec, episodes: Sequence[Episode]) -> float:
    """The user's mean utility over every labelled record (the positive/negative threshold)."""
    values = [u for ep in episodes if ep.gold is not None for u in _rerank_utilities(task, ep, ep.gold) if u == u]
    return float(np.mean(values)) if values else 0.0


def reranker_example(
    task: TaskSpec, user: str, ep: Episode, *, threshold: float | None, n_records: int | None = None
) -> RoleExample | None:
    """The reranker's example for an episode; with ``threshold`` (training) a target, else none.

    Returns None for a training episode whose records are all positive or all negative (no signal).
    """
    idx = ep.top[: n_records or len(ep.top)]
    if threshold is not None:
        idx = idx[: len(ep.rerank_answers)]
    if not idx:
        return None
    items = [task.item_text(ep.corpus[i]) for i in idx]
    extras = reranker_extras(ep.bm25[: len(idx)], [len(t) for t in items], idx, profile_size=len(ep.corpus))
    example = RoleExample(user=user, query=ep.query, items=items, extras=extras)
    if threshold is None:
        return example
    utilities = np.asarray(_rerank_utilities(task, ep, cast(str, ep.gold))[: len(idx)], dtype=np.float32)
    positive = (utilities > threshold).astype(np.float32)
    if positive.sum() == 0 or positive.sum() == len(positive) or np.isnan(utilities).any():
        return None
    example.target = positive / positive.sum()
    example.utilities = utilities
    return example


def adapter_example(
    task: TaskSpec,
    user: str,
    ep: Episode,
    ctx: UserContext,
    editor: InputEditor | None,
    *,
    records: Sequence[int] | None = None,
    greedy: str | None = None,
    samples: Sequence[str] | None = None,
    with_target: bool = True,
    anchor: str = BASELINE_ANCHOR,
) -> tuple[RoleExample, Pool]:
    """The adapter's example: the pool built from the episode's LLM answers (or those given), with targets; the
    pool's ``baseline`` is ``anchor``'s candidate."""
    top = list(records) if records is not None else ep.top[:4]
    record_answers = [record_answer(task, ep.corpus[i]) for i in top]
    pool = build_pool(
        task,
        ctx,
        ep.query,
        greedy=ep.greedy if greedy is None else greedy,
        samples=ep.samples if samples is None else samples,
        editor=editor,
        record_answers=record_answers,
        anchor=anchor,
    )
    example = RoleExample(user=user, query=ep.query, items=pool.texts, extras=pool.extras)
    if with_target and ep.gold is not None:
        utilities = np.asarray([example_score(task, c, ep.gold) for c in pool.texts], dtype=np.float32)
        example.utilities = utilities
        example.target = soft_target(utilities, TARGET_TEMPERATURE[task.metric])
    return example, pool


def role_examples(
    task: TaskSpec, user: str, episodes: Sequence[Episode], ctx: UserContext | None, editor: InputEditor | None
) -> dict[str, list[RoleExample]]:
    """Training examples of both roles from one user's labelled episodes."""
    out: dict[str, list[RoleExample]] = {r: [] for r in ROLES}
    labelled = [ep for ep in episodes if ep.gold is not None]
    if not labelled or ctx is None:
        return out
    threshold = user_rerank_baseline(task, labelled)
    for ep in labelled:
        if ep.rerank_answers:
            ex = reranker_example(task, user, ep, threshold=threshold)
            if ex is not None:
                out["reranker"].append(ex)
        ep_ctx = ctx.without_items(ep.corpus) if ep.pseudo else ctx
        ex, _ = adapter_example(task, user, ep, ep_ctx, editor)
        if ex.target is not None and len(ex.items) > 1:
            out["adapter"].append(ex)
    return out


def style_training_examples(task: TaskSpec, episodes: Sequence[Episode], ctx: UserContext) -> list[StyleExample]:
    """The style model's examples (:func:`shared.hydra.style_model.style_examples`) of the episodes with a gold, the
    same episodes as :func:`editor_examples`; a pseudo-question's counts leave out the record it was made from."""
    if not task.rewrite:
        return []
    labelled = [ep for ep in episodes if ep.gold is not None and ep.query]
    chosen = [ep for ep in labelled if not ep.pseudo] or labelled
    out: list[StyleExample] = []
    for ep in chosen:
        ep_ctx = ctx.without_items(ep.corpus) if ep.pseudo else ctx
        out.extend(style_examples(ep.query, ep.gold or "", ep_ctx.rule_counts))
    return out


def editor_examples(task: TaskSpec, episodes: Sequence[Episode], ctx: UserContext):
    """(words, history counts, labels) of the episodes with a gold; real questions only when there are any."""
    if not task.rewrite:
        return []
    labelled = [ep for ep in episodes if ep.gold is not None]
    real = [ep for ep in labelled if not ep.pseudo]
    chosen = real or labelled
    return [
        (ep.query.split(), ctx.counts, InputEditor.labels(ep.query.split(), ep.gold or "")) for ep in chosen if ep.query
    ]
