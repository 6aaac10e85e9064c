"""Paired comparison of two methods answered on the same questions: mean difference and its bootstrap interval.

Input: per-question scores of method A and method B, higher is better (:func:`shared.metrics.example_score`:
correctness, minus the absolute rating error, or ROUGE-L F). The difference is B - A per question, so a
positive mean means B is better (for LaMP-3, a mean of +0.05 means B's MAE is 0.05 lower). The 95%
interval is the percentile interval of the mean over resamples of the questions with replacement (pairs
kept together), with a seeded generator: the same inputs give the same interval.

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
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Mapping, Sequence

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

    @property
    def significant(self) -> bool:
        """Whether the interval excludes zero."""
        return self.low > 0 or self.high < 0

    def as_dict(self, digits: int = 4) -> dict:
        return {"n": self.n, "mean_difference": round(self.mean, digits),
                "interval": [round(self.low, digits), round(self.high, digits)], "wins": self.wins,
                "losses": self.losses, "ties": self.ties, "resamples": self.resamples, "seed": self.seed}

    def __str__(self) -> str:
        return (f"{self.mean:+.4f} [{self.low:+.4f}, {self.high:+.4f}] (n={self.n}, "
                f"{self.wins} better, {self.losses} worse)")


def paired_bootstrap(scores_a: Sequence[float], scores_b: Sequence[float], *, resamples: int = 2000,
                     seed: int = 0, level: float = 0.95, tol: float = 1e-12) -> PairedComparison:
    """Mean of ``b - a`` over paired scores and its percentile bootstrap interval at ``level``.

    Raises:
        ConfigError: the two sequences differ in length or are empty, or ``resamples`` < 1.
    """
    if len(scores_a) != len(scores_b):
        raise ConfigError(f"paired scores differ in length: {len(scores_a)} and {len(scores_b)}")
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
    return PairedComparison(n=n, mean=sum(diffs) / n, low=low, high=high, wins=sum(d > tol for d in diffs),
                            losses=sum(d < -tol for d in diffs), ties=sum(abs(d) <= tol for d in diffs),
                            resamples=resamples, seed=seed)


def compare_predictions(task, first: Mapping[str, str], second: Mapping[str, str], golds: Mapping[str, str], *,
                        resamples: int = 2000, seed: int = 0) -> PairedComparison:
    """``second`` against ``first`` on the questions both answered and that have a gold (ids sorted).

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
    return paired_bootstrap(a, b, resamples=resamples, seed=seed)
