"""Answering a query with HYDRA: BM25 top-m, the reranker's top-k in the prompt, the LLM's candidates,
the adapter's pick.

The scorer is abstract (:class:`Scorer`): the torch :class:`~shared.training.train.Trainer` during research
runs, the ONNX runtime on a device; both give the same answers.

Decision rule (:mod:`shared.hydra.decision`): the adapter's choice (the weighted median of its distribution
for ratings, else its top candidate), kept only when its predicted advantage over the strongest non-LLM answer
passes the bundle's margin (chosen on training users); else that answer, or the bundle's anchor (for rewrite tasks,
one of the editor's fixed edits, chosen on training users with the margin). The same choice says how many of the
pool's LLM requests an answer asks for (the bundle's ``llm_calls``: none where they did not pay on held-out training
users). Under an infinite margin (the training
users showed that leaving the anchor never paid) no LLM answer is asked: none could change the choice.

Example:
    >>> InferenceConfig().k
    4
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from shared.errors import LLMError, check_minimums
from shared.hydra.candidates import PoolConfig, baseline_output, pool_calls
from shared.hydra.context import UserContext
from shared.hydra.decision import BASELINE_ANCHOR, decide_with_margin
from shared.hydra.editor import InputEditor
from shared.hydra.episodes import Episode, top_records
from shared.hydra.examples import RoleExample, adapter_example, reranker_example
from shared.hydra.rating_head import SharedRatingHead
from shared.hydra.variants import Variant, get_variant
from shared.llm.client import CallBudget, LLMClient
from shared.prompts import PromptBudget
from shared.settings import default_for
from shared.tasks import TaskSpec

__all__ = ["Scorer", "Answer", "InferenceConfig", "rerank", "answer"]


class Scorer(Protocol):
    """Scores an example's items for a role under a head (None: the shared head)."""

    def score(self, role: str, example: RoleExample, head: object | None) -> np.ndarray: ...


@dataclass(frozen=True)
class InferenceConfig:
    """Retrieval and pool sizes at inference."""

    m: int = default_for("inference.m")
    k: int = default_for("inference.k")
    pool: PoolConfig = PoolConfig()

    def __post_init__(self) -> None:
        check_minimums(self, {"m": 1, "k": 1})


@dataclass
class Answer:
    """An answer with what explains it: the records used and every candidate's score.

    ``degraded`` says why the answer was made without the LLM's candidates (the endpoint failed), if it was;
    ``cost`` what it cost (see :class:`shared.ledger.Cost`), where the caller measured it; ``personal`` whether the
    user's own heads chose it (else the shared heads did); ``baseline`` the anchor (the strongest non-LLM answer, or the
    chosen edit of the input), which the answer is unless the adapter's predicted ``advantage`` over it passed the
    margin.
    """

    output: str
    records: list[dict[str, Any]] = field(default_factory=list)
    candidates: list[dict[str, Any]] = field(default_factory=list)
    degraded: str | None = None
    cost: dict[str, float] = field(default_factory=dict)
    personal: bool = False
    baseline: str | None = None
    advantage: float = float("nan")


def rerank(task: TaskSpec, scorer: Scorer, ep: Episode, head: object | None, k: int) -> tuple[list[int], np.ndarray]:
    """The reranker's top-``k`` corpus indices among the BM25 top-m, and the scores of all m."""
    example = reranker_example(task, "", ep, threshold=None)
    if example is None:
        return [], np.zeros(0)
    scores = scorer.score("reranker", example, head)
    order = np.argsort(-scores, kind="stable")[:k]
    return [ep.top[i] for i in order], scores


def answer(
    task: TaskSpec,
    question_input: str,
    ctx: UserContext,
    llm: LLMClient | None,
    scorer: Scorer,
    editor: InputEditor | None,
    *,
    heads: Mapping[str, object] | None,
    config: InferenceConfig = InferenceConfig(),
    variant: str | Variant = "hydra",
    budget: CallBudget | None = None,
    prompt_budget: PromptBudget = PromptBudget(),
    margin: float | None = None,
    rating: SharedRatingHead | None = None,
    anchor: str = BASELINE_ANCHOR,
    llm_calls: int | None = None,
) -> Answer:
    """Answer one question from the user's profile (``ctx.items``) as ``variant`` does (:mod:`shared.hydra.variants`);
    ``heads`` None means shared heads (so does a variant without personal heads). ``margin`` (the bundle's, chosen
    on training users; None: none) is the predicted advantage the adapter needs to leave the ``anchor`` (the bundle's:
    the baseline, or for rewrite tasks the input or an edit of it written the user's way, or an edit;
    :func:`shared.hydra.candidates.anchors_for`). A variant
    without personal heads also scores ratings with the base's shared ``rating`` head, when it is fitted, instead of
    the user's own rating model (:mod:`shared.hydra.rating_head`). ``llm_calls`` (the bundle's, chosen with the
    margin; None: all) caps the LLM answers a variant with the margin rule asks for, unless the variant names its
    own count (the ``hydra-calls-*`` variants, which measure the trade-off)."""
    v = get_variant(variant)
    heads = (heads or {}) if v.personal else {}
    shared_model = rating.model() if (rating is not None and not v.personal) else None
    if shared_model is not None:
        ctx = ctx.with_rating_model(shared_model)
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
    elif llm_calls is not None and v.margin and not v.stable:
        calls = calls[:llm_calls]
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
        baseline = baseline_output(task, ctx, query)
        output = asked[0] if asked else baseline
        return Answer(
            output=output,
            records=used,
            degraded=degraded,
            personal=bool(heads),
            baseline=baseline,
            candidates=[{"text": output, "source": "llm" if asked else "fallback", "score": 1.0}],
        )

    rule = margin if v.margin else None
    if rule is not None and rule == float("inf"):  # no advantage passes: the LLM's answers cannot change the choice
        calls = []

    def choose() -> tuple[str, list[str], list[str], np.ndarray, float, str | None]:
        ep.greedy, ep.samples = (asked[0], asked[1:]) if asked else (None, [])
        example, pool = adapter_example(
            task, "", ep, ctx, editor, records=chosen, with_target=False, anchor=anchor if v.margin else BASELINE_ANCHOR
        )
        if not pool.texts:
            return baseline_output(task, ctx, query), [], [], np.zeros(0), float("nan"), None
        scores = scorer.score("adapter", example, heads.get("adapter"))
        output, adv = decide_with_margin(task, pool.texts, scores, baseline=pool.baseline, margin=rule)
        kept = pool.texts[pool.baseline] if pool.baseline is not None else None
        return output, pool.texts, pool.sources, scores, adv, kept

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
    output, texts, sources, scores, adv, kept = choice
    return Answer(
        output=output,
        records=used,
        degraded=degraded,
        personal=bool(heads),
        baseline=kept if kept is not None else baseline_output(task, ctx, query),
        advantage=adv,
        candidates=[{"text": t, "source": s, "score": float(x)} for t, s, x in zip(texts, sources, scores)],
    )
