"""What HYDRA derives from one user's history, once: texts, word counts, style and label statistics.

Everything here comes from the user's own profile; it never leaves the device.

Example:
    >>> from shared.tasks import get_task
    >>> ctx = UserContext.build(get_task("LaMP-3"), [{"text": "good", "score": "5"}, {"text": "bad", "score": "1"}])
    >>> ctx.label_prior["5"], ctx.mean_score
    (0.5, 3.0)
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from shared.hydra.editor import history_counts
from shared.style import favoured_rules, signature, style_profile
from shared.tasks import TaskKind, TaskSpec

__all__ = ["UserContext"]


@dataclass(frozen=True)
class UserContext:
    """Per-user statistics of the profile used by features and candidates."""

    task: TaskSpec
    items: tuple[Mapping[str, str], ...]
    texts: tuple[str, ...]
    answers: tuple[str, ...]
    counts: Mapping[str, int] = field(repr=False)
    style_rules: tuple[str, ...] = ()
    signature: str | None = None
    label_prior: Mapping[str, float] = field(default_factory=dict)
    mean_score: float | None = None

    @classmethod
    def build(cls, task: TaskSpec, items: Sequence[Mapping[str, str]]) -> "UserContext":
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
        writing = [task.item_output(i) for i in items] if (task.item_output and task.kind is TaskKind.GENERATION) else texts
        generation = task.kind is TaskKind.GENERATION
        rules = tuple(favoured_rules(style_profile(writing))) if generation else ()
        return cls(task=task, items=tuple(items), texts=texts, answers=answers, counts=history_counts(writing),
                   style_rules=rules, signature=signature(writing) if generation else None, label_prior=prior,
                   mean_score=mean)

    def without_items(self, corpus) -> "UserContext":
        """The context of a pseudo-question's corpus (the profile minus the item the question was made from)."""
        if len(corpus) == len(self.items):
            return self
        return UserContext.build(self.task, list(corpus))
