"""The evaluation harness: answer every test question with every method, and what that cost.

Both the centralized reference (:mod:`simulations.hydra_run`) and the federated test clients (:mod:`client.node`,
through :mod:`client.evaluation`) answer with :func:`evaluate_users`, so the two runs differ only in how the
shared base was trained. The baselines come from :mod:`shared.baselines`; how HYDRA answers is a function the
caller gives (on a device: :meth:`client.sdk.PersonalClient.answer`), called with each named variant
(:mod:`shared.hydra.variants`).

Golds are read only for the candidate pool's oracle, after answering. A call that fails with an
:class:`~shared.errors.LLMError` answers empty and counts a failure (:func:`answer_or_empty`, also the rule of
``fedhydra baseline``): one bad call costs one answer, not the run.

Example:
    >>> a = Predictions(by_method={"input": {"q1": "x"}}, seconds={"input": 1.0}, calls={"input": 0})
    >>> b = Predictions(by_method={"input": {"q2": "y"}}, seconds={"input": 2.0}, calls={"input": 1})
    >>> merged = merge_predictions([a, b])
    >>> merged.by_method, merged.seconds, merged.calls
    ({'input': {'q1': 'x', 'q2': 'y'}}, {'input': 3.0}, {'input': 1})
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from shared.baselines import METHODS, BaselineContext, majority_label
from shared.config import RunConfig
from shared.errors import LLMError
from shared.hydra.context import UserContext
from shared.hydra.infer import Answer
from shared.hydra.variants import COST_METHODS, HYDRA_METHODS, VARIANTS
from shared.llm.client import LLMClient
from shared.metrics import example_score
from shared.tasks import TaskSpec
from shared.users import User

__all__ = ["Predictions", "AnswerFn", "evaluate_users", "merge_predictions", "answer_or_empty", "DEVICE_BASELINES"]

DEVICE_BASELINES = ("input", "style-rules", "majority", "user-mean", "user-ridge")
"""The non-LLM baselines a device can compute for its own user, run where they apply (``global-ridge`` needs the
other users' data: ``fedhydra baseline``)."""


@dataclass
class Predictions:
    """Per method: predictions; plus the HYDRA pool's oracle and the explanations of the full method."""

    by_method: dict[str, dict[str, str]] = field(default_factory=dict)
    oracle: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    asked: dict[str, int] = field(default_factory=dict)
    llm_seconds: dict[str, float] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    baselines: dict[str, dict[str, str]] = field(default_factory=dict)
    """Per HYDRA method and question: the strongest non-LLM answer, which the method kept or left."""


AnswerFn = Callable[..., Answer]
"""``fn(user, question, ctx, *, variant) -> Answer``: how HYDRA answers as the named variant."""

T = TypeVar("T")


def answer_or_empty(run: Callable[[], T]) -> tuple[T | str, bool]:
    """``(run(), False)``, or ``("", True)`` when ``run`` fails with an :class:`~shared.errors.LLMError`: a failed
    LLM call answers empty (the metric scores it as wrong) and counts as a failure, so it costs one answer, not the
    run. Other exceptions propagate.

    >>> from shared.errors import LLMUnavailable
    >>> answer_or_empty(lambda: "an answer")
    ('an answer', False)
    >>> def down():
    ...     raise LLMUnavailable("the endpoint is down")
    >>> answer_or_empty(down)
    ('', True)
    """
    try:
        return run(), False
    except LLMError:
        return "", True


def evaluate_users(
    task: TaskSpec,
    users: Sequence[User],
    hydra: AnswerFn,
    llm: LLMClient,
    cfg: RunConfig,
    golds: Mapping[str, str],
    *,
    methods: Sequence[str] | None = None,
    progress: bool = True,
) -> Predictions:
    """Answer every test question with every method (golds are read only for the oracle, after answering).

    ``methods`` None runs the baselines that apply (:data:`DEVICE_BASELINES`, ``zero-shot``, ``rag``) and every
    HYDRA variant; a named baseline that does not apply to the task (``input`` for ratings) is left out. A call that
    fails with an :class:`~shared.errors.LLMError` answers empty and counts a failure.
    """
    from tqdm import tqdm

    k = cfg.inference.k
    baseline_names = [m for m in DEVICE_BASELINES if METHODS[m].applies(task)] + ["zero-shot", "rag"]
    wanted = list(methods) if methods is not None else baseline_names + list(HYDRA_METHODS) + list(COST_METHODS)
    preds = Predictions()
    bctx = BaselineContext(
        task=task,
        llm=llm,
        k=k,
        style=cfg.pool.style,
        histories={u.user_id: u.history for u in users},
        global_majority=majority_label(task, (it for u in users for it in u.history)),
    )
    runs: list[tuple[str, Callable[..., str | Answer]]] = []  # fn(user, question, ctx)
    for name in wanted:
        if name in METHODS and METHODS[name].applies(task):
            runs.append((METHODS[name].label(k), lambda u, q, c, m=METHODS[name]: m.run(bctx, q)))
    for name in wanted:
        if name in VARIANTS:
            runs.append((name, lambda u, q, c, name=name: hydra(u, q, c, variant=name)))
    oracles = {name for name in wanted if name in VARIANTS and VARIANTS[name].oracle}  # labelled by their names
    for label, _ in runs:
        preds.by_method[label] = {}
        preds.seconds[label] = 0.0
        preds.calls[label] = 0
        preds.asked[label] = 0
        preds.llm_seconds[label] = 0.0
        preds.failures[label] = 0
    for user in tqdm(users, desc="answer", unit="user", disable=None if progress else True, leave=False):
        for q in user.questions:
            ctx = UserContext.build(task, q.profile)
            for label, run in runs:
                started = time.perf_counter()
                with llm.meter() as meter:
                    result, failed = answer_or_empty(lambda: run(user, q, ctx))  # noqa: B023 - called at once
                preds.failures[label] += failed
                preds.seconds[label] += time.perf_counter() - started
                preds.calls[label] += meter.requests
                preds.asked[label] += meter.requests + meter.cache_hits
                preds.llm_seconds[label] += meter.seconds
                if isinstance(result, Answer) and result.degraded:
                    preds.failures[label] += 1
                output = result.output if isinstance(result, Answer) else result
                preds.by_method[label][q.id] = output
                if isinstance(result, Answer) and result.baseline is not None:
                    preds.baselines.setdefault(label, {})[q.id] = result.baseline
                if label in oracles and isinstance(result, Answer) and q.id in golds and result.candidates:
                    preds.oracle[q.id] = max(
                        (c["text"] for c in result.candidates), key=lambda t: example_score(task, str(t), golds[q.id])
                    )
    return preds


def merge_predictions(parts: Sequence[Predictions]) -> Predictions:
    """One Predictions from several users' (methods in first-seen order)."""
    out = Predictions()
    for part in parts:
        for method, answers in part.by_method.items():
            out.by_method.setdefault(method, {}).update(answers)
            out.seconds[method] = out.seconds.get(method, 0.0) + part.seconds.get(method, 0.0)
            out.calls[method] = out.calls.get(method, 0) + part.calls.get(method, 0)
            out.asked[method] = out.asked.get(method, 0) + part.asked.get(method, 0)
            out.llm_seconds[method] = out.llm_seconds.get(method, 0.0) + part.llm_seconds.get(method, 0.0)
            out.failures[method] = out.failures.get(method, 0) + part.failures.get(method, 0)
        for method, kept in part.baselines.items():
            out.baselines.setdefault(method, {}).update(kept)
        out.oracle.update(part.oracle)
    return out
