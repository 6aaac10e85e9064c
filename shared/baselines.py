"""The baseline methods: the non-LLM ones a careful reviewer asks for, and the LLM's own (a registry).

Each method answers one question from what a :class:`BaselineContext` allows; each is valid for some task
kinds only:

- ``input``: the input returned unchanged (rewrite tasks such as LaMP-7, whose input is a draft).
- ``style-rules`` (rewrite tasks): the input written the way the user's own history favours, by fixed rules and no
  model (:class:`shared.style.StyleHabits`): informal spellings of the whole catalogue
  (:data:`shared.style.STYLE_RULES`; "you" -> "u", "I'm" -> "im") where the user writes them more often than the
  formal ones, a lowercase first letter and no final period where the user mostly writes so. No word is deleted.
  It needs no trained base: HYDRA applies the same catalogue where the shared base's learned style model says a
  rule pays (:mod:`shared.hydra.style_model`), so the two differ only in that decision.
- ``majority``: the most frequent label over every selected user's profile (label tasks; :func:`majority_label`).
- ``user-mean``: the user's mean profile score, rounded (LaMP-3; "the user's typical score"); for
  classification the user's most frequent label.
- ``user-ridge`` (ratings): a ridge regression of the score on frozen MiniLM embeddings
  (:mod:`shared.training.text_embedder`) of the user's own profile, i.e. the reviews strictly before the question,
  refitted per question; its penalty is chosen once per user by leave-one-out on the user's training part only
  (the profile of their first question: ``BaselineContext.histories``; without it, on the question's profile).
  The prediction is rounded half up and clipped to 1..5.
- ``global-ridge`` (ratings): one ridge (penalty by leave-one-out) over the *other* users' training parts,
  the same for every question of a user: what text says about a score for people in general. With no other
  user it answers like ``majority``.
- ``zero-shot``: the official input as the only user message, greedy.
- ``rag``: the ``k`` best BM25 records of the user's profile in the prompt (see :mod:`shared.prompts`),
  greedy; run as ``rag-k1``, ``rag-k4``, ...

Golds are only read to score; no method sees them. Both the runs' evaluation (:mod:`shared.evaluation`, on
every test user) and ``fedhydra baseline`` (:mod:`simulations.baseline`) run them from here. The ridge
baselines need torch (the embedder), imported only when one runs.

Example:
    >>> from shared.tasks import get_task
    >>> methods_for(get_task("LaMP-7"))
    ['input', 'style-rules', 'zero-shot', 'rag']
    >>> methods_for(get_task("LaMP-3"))
    ['majority', 'user-mean', 'user-ridge', 'global-ridge', 'zero-shot', 'rag']
    >>> majority_label(get_task("LaMP-3"), [{"text": "a", "score": "4"}, {"text": "b", "score": "2"},
    ...                                     {"text": "c", "score": "4"}])
    '4'
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from shared.data import Question
from shared.errors import ConfigError
from shared.llm.client import LLMClient
from shared.prompts import PromptBudget, build_messages
from shared.retrieval import bm25_top_k
from shared.style import StyleHabits
from shared.tasks import TaskKind, TaskSpec

if TYPE_CHECKING:
    import numpy as np

__all__ = ["BaselineContext", "Method", "METHODS", "methods_for", "majority_label"]


@dataclass
class BaselineContext:
    """What a method may use: the task, the LLM (or None), prompt settings and the users' profiles."""

    task: TaskSpec
    llm: LLMClient | None
    k: int = 4
    style: str = "turns"
    budget: PromptBudget = field(default_factory=PromptBudget)
    global_majority: str | None = None
    histories: dict[str, Sequence[Mapping[str, str]]] = field(default_factory=dict)
    """Each user's training part (the history before their first question), for the ridge baselines."""
    cache: dict = field(default_factory=dict)
    """Per-run state of the methods (the text embedder, fitted penalties and models)."""


def majority_label(task: TaskSpec, items: Iterable[Mapping[str, str]]) -> str | None:
    """The most frequent of the task's labels among ``items``' outputs (profile items), the first seen on ties;
    None for a task without labels or item outputs, or when no item carries a label."""
    if not task.labels or task.item_output is None:
        return None
    counts = Counter(task.item_output(item) for item in items)
    counts = Counter({k: v for k, v in counts.items() if k in task.labels})
    return counts.most_common(1)[0][0] if counts else None


def _input(ctx: BaselineContext, q: Question) -> str:
    return q.query


def _style_rules(ctx: BaselineContext, q: Question) -> str:
    return StyleHabits.of(q.profile_texts(ctx.task)).apply(q.query)


def _majority(ctx: BaselineContext, q: Question) -> str:
    return ctx.global_majority or ctx.task.labels[-1]


def _user_mean(ctx: BaselineContext, q: Question) -> str:
    answers = [ctx.task.item_output(item) for item in q.profile] if ctx.task.item_output else []
    if not answers:
        return _majority(ctx, q)
    if ctx.task.kind is TaskKind.RATING:
        mean = statistics.fmean(float(a) for a in answers)
        return _round_rating(mean)  # round half up, like a person would
    return Counter(answers).most_common(1)[0][0]


