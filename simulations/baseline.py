"""Baselines on LaMP-format data: the non-LLM ones a careful reviewer asks for, and the LLM's own.

Methods (a registry; each is valid for some task kinds only):

- ``input``: the input returned unchanged (rewrite tasks such as LaMP-7, whose input is a draft).
- ``majority``: the most frequent label over every selected user's profile (label tasks).
- ``user-mean``: the user's mean profile score, rounded (LaMP-3; "the user's typical score"); for
  classification the user's most frequent label.
- ``user-ridge`` (ratings): a ridge regression of the score on frozen MiniLM embeddings
  (:mod:`simulations.ridge`) of the user's own profile, i.e. the reviews strictly before the question, refitted
  per question; its penalty is chosen once per user by leave-one-out on the user's training part only (the
  profile of their first question: ``BaselineContext.histories``; without it, on the question's profile).
  The prediction is rounded half up and clipped to 1..5.
- ``global-ridge`` (ratings): one ridge (penalty by leave-one-out) over the *other* users' training parts,
  the same for every question of a user: what text says about a score for people in general. With no other
  user it answers like ``majority``.
- ``zero-shot``: the official input as the only user message, greedy.
- ``rag``: the ``k`` best BM25 records of the user's profile in the prompt (see :mod:`shared.prompts`),
  greedy; run as ``rag-k1``, ``rag-k4``, ...

Golds are only read to score; no method sees them.

Example:
    >>> from shared.tasks import get_task
    >>> methods_for(get_task("LaMP-7"))
    ['input', 'zero-shot', 'rag']
    >>> methods_for(get_task("LaMP-3"))
    ['majority', 'user-mean', 'user-ridge', 'global-ridge', 'zero-shot', 'rag']
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

from shared.data import Dataset, Question, group_by_user, write_outputs
from shared.errors import ConfigError
from shared.llm.client import LLMClient
from shared.metrics import evaluate
from shared.prompts import PromptBudget, build_messages
from shared.retrieval import bm25_top_k
from shared.tasks import TaskKind, TaskSpec
from simulations.report import MethodResult

__all__ = ["BaselineContext", "METHODS", "methods_for", "run_baselines", "select_users", "user_histories"]


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


def _input(ctx: BaselineContext, q: Question) -> str:
    return q.query


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
    from simulations.ridge import TextEmbedder

    if "embedder" not in ctx.cache:
        ctx.cache["embedder"] = TextEmbedder()
    return ctx.cache["embedder"](texts)


def _xy(ctx: BaselineContext, items: Sequence[Mapping[str, str]]):
    import numpy as np

    x = _embed(ctx, [ctx.task.item_text(it) for it in items])
    return x, np.array([float(ctx.task.item_output(it)) for it in items])


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
    import numpy as np

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
    answer = _require_llm(ctx).complete(build_messages(ctx.task, q.input, budget=ctx.budget),
                                        max_tokens=ctx.task.max_new_tokens)
    return ctx.task.parse_answer(answer)


def _rag(ctx: BaselineContext, q: Question) -> str:
    top = bm25_top_k(q.query, q.profile_texts(ctx.task), ctx.k)
    records = [q.profile[i] for i in top]
    messages = build_messages(ctx.task, q.input, records, style=ctx.style, budget=ctx.budget)
    return ctx.task.parse_answer(_require_llm(ctx).complete(messages, max_tokens=ctx.task.max_new_tokens))


@dataclass(frozen=True)
class Method:
    name: str
    run: Callable[[BaselineContext, Question], str]
    applies: Callable[[TaskSpec], bool]
    uses_llm: bool


METHODS: dict[str, Method] = {m.name: m for m in [
    Method("input", _input, lambda t: t.rewrite, False),
    Method("majority", _majority, lambda t: bool(t.labels), False),
    Method("user-mean", _user_mean, lambda t: bool(t.labels) and t.item_output is not None, False),
    Method("user-ridge", _user_ridge, lambda t: t.kind is TaskKind.RATING and t.item_output is not None, False),
    Method("global-ridge", _global_ridge, lambda t: t.kind is TaskKind.RATING and t.item_output is not None, False),
    Method("zero-shot", _zero_shot, lambda t: True, True),
    Method("rag", _rag, lambda t: True, True),
]}


def methods_for(task: TaskSpec) -> list[str]:
    """The baseline methods that apply to ``task``."""
    return [name for name, m in METHODS.items() if m.applies(task)]


def select_users(dataset: Dataset, n_users: int | None, offset: int = 0) -> list[Question]:
    """The questions of users ``offset .. offset+n_users`` in order of first appearance (all if None)."""
    groups = list(group_by_user(dataset.questions).values())
    chosen = groups[offset: None if n_users is None else offset + n_users]
    return [q for group in chosen for q in group]


def user_histories(questions: Sequence[Question]) -> dict[str, Sequence[Mapping[str, str]]]:
    """Each user's training part: the shortest profile among their questions (as :mod:`shared.users`)."""
    return {user: min(qs, key=lambda q: len(q.profile)).profile for user, qs in group_by_user(questions).items()}


