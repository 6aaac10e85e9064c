"""Paired comparison of two methods answered on the same questions: mean difference and its bootstrap interval.

Input: per-question scores of method A and method B, higher is better (:func:`shared.metrics.example_score`:
correctness, minus the absolute rating error, or ROUGE-L F). The difference is B - A per question, so a
positive mean means B is better (for LaMP-3, a mean of +0.05 means B's MAE is 0.05 lower). The 95%
interval is the percentile interval of the mean over resamples of the questions with replacement (pairs
kept together), with a seeded generator: the same inputs give the same interval.

Where few users carry many questions (LaMP-3's timeline split: 6 users, 40 questions each), questions of one user
are not independent, and the question-level interval is too narrow. Given each question's user (``groups``), the
comparison also reports the user-level (cluster) interval: each resample draws the users with replacement and
takes the mean over all their questions.

Example:
    >>> a = [-1.0, 0.0, -1.0, 0.0, -2.0]   # method A's scores (minus the rating error)
    >>> b = [0.0, 0.0, -1.0, 0.0, -1.0]    # method B's
    >>> c = paired_bootstrap(a, b)
    >>> c.n, c.mean, c.wins, c.losses, c.ties
    (5, 0.4, 2, 0, 3)
    >>> 0.0 <= c.low <= c.mean <= c.high <= 0.8
    True
    >>> c.as_dict()["interval"] == [c.low, c.high]
    True
    >>> u = paired_bootstrap(a, b, groups=["u1", "u1", "u2", "u2", "u2"])
    >>> (u.low, u.high) == (c.low, c.high), u.users, u.user_low <= u.mean <= u.user_high
    (True, 2, True)
"""

from __future__ import annotations

import random
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

from shared.errors import ConfigError

__all__ = ["PairedComparison", "paired_bootstrap", "compare_predictions"]


@dataclass(frozen=True)
class PairedComparison:
    """B - A over ``n`` paired questions: the mean, its 95% bootstrap interval, and the per-question tally."""

    n: int
    mean: float
    low: float
    high: float
    wins: int
    """Questions where B scores higher than A."""
    losses: int
    """Questions where B scores lower than A."""
    ties: int
    resamples: int
    seed: int
    users: int | None = None
    """How many users (clusters) the questions belong to, where given; None for a question-level comparison."""
    user_low: float | None = None
    """The user-level interval (users resampled, their questions kept together), where users were given."""
    user_high: float | None = None

    @property
    def significant(self) -> bool:
        """Whether the interval excludes zero (both intervals, where users were given)."""
        question = self.low > 0 or self.high < 0
        if self.user_low is None or self.user_high is None:
            return question
        return question and (self.user_low > 0 or self.user_high < 0)

    def as_dict(self, digits: int = 4) -> dict:
        out = {
            "n": self.n,
            "mean_difference": round(self.mean, digits),
            "interval": [round(self.low, digits), round(self.high, digits)],
            "wins": self.wins,
            "losses": self.losses,
            "ties": self.ties,
            "resamples": self.resamples,
            "seed": self.seed,
        }
        if self.users is not None and self.user_low is not None and self.user_high is not None:
            out.update(users=self.users, user_interval=[round(self.user_low, digits), round(self.user_high, digits)])
        return out

    def __str__(self) -> str:
        users = (
            ""
            if self.user_low is None or self.user_high is None
            else f", users [{self.user_low:+.4f}, {self.user_high:+.4f}] (u={self.users})"
        )
        return (
            f"{self.mean:+.4f} [{self.low:+.4f}, {self.high:+.4f}] (n={self.n}, "
            f"{self.wins} better, {self.losses} worse){users}"
        )


def paired_bootstrap(
    scores_a: Sequence[float],
    scores_b: Sequence[float],
    *,
    resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    tol: float = 1e-12,
    groups: Sequence[Hashable] | None = None,
) -> PairedComparison:
    """Mean of ``b - a`` over paired scores and its percentile bootstrap interval at ``level``; with ``groups``
    (each question's user) also the user-level interval (the question-level one is the same either way).

    Raises:
        ConfigError: the two sequences (or ``groups``) differ in length or are empty, or ``resamples`` < 1.
    """
    if len(scores_a) != len(scores_b) or (groups is not None and len(groups) != len(scores_a)):
        raise ConfigError(
            f"paired scores differ in length: {len(scores_a)} and {len(scores_b)}"
            + ("" if groups is None else f" (groups: {len(groups)})")
        )
    if not scores_a:
        raise ConfigError("no paired scores to compare")
    if resamples < 1 or not 0 < level < 1:
        raise ConfigError(f"resamples must be >= 1 and level in (0, 1), got {resamples} and {level}")
    diffs = [float(b) - float(a) for a, b in zip(scores_a, scores_b)]
    n = len(diffs)
    rng = random.Random(seed)
    means = sorted(sum(rng.choices(diffs, k=n)) / n for _ in range(resamples))
    tail = (1 - level) / 2
    low = means[int(tail * resamples)]
    high = means[max(int((1 - tail) * resamples) - 1, 0)]
    users = user_low = user_high = None
    if groups is not None:
        sums: dict[Hashable, list[float]] = {}
        for g, d in zip(groups, diffs):
            sums.setdefault(g, [0.0, 0.0])
            sums[g][0] += d
            sums[g][1] += 1
        clusters = list(sums.values())
        users = len(clusters)
        rng = random.Random(seed)
        cluster_means = []
        for _ in range(resamples):
            drawn = rng.choices(clusters, k=users)
            cluster_means.append(sum(c[0] for c in drawn) / sum(c[1] for c in drawn))
        cluster_means.sort()
        user_low = cluster_means[int(tail * resamples)]
        user_high = cluster_means[max(int((1 - tail) * resamples) - 1, 0)]
    return PairedComparison(
        n=n,
        mean=sum(diffs) / n,
        low=low,
        high=high,
        wins=sum(d > tol for d in diffs),
        losses=sum(d < -tol for d in diffs),
        ties=sum(abs(d) <= tol for d in diffs),
        resamples=resamples,
        seed=seed,
        users=users,
        user_low=user_low,
        user_high=user_high,
    )


def compare_predictions(
    task,
    first: Mapping[str, str],
    second: Mapping[str, str],
    golds: Mapping[str, str],
    *,
    resamples: int = 2000,
    seed: int = 0,
    users: Mapping[str, str] | None = None,
) -> PairedComparison:
    """``second`` against ``first`` on the questions both answered and that have a gold (ids sorted); with
    ``users`` (question id -> user) also the user-level interval.

    Example:
        >>> from shared.tasks import get_task
        >>> first, second, golds = {"a": "5", "b": "5"}, {"a": "4", "b": "5"}, {"a": "4", "b": "5"}
        >>> str(compare_predictions(get_task("LaMP-3"), first, second, golds))
        '+0.5000 [+0.0000, +1.0000] (n=2, 1 better, 0 worse)'
    """
    from shared.metrics import example_score

    ids = sorted(set(first) & set(second) & set(golds))
    a = [example_score(task, first[i], golds[i]) for i in ids]
    b = [example_score(task, second[i], golds[i]) for i in ids]
    groups = None if users is None else [users.get(i, i) for i in ids]
    return paired_bootstrap(a, b, resamples=resamples, seed=seed, groups=groups)
