"""How the adapter's scores become an answer, and the margin rule that keeps the strongest non-LLM answer.

The adapter's scores become a softmax distribution ``p`` over the candidates; its choice is the weighted
median for ratings (the value that minimizes the expected absolute error, the task's metric) and the top
candidate otherwise (:func:`decide`).

The **margin rule** makes HYDRA no worse than the strongest non-LLM answer by design: that answer (the
input for rewrite tasks, the user's typical score for ratings, the user's most frequent label; see
:func:`shared.hydra.candidates.baseline_output`) is always in the pool, and the adapter leaves it only when
its predicted advantage passes a margin (:func:`decide_with_margin`). The predicted advantage is, under
``p``:

- ratings: the expected absolute error of the baseline minus that of the choice (>= 0);
- otherwise: ``p[choice] - p[baseline]`` (>= 0).

The margin is chosen on training users only, by cross-validation (:mod:`shared.hydra.calibrate` collects the
held-out :class:`CalibrationPoint` s; :func:`choose_margin` picks the margin of the grid with the largest
total gain, the larger margin on ties). Test users never choose anything.

Pure numpy: the device runs the same code.

Example:
    >>> from shared.tasks import get_task
    >>> t7 = get_task("LaMP-7")
    >>> answer, adv = decide_with_margin(t7, ["input", "edit"], np.array([0.0, 0.3]), baseline=0, margin=0.2)
    >>> answer, round(adv, 3)
    ('input', 0.149)
    >>> decide_with_margin(t7, ["input", "edit"], np.array([0.0, 0.3]), baseline=0, margin=0.1)[0]
    'edit'
    >>> choose_margin([CalibrationPoint(0.3, 0.2), CalibrationPoint(0.05, -0.1)], grid=(0.0, 0.1, 1.0)).margin
    0.1
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np

from shared.tasks import TaskKind, TaskSpec

__all__ = ["softmax", "weighted_median", "decide", "advantage", "decide_with_margin", "CalibrationPoint",
           "MarginChoice", "choose_margin", "MARGIN_GRID"]

MARGIN_GRID = (0.0, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, math.inf)
"""Margins tried by cross-validation; ``inf`` never leaves the baseline."""


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(np.asarray(x, dtype=np.float64) - np.max(x))
    return e / e.sum()


def weighted_median(values: Sequence[str], weights: Sequence[float]) -> str:
    """The value at which the cumulative weight of the numerically sorted values reaches one half.

    >>> weighted_median(["1", "2", "3", "4", "5"], [0.1, 0.1, 0.2, 0.3, 0.3])
    '4'
    """
    pairs = sorted(zip((float(v) for v in values), weights, values))
    total = float(sum(weights))
    acc = 0.0
    for _, w, v in pairs:
        acc += w
        if acc >= total / 2:
            return v
    return pairs[-1][2]


def _labelled(task: TaskSpec, texts: Sequence[str], p: np.ndarray) -> list[tuple[str, float]]:
    return [(t, float(w)) for t, w in zip(texts, p) if t in task.labels]


def decide(task: TaskSpec, texts: Sequence[str], scores: np.ndarray) -> str:
    """The adapter's choice among candidates (weighted median for ratings, argmax otherwise)."""
    if task.kind is TaskKind.RATING:
        labelled = _labelled(task, texts, softmax(scores))
        if labelled:
            return weighted_median([t for t, _ in labelled], [p for _, p in labelled])
    return texts[int(np.argmax(scores))]


def advantage(task: TaskSpec, texts: Sequence[str], scores: np.ndarray, choice: str, baseline: str) -> float:
    """The adapter's predicted advantage of ``choice`` over ``baseline`` (see the module docstring)."""
    p = softmax(scores)
    if task.kind is TaskKind.RATING:
        labelled = _labelled(task, texts, p)
        if labelled and choice in task.labels and baseline in task.labels:
            total = sum(w for _, w in labelled) or 1.0

            def expected_error(value: str) -> float:
                return sum(w * abs(float(t) - float(value)) for t, w in labelled) / total

            return expected_error(baseline) - expected_error(choice)
    index = {t: i for i, t in enumerate(texts)}
    return float(p[index[choice]] - p[index[baseline]])


def decide_with_margin(task: TaskSpec, texts: Sequence[str], scores: np.ndarray, *, baseline: int | None,
                       margin: float | None) -> tuple[str, float]:
    """``(answer, predicted advantage)``: the adapter's choice if its advantage over ``texts[baseline]`` is above
    ``margin``, else the baseline. Without a baseline in the pool or a margin, the plain choice (advantage nan)."""
    choice = decide(task, texts, scores)
    if baseline is None or margin is None:
        return choice, float("nan")
    gain = advantage(task, texts, scores, choice, texts[baseline])
    return (choice if gain > margin else texts[baseline]), gain


@dataclass(frozen=True)
class CalibrationPoint:
    """One held-out training question: the predicted advantage of the adapter's choice over the baseline and what
    taking it gained (the task's per-question utility of the choice minus the baseline's, by the gold)."""

    advantage: float
    gain: float


@dataclass
class MarginChoice:
    """The chosen margin and how it did on the calibration points: how often the adapter would leave the
    baseline at that margin, how often that helped or hurt, and the total gain; ``grid`` has every margin's."""

    margin: float
    points: int
    left: int
    helped: int
    hurt: int
    gain: float
    grid: list[dict[str, float]] = field(default_factory=list)

    def as_dict(self) -> dict:
        out = asdict(self)
        out["margin"] = None if math.isinf(self.margin) else self.margin
        for row in out["grid"]:
            row["margin"] = None if math.isinf(row["margin"]) else row["margin"]
        return out


def choose_margin(points: Sequence[CalibrationPoint], grid: Sequence[float] = MARGIN_GRID) -> MarginChoice:
    """The margin of ``grid`` with the largest total gain over ``points`` (ties: the larger margin).

    Without points it is ``inf``: with nothing to learn from, the baseline is kept.
    """
    rows = []
    for m in sorted(grid):
        taken = [p.gain for p in points if p.advantage == p.advantage and p.advantage > m]
        rows.append({"margin": float(m), "left": len(taken), "helped": sum(g > 0 for g in taken),
                     "hurt": sum(g < 0 for g in taken), "gain": float(sum(taken))})
    best = max(rows, key=lambda r: (round(r["gain"], 9), r["margin"]))
    return MarginChoice(margin=best["margin"], points=len(points), left=int(best["left"]), helped=int(best["helped"]),
                        hurt=int(best["hurt"]), gain=best["gain"], grid=rows)
