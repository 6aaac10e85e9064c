"""What HYDRA derives from one user's history, once: texts, word counts, style and label statistics.

Everything here comes from the user's own profile; it never leaves the device. Given an ``embed`` function (the
device's history encoder, or the trainer's), a rating task's context also fits the user's own **rating model**:
a ridge regression (:mod:`shared.ridge`) of the score on the embeddings of the user's rated items, whose
prediction for a query is one of the adapter's features (:mod:`shared.hydra.features`). It costs no LLM call.

Example:
    >>> from shared.tasks import get_task
    >>> ctx = UserContext.build(get_task("LaMP-3"), [{"text": "good", "score": "5"}, {"text": "bad", "score": "1"}])
    >>> ctx.label_prior["5"], ctx.mean_score
    (0.5, 3.0)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import cast

import numpy as np

from shared.hydra.editor import history_counts
from shared.style import StyleHabits, rule_counts
from shared.tasks import TaskKind, TaskSpec

__all__ = ["UserContext", "Embed", "MIN_RATED"]

Embed = Callable[[Sequence[str]], np.ndarray]
"""Texts -> ``(n, d)`` embeddings."""
MIN_RATED = 10
"""Fewest rated items a user's rating model is fitted on (fewer: no model)."""


@dataclass(frozen=True)
class UserContext:
    """Per-user statistics of the profile used by features and candidates."""

    task: TaskSpec
    items: tuple[Mapping[str, str], ...]
    texts: tuple[str, ...]
    answers: tuple[str, ...]
    counts: Mapping[str, int] = field(repr=False)
    habits: StyleHabits = StyleHabits()
    """How the user writes (generation tasks): the case, final period and sign-off their history favours. Its
    ``rules`` are empty: which informal rewrites apply is the shared style model's choice from :attr:`rule_counts`
    (:class:`shared.hydra.style_model.StyleModel`, applied by :func:`shared.hydra.candidates.build_pool`)."""
    rule_counts: tuple[tuple[int, int], ...] = ()
    """Per rule of :data:`shared.style.STYLE_RULES`, the user's (formal, informal) uses (generation tasks)."""
    label_prior: Mapping[str, float] = field(default_factory=dict)
    mean_score: float | None = None
    embed: Embed | None = field(default=None, repr=False, compare=False)
    _scores: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def build(cls, task: TaskSpec, items: Sequence[Mapping[str, str]], *, embed: Embed | None = None) -> UserContext:
        texts = tuple(task.item_text(i) for i in items)
        answers = tuple(task.item_output(i) for i in items) if task.item_output else texts
        prior: dict[str, float] = {}
        mean = None
        if task.labels and answers:
            counts = Counter(a for a in answers if a in task.labels)
            total = sum(counts.values()) or 1
            prior = {label: counts.get(label, 0) / total for label in task.labels}
        if task.kind is TaskKind.RATING:
            values = [float(a) for a in answers if a in task.labels]
            mean = sum(values) / len(values) if values else None
        writing = (
            [task.item_output(i) for i in items] if (task.item_output and task.kind is TaskKind.GENERATION) else texts
        )
        generation = task.kind is TaskKind.GENERATION
        return cls(
            task=task,
            items=tuple(items),
            texts=texts,
            answers=answers,
            counts=history_counts(writing),
            habits=replace(StyleHabits.of(writing), rules=()) if generation else StyleHabits(),
            rule_counts=rule_counts(writing) if generation else (),
            label_prior=prior,
            mean_score=mean,
            embed=embed,
        )

    @cached_property
    def rating_model(self):
        """The user's ridge of score on item embeddings (:class:`shared.ridge.RidgeModel`), fitted on first use;
        None without ``embed``, for other tasks, or with fewer than :data:`MIN_RATED` rated items."""
        if self.embed is None or self.task.kind is not TaskKind.RATING:
            return None
        texts, scores = self.rated()
        if len(texts) < MIN_RATED:
            return None
        from shared.ridge import fit_ridge

        return fit_ridge(np.asarray(self.embed(texts), dtype=np.float64), scores)

    def rated(self) -> tuple[list[str], np.ndarray]:
        """The texts of the profile's rated items and their scores (empty for other tasks)."""
        if self.task.kind is not TaskKind.RATING:
            return [], np.zeros(0)
        rated = [(t, float(a)) for t, a in zip(self.texts, self.answers) if a in self.task.labels]
        return [t for t, _ in rated], np.array([v for _, v in rated], dtype=np.float64)

    def with_rating_model(self, model) -> UserContext:
        """This context with ``model`` (a :class:`shared.ridge.RidgeModel`) in place of the user's own rating model:
        how the ``hydra-shared-head`` variant answers with the shared rating head (:mod:`shared.hydra.rating_head`).

        >>> from shared.ridge import RidgeModel
        >>> from shared.tasks import get_task
        >>> ctx = UserContext.build(get_task("LaMP-3"), [{"text": "good", "score": "5"}], embed=lambda t: np.zeros((len(t), 2)))
        >>> ctx.with_rating_model(RidgeModel(np.zeros(2), 2.0, 1.0)).predicted_score("anything")
        2.0
        """
        other = replace(self)
        other.__dict__["rating_model"] = model  # the cached_property's slot
        return other

    def predicted_score(self, query: str) -> float | None:
        """The user's rating model's score for ``query`` (clipped to the label range), if there is a model.

        >>> from shared.tasks import get_task
        >>> items = [{"text": f"{w} thing", "score": s} for w, s in [("good", "5"), ("bad", "1")] * 6]
        >>> embed = lambda texts: np.array([[t.startswith("good"), t.startswith("bad")] for t in texts], float)
        >>> round(UserContext.build(get_task("LaMP-3"), items, embed=embed).predicted_score("good one"), 1)
        5.0
        """
        if query in self._scores:  # asked for each candidate pool and baseline of the same question
            return self._scores[query]
        model = self.rating_model
        if model is None:
            return None
        embed = cast(Embed, self.embed)  # set whenever there is a rating model
        x = np.asarray(embed([query]), dtype=np.float64)
        values = [float(label) for label in self.task.labels]
        score = float(np.clip(model.predict(x)[0], min(values), max(values)))
        self._scores[query] = score
        return score

    def without_items(self, corpus) -> UserContext:
        """The context of a pseudo-question's corpus (the profile minus the item the question was made from)."""
        if len(corpus) == len(self.items):
            return self
        return UserContext.build(self.task, list(corpus), embed=self.embed)