def _round_rating(value: float) -> str:
    return str(int(min(5, max(1, value + 0.5))))  # round half up, then clip to the scale


def _embed(ctx: BaselineContext, texts: Sequence[str]):
    from shared.training import text_embedder

    if "embedder" not in ctx.cache:
        ctx.cache["embedder"] = text_embedder.TextEmbedder()
    return ctx.cache["embedder"](texts)


def _xy(ctx: BaselineContext, items: Sequence[Mapping[str, str]]) -> tuple[np.ndarray, np.ndarray]:
    import numpy as np

    output = ctx.task.item_output
    if output is None:  # the ridge baselines apply only to tasks whose items carry an output
        raise ConfigError(f"task {ctx.task.name} has no item output to fit a ridge to")
    x = _embed(ctx, [ctx.task.item_text(it) for it in items])
    return x, np.array([float(output(it)) for it in items])


def _user_ridge(ctx: BaselineContext, q: Question) -> str:
    from shared.ridge import fit_ridge

    if len(q.profile) < 3:
        return _user_mean(ctx, q)
    alphas = ctx.cache.setdefault("user-ridge-alpha", {})
    if q.user_id not in alphas:  # chosen on the training part only, once per user
        train = ctx.histories.get(q.user_id) or q.profile
        alphas[q.user_id] = fit_ridge(*_xy(ctx, train)).alpha if len(train) >= 3 else None
    model = fit_ridge(*_xy(ctx, q.profile), alpha=alphas[q.user_id])
    return _round_rating(float(model.predict(_embed(ctx, [q.query]))[0]))


def _global_ridge(ctx: BaselineContext, q: Question) -> str:
    from shared.ridge import fit_ridge

    models = ctx.cache.setdefault("global-ridge", {})
    if q.user_id not in models:
        others = [it for user, items in ctx.histories.items() if user != q.user_id for it in items]
        models[q.user_id] = fit_ridge(*_xy(ctx, others)) if len(others) >= 3 else None
    model = models[q.user_id]
    if model is None:
        return _majority(ctx, q)
    return _round_rating(float(model.predict(_embed(ctx, [q.query]))[0]))


def _require_llm(ctx: BaselineContext) -> LLMClient:
    if ctx.llm is None:
        raise ConfigError("this method needs an LLM")
    return ctx.llm


def _zero_shot(ctx: BaselineContext, q: Question) -> str:
    answer = _require_llm(ctx).complete(
        build_messages(ctx.task, q.input, budget=ctx.budget), max_tokens=ctx.task.max_new_tokens
    )
    return ctx.task.parse_answer(answer)


def _rag(ctx: BaselineContext, q: Question) -> str:
    top = bm25_top_k(q.query, q.profile_texts(ctx.task), ctx.k)
    records = [q.profile[i] for i in top]
    messages = build_messages(ctx.task, q.input, records, style=ctx.style, budget=ctx.budget)
    return ctx.task.parse_answer(_require_llm(ctx).complete(messages, max_tokens=ctx.task.max_new_tokens))


@dataclass(frozen=True)
class Method:
    """A baseline: ``run(ctx, question) -> answer``, the tasks it ``applies`` to, whether it ``uses_llm``, and
    whether it ``uses_k`` (the context's ``k`` records: run and labelled once per ``k``, ``rag-k4``)."""

    name: str
    run: Callable[[BaselineContext, Question], str]
    applies: Callable[[TaskSpec], bool]
    uses_llm: bool
    uses_k: bool = False

    def label(self, k: int) -> str:
        """The method's name in tables and output files when run with ``k`` records.

        >>> METHODS["rag"].label(4), METHODS["majority"].label(4)
        ('rag-k4', 'majority')
        """
        return f"{self.name}-k{k}" if self.uses_k else self.name


METHODS: dict[str, Method] = {
    m.name: m
    for m in [
        Method("input", _input, lambda t: t.rewrite, False),
        Method("style-rules", _style_rules, lambda t: t.rewrite, False),
        Method("majority", _majority, lambda t: bool(t.labels), False),
        Method("user-mean", _user_mean, lambda t: bool(t.labels) and t.item_output is not None, False),
        Method("user-ridge", _user_ridge, lambda t: t.kind is TaskKind.RATING and t.item_output is not None, False),
        Method("global-ridge", _global_ridge, lambda t: t.kind is TaskKind.RATING and t.item_output is not None, False),
        Method("zero-shot", _zero_shot, lambda t: True, True),
        Method("rag", _rag, lambda t: True, True, uses_k=True),
    ]
}
"""The baselines by name, in the order tables list them."""


def methods_for(task: TaskSpec) -> list[str]:
    """The baseline methods that apply to ``task``."""
    return [name for name, m in METHODS.items() if m.applies(task)]
