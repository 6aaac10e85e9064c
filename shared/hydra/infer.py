"""Answering a query with HYDRA: BM25 top-m, the reranker's top-k in the prompt, the LLM's candidates,
the adapter's pick.

The scorer is abstract (:class:`Scorer`): the torch :class:`~shared.hydra.train.Trainer` during research
runs, the ONNX runtime on a device; both give the same answers.

Decision rule: the adapter's scores become a softmax distribution over candidates; for ratings the answer
is its weighted median (the choice that minimizes expected absolute error, the task's metric), otherwise
the top candidate.

Example:
    >>> weighted_median(["1", "2", "3", "4", "5"], [0.1, 0.1, 0.2, 0.3, 0.3])
    '4'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Protocol, Sequence

import numpy as np

from shared.hydra.candidates import PoolConfig, pool_calls
from shared.hydra.context import UserContext
from shared.hydra.editor import InputEditor
from shared.hydra.episodes import Episode, top_records
from shared.hydra.examples import RoleExample, adapter_example, reranker_example
from shared.hydra.variants import Variant, get_variant
from shared.errors import LLMError
from shared.llm.client import CallBudget, LLMClient
from shared.prompts import PromptBudget
from shared.tasks import TaskKind, TaskSpec

__all__ = ["Scorer", "Answer", "InferenceConfig", "rerank", "answer", "weighted_median", "decide", "fallback_output"]


class Scorer(Protocol):
    """Scores an example's items for a role under a head (None: the shared head)."""

    def score(self, role: str, example: RoleExample, head: object | None) -> np.ndarray: ...


@dataclass(frozen=True)
class InferenceConfig:
    """Retrieval and pool sizes at inference."""

    m: int = 5
    k: int = 4
    pool: PoolConfig = PoolConfig()


@dataclass
class Answer:
    """An answer with what explains it: the records used and every candidate's score.

    ``degraded`` says why the answer was made without the LLM's candidates (the endpoint failed), if it was;
    ``cost`` what it cost (see :class:`shared.ledger.Cost`), where the caller measured it; ``personal`` whether the
    user's own heads chose it (else the shared heads did).
    """

    output: str
    records: list[dict[str, object]] = field(default_factory=list)
    candidates: list[dict[str, object]] = field(default_factory=list)
    degraded: str | None = None
    cost: dict[str, float] = field(default_factory=dict)
    personal: bool = False


def fallback_output(task: TaskSpec, ctx: UserContext, query: str) -> str:
    """A non-LLM answer: the input for rewrite tasks, the user's usual label, else the query itself."""
    if task.kind is TaskKind.RATING and ctx.mean_score is not None:
        return str(int(min(5, max(1, ctx.mean_score + 0.5))))
    if task.labels:
        return max(task.labels, key=lambda label: ctx.label_prior.get(label, 0.0)) if ctx.label_prior else task.labels[-1]
    return query


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - np.max(x))
    return e / e.sum()


def weighted_median(values: Sequence[str], weights: Sequence[float]) -> str:
    """The value at which the cumulative weight of the numerically sorted values reaches one half."""
    pairs = sorted(zip((float(v) for v in values), weights, values))
    total = float(sum(weights))
    acc = 0.0
    for _, w, v in pairs:
        acc += w
        if acc >= total / 2:
            return v
    return pairs[-1][2]


def decide(task: TaskSpec, texts: Sequence[str], scores: np.ndarray) -> str:
    """The adapter's choice among candidates (weighted median for ratings, argmax otherwise)."""
    if task.kind is TaskKind.RATING:
        labelled = [(t, p) for t, p in zip(texts, softmax(scores)) if t in task.labels]
        if labelled:
            return weighted_median([t for t, _ in labelled], [p for _, p in labelled])
    return texts[int(np.argmax(scores))]


def rerank(task: TaskSpec, scorer: Scorer, ep: Episode, head: object | None, k: int) -> tuple[list[int], np.ndarray]:
    """The reranker's top-``k`` corpus indices among the BM25 top-m, and the scores of all m."""
    example = reranker_example(task, "", ep, threshold=None)
    if example is None:
        return [], np.zeros(0)
    scores = scorer.score("reranker", example, head)
    order = np.argsort(-scores, kind="stable")[:k]
    return [ep.top[i] for i in order], scores


def answer(task: TaskSpec, question_input: str, ctx: UserContext, llm: LLMClient | None, scorer: Scorer,
           editor: InputEditor | None, *, heads: Mapping[str, object] | None, config: InferenceConfig = InferenceConfig(),
           variant: str | Variant = "hydra", budget: CallBudget | None = None,
           prompt_budget: PromptBudget = PromptBudget()) -> Answer:
    """Answer one question from the user's profile (``ctx.items``) as ``variant`` does (:mod:`shared.hydra.variants`);
    ``heads`` None means shared heads (so does a variant without personal heads)."""
    v = get_variant(variant)
    heads = (heads or {}) if v.personal else {}
    query = task.extract_query(question_input)
    top, bm25 = top_records(task, query, ctx.items, config.m)
    ep = Episode(qid="", input=question_input, query=query, gold=None, corpus=ctx.items, top=top, bm25=bm25)
    if v.reranker and top:
        chosen, rscores = rerank(task, scorer, ep, heads.get("reranker"), config.k)
    else:
        chosen, rscores = top[: config.k], np.asarray(bm25[: config.k])
    records = [ctx.items[i] for i in chosen]
    used = [{"id": r.get("id"), "text": task.item_text(r), "score": float(s)} for r, s in zip(records, rscores)]
    calls = pool_calls(task, question_input, records, config.pool, prompt_budget=prompt_budget)
    if not v.adapter:
        calls = calls[:1]
    elif v.llm_calls is not None:
        calls = calls[: v.llm_calls]
    asked: list[str] = []
    degraded = None

    def ask(batch) -> bool:
        nonlocal degraded
        if llm is None or not batch:
            return False
        answers = llm.complete_many(batch, budget=budget)
        failed = next((a for a in answers if isinstance(a, LLMError)), None)
        if failed is not None:  # degrade: choose among what was answered and the candidates that need no LLM
            degraded = f"no LLM candidates: {type(failed).__name__}: {str(failed)[:120]}"
            return False
        asked.extend(task.parse_answer(str(a)) for a in answers)
        return True

    if not v.adapter:
        ask(calls)
        output = asked[0] if asked else fallback_output(task, ctx, query)
        return Answer(output=output, records=used, degraded=degraded, personal=bool(heads),
                      candidates=[{"text": output, "source": "llm" if asked else "fallback", "score": 1.0}])

    def choose() -> tuple[str, list[str], list[str], np.ndarray]:
        ep.greedy, ep.samples = (asked[0], asked[1:]) if asked else (None, [])
        example, pool = adapter_example(task, "", ep, ctx, editor, records=chosen, with_target=False)
        scores = scorer.score("adapter", example, heads.get("adapter"))
        output = decide(task, pool.texts, scores) if pool.texts else fallback_output(task, ctx, query)
        return output, pool.texts, pool.sources, scores

    if v.stable:  # one answer at a time, until one leaves the choice where it was
        choice = choose()
        for call in calls:
            if not ask([call]):
                break
            previous, choice = choice[0], choose()
            if choice[0] == previous:
                break
    else:
        ask(calls)
        choice = choose()
    output, texts, sources, scores = choice
    return Answer(output=output, records=used, degraded=degraded, personal=bool(heads),
                  candidates=[{"text": t, "source": s, "score": float(x)} for t, s, x in zip(texts, sources, scores)])