def _majority_label(task: TaskSpec, questions: Sequence[Question]) -> str | None:
    if not task.labels or task.item_output is None:
        return None
    counts = Counter(task.item_output(item) for q in questions for item in q.profile)
    counts = Counter({k: v for k, v in counts.items() if k in task.labels})
    return counts.most_common(1)[0][0] if counts else None


def run_baselines(dataset: Dataset, questions: Sequence[Question], methods: Sequence[str], *,
                  llm: LLMClient | None, ks: Sequence[int] = (4,), style: str = "turns",
                  out_dir: str | Path | None = None, progress: bool = True) -> list[MethodResult]:
    """Run each method on ``questions`` and score it; write predictions per method when ``out_dir`` is set.

    A method that needs the LLM and whose call fails for one question records an empty answer for it (the
    metric scores that as wrong) and counts the failure, so one bad call does not sink the run.
    """
    from tqdm import tqdm

    task = dataset.task
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ConfigError(f"unknown baseline method(s) {unknown}; known: {list(METHODS)}")
    invalid = [m for m in methods if not METHODS[m].applies(task)]
    if invalid:
        raise ConfigError(f"method(s) {invalid} do not apply to {task.name}; use {methods_for(task)}")
    if any(METHODS[m].uses_llm for m in methods) and llm is None:
        raise ConfigError("an LLM is needed for " + ", ".join(m for m in methods if METHODS[m].uses_llm))
    golds = {q.id: dataset.golds[q.id] for q in questions}
    ctx = BaselineContext(task=task, llm=llm, style=style, global_majority=_majority_label(task, questions),
                          histories=user_histories(questions))
    runs = [(f"rag-k{k}", "rag", k) if m == "rag" else (m, m, ctx.k) for m in methods for k in (ks if m == "rag" else [0])]
    results = []
    for label, name, k in runs:
        ctx.k = k
        method = METHODS[name]
        before = (llm.stats.calls, llm.stats.cache_hits, llm.stats.seconds) if llm else (0, 0, 0.0)
        started = time.perf_counter()

        def answer(q: Question) -> str | None:
            from shared.errors import LLMError

            try:
                return method.run(ctx, q)
            except LLMError:  # a failed LLM call costs one answer, not the run
                return None

        # an LLM method's questions are independent: as many at once as the client keeps in flight
        workers = llm.config.concurrency if (llm is not None and method.uses_llm) else 1
        bar = tqdm(total=len(questions), desc=label, unit="q", disable=not progress, leave=False)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            answers = []
            for a in pool.map(answer, questions):
                answers.append(a)
                bar.update()
        bar.close()
        predictions = {q.id: a if a is not None else "" for q, a in zip(questions, answers)}
        failures = sum(a is None for a in answers)
        seconds = time.perf_counter() - started
        after = (llm.stats.calls, llm.stats.cache_hits, llm.stats.seconds) if llm else (0, 0, 0.0)
        result = MethodResult(label, predictions, evaluate(task, predictions, golds), seconds,
                              after[0] - before[0], after[1] - before[1], failures,
                              llm_seconds=after[2] - before[2])
        results.append(result)
        if out_dir is not None:
            write_outputs(Path(out_dir) / f"{label}_outputs.json", task, predictions)
    return results
