"""``fedhydra baseline``: run the baseline methods over selected users of a LaMP-format split and score them.

The methods themselves (``input``, ``majority``, ``user-mean``, ``user-ridge``, ``global-ridge``, ``zero-shot``,
``rag``) are the registry of :mod:`shared.baselines`; here they run over whole users' questions
(:func:`select_users`), ``rag`` once per ``k`` (``rag-k1``, ``rag-k4``, ...), and each is scored with the
official metric. Golds are only read to score; no method sees them.

Example:
    >>> from shared.data import Question
    >>> qs = [Question("1", "q", ({"id": "a"}, {"id": "b"}), "u", "q"), Question("2", "q", ({"id": "a"},), "u", "q")]
    >>> [len(h) for h in user_histories(qs).values()]
    [1]
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from shared.baselines import METHODS, BaselineContext, majority_label, methods_for
from shared.data import Dataset, Question, group_by_user, write_outputs
from shared.errors import ConfigError
from shared.evaluation import answer_or_empty
from shared.llm.client import LLMClient
from shared.metrics import evaluate
from shared.tasks import TaskSpec
from shared.users import user_history
from simulations.report import MethodResult

__all__ = ["run_baselines", "select_users", "user_histories", "check_methods"]


def select_users(dataset: Dataset, n_users: int | None, offset: int = 0) -> list[Question]:
    """The questions of users ``offset .. offset+n_users`` in order of first appearance (all if None).

    Raises:
        ConfigError: ``n_users`` is not None and below 1, or ``offset`` is not one of the data's users (0 to the
            number of users - 1); names the flag and the bound.
    """
    groups = list(group_by_user(dataset.questions).values())
    if n_users is not None and (isinstance(n_users, bool) or not isinstance(n_users, int) or n_users < 1):
        raise ConfigError(f"--users must be an integer >= 1, got {n_users!r}")
    if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset < max(len(groups), 1):
        raise ConfigError(
            f"--offset must be an integer in 0..{max(len(groups) - 1, 0)} (the data has "
            f"{len(groups)} users), got {offset!r}"
        )
    chosen = groups[offset : None if n_users is None else offset + n_users]
    return [q for group in chosen for q in group]


def check_methods(task: TaskSpec, methods: Sequence[str], *, llm: LLMClient | None | bool = True) -> None:
    """Raise :class:`ConfigError` for a method that is unknown, does not apply to ``task``, or needs an LLM when
    ``llm`` is None (a bool: whether one will be given)."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ConfigError(f"unknown baseline method(s) {unknown}; known: {list(METHODS)}")
    invalid = [m for m in methods if not METHODS[m].applies(task)]
    if invalid:
        raise ConfigError(f"method(s) {invalid} do not apply to {task.name}; use {methods_for(task)}")
    if any(METHODS[m].uses_llm for m in methods) and (llm is None or llm is False):
        raise ConfigError("an LLM is needed for " + ", ".join(m for m in methods if METHODS[m].uses_llm))


def user_histories(questions: Sequence[Question]) -> dict[str, Sequence[Mapping[str, str]]]:
    """Each user's training part: the shortest profile among their questions (:func:`shared.users.user_history`)."""
    return {user: user_history(qs) for user, qs in group_by_user(questions).items()}


def run_baselines(
    dataset: Dataset,
    questions: Sequence[Question],
    methods: Sequence[str],
    *,
    llm: LLMClient | None,
    ks: Sequence[int] = (4,),
    style: str = "turns",
    out_dir: str | Path | None = None,
    progress: bool = True,
) -> list[MethodResult]:
    """Run each method on ``questions`` and score it; write predictions per method when ``out_dir`` is set.

    A method that needs the LLM and whose call fails for one question records an empty answer for it (the
    metric scores that as wrong) and counts the failure, so one bad call does not sink the run.
    """
    from tqdm import tqdm

    task = dataset.task
    check_methods(task, methods, llm=llm)
    if not questions:
        raise ConfigError("no questions to answer (the selected users have none)")
    golds = {q.id: dataset.golds[q.id] for q in questions}
    ctx = BaselineContext(
        task=task,
        llm=llm,
        style=style,
        histories=user_histories(questions),
        global_majority=majority_label(task, (it for q in questions for it in q.profile)),
    )
    runs = [(METHODS[m].label(k), m, k) for m in methods for k in (ks if METHODS[m].uses_k else [ctx.k])]
    results = []
    for label, name, k in runs:
        ctx.k = k
        method = METHODS[name]
        before = (llm.stats.calls, llm.stats.cache_hits, llm.stats.seconds) if llm else (0, 0, 0.0)
        started = time.perf_counter()

        def answer(q: Question) -> tuple[str, bool]:
            # a failed LLM call costs one answer, not the run (answer runs within this iteration of the loop)
            return answer_or_empty(lambda: method.run(ctx, q))  # noqa: B023

        # an LLM method's questions are independent: as many at once as the client keeps in flight
        workers = llm.config.concurrency if (llm is not None and method.uses_llm) else 1
        bar = tqdm(total=len(questions), desc=label, unit="q", disable=None if progress else True, leave=False)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            answers = []
            for a in pool.map(answer, questions):
                answers.append(a)
                bar.update()
        bar.close()
        predictions = {q.id: text for q, (text, _) in zip(questions, answers)}
        failures = sum(failed for _, failed in answers)
        seconds = time.perf_counter() - started
        after = (llm.stats.calls, llm.stats.cache_hits, llm.stats.seconds) if llm else (0, 0, 0.0)
        result = MethodResult(
            label,
            predictions,
            evaluate(task, predictions, golds),
            seconds,
            after[0] - before[0],
            after[1] - before[1],
            failures,
            llm_seconds=after[2] - before[2],
        )
        results.append(result)
        if out_dir is not None:
            write_outputs(Path(out_dir) / f"{label}_outputs.json", task, predictions)
    return results
