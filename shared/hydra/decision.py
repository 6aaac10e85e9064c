"""How the adapter's scores become an answer, and the margin rule that keeps the strongest non-LLM answer.

The adapter's scores become a softmax distribution ``p`` over the candidates; its choice is the weighted
median for ratings (the value that minimizes the expected absolute error, the task's metric) and the top
candidate otherwise (:func:`decide`).

The **margin rule** makes HYDRA no worse than the strongest non-LLM answer by design: that answer (the
input for rewrite tasks, the user's own rating model's score (else their mean) for ratings, the user's most
frequent label; see :func:`shared.hydra.candidates.baseline_output`) is always in the pool, and the adapter
leaves it only when its predicted advantage passes a margin (:func:`decide_with_margin`). The predicted
advantage is, under ``p``:

- ratings: the expected absolute error of the baseline minus that of the choice (>= 0);
- otherwise: ``p[choice] - p[baseline]`` (>= 0).

The margin is chosen on training users only, by cross-validation (:mod:`shared.training.calibrate` collects the
held-out :class:`CalibrationPoint` s; :func:`choose_margin` picks the margin of the grid with the largest
total gain, the larger margin on ties). Test users never choose anything.

**The anchor.** For rewrite tasks the answer kept below the margin need not be the input itself: it may be one of
the input written the user's way, the editor's fixed edits of it, or such an edit written the user's way
(:func:`shared.hydra.candidates.anchors_for` names them: ``baseline``, the input, then ``style``, ``edit-0.6`` ...,
``style-edit-0.6`` ...), which need no LLM call either. The same cross-validation chooses the anchor together with
the margin: each anchor's points carry its own gain over the baseline (``anchor_gain``), so that every (anchor,
margin) pair's total gain is counted against the same reference, and the pair with the largest wins (ties: the
earlier anchor, then the larger margin). An anchor other than ``baseline`` is chosen only when it gains on
held-out training users.

**How many LLM answers.** The same cross-validation also chooses how many of the LLM's answers (a prefix of the
pool's requests: none, the greedy answer, the greedy answer and one sample, ...) an answer asks for: each held-out
question is scored once per count, each (anchor, count) pair is a *decision* (:func:`decision_key`:
``"edit-1@0"``), and the decision with the largest total gain wins (ties: fewer calls, then the earlier anchor, then
the larger margin). Where the LLM's answers do not pay on held-out training users, no answer asks for one
(:attr:`MarginChoice.llm_calls`, carried in the bundle).

The choice is **additive**: it depends on the points only through :class:`MarginSums`, per margin of the grid how
many points the adapter would leave the baseline on, how many of those helped or hurt, and their total gain. A
federated training client computes its sums (:func:`margin_sums`), the server adds them up and chooses from the
total (:meth:`MarginSums.choose`), which is ``choose_margin`` of the union of the clients' points; the sums
travel as a flat record of numbers (:meth:`MarginSums.to_record`, checked by :meth:`MarginSums.from_record`).

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
    >>> a = margin_sums([CalibrationPoint(0.3, 0.2)], grid=(0.0, 0.1, 1.0))
    >>> b = margin_sums([CalibrationPoint(0.05, -0.1)], grid=(0.0, 0.1, 1.0))
    >>> (a + b).choose().margin, (a + b).left
    (0.1, (2, 1, 0))
    >>> c = anchor_margin_sums({"baseline": [CalibrationPoint(0.3, -0.2)],
    ...                         "edit-1": [CalibrationPoint(0.3, -0.1, anchor_gain=0.15)]}, grid=(0.0, 1.0))
    >>> c.choose().anchor, c.choose().margin
    ('edit-1', 1.0)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from shared.tasks import TaskKind, TaskSpec

__all__ = [
    "softmax",
    "weighted_median",
    "decide",
    "advantage",
    "decide_with_margin",
    "CalibrationPoint",
    "MarginChoice",
    "MarginSums",
    "margin_sums",
    "anchor_margin_sums",
    "choose_margin",
    "MARGIN_GRID",
    "BASELINE_ANCHOR",
    "decision_key",
    "split_decision",
    "heads_needed",
]

MARGIN_GRID = (0.0, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, math.inf)
"""Margins tried by cross-validation; ``inf`` never leaves the baseline."""


def heads_needed(margin: float | None) -> bool:
    """Whether a user's personal heads can change an answer under ``margin`` (None: no margin rule). Under ``inf`` the
    answer never leaves its anchor, so no head matters and a new user needs no onboarding (the SDK's ``fit()``, the
    centralized run and a federated test node all skip it).

    >>> heads_needed(0.05), heads_needed(None), heads_needed(math.inf)
    (True, True, False)
    """
    return margin is None or margin != math.inf


BASELINE_ANCHOR = "baseline"
"""The anchor that is the strongest non-LLM answer itself (:func:`shared.hydra.candidates.baseline_output`)."""


def decision_key(anchor: str, llm_calls: int | None) -> str:
    """The name of a decision: the anchor, and how many LLM answers are asked (None: all the pool's).

    >>> decision_key("edit-1", 0), decision_key("baseline", None), split_decision("edit-1@0")
    ('edit-1@0', 'baseline', ('edit-1', 0))
    """
    return anchor if llm_calls is None else f"{anchor}@{int(llm_calls)}"


def split_decision(key: str) -> tuple[str, int | None]:
    """The inverse of :func:`decision_key`: ``(anchor, llm_calls)``."""
    anchor, sep, calls = key.rpartition("@")
    return (anchor, int(calls)) if sep and calls.isdigit() else (key, None)


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


def decide_with_margin(
    task: TaskSpec, texts: Sequence[str], scores: np.ndarray, *, baseline: int | None, margin: float | None
) -> tuple[str, float]:
    """``(answer, predicted advantage)``: the adapter's choice if its advantage over ``texts[baseline]`` is above
    ``margin``, else the baseline. Without a baseline in the pool or a margin, the plain choice (advantage nan)."""
    choice = decide(task, texts, scores)
    if baseline is None or margin is None:
        return choice, float("nan")
    gain = advantage(task, texts, scores, choice, texts[baseline])
    return (choice if gain > margin else texts[baseline]), gain


@dataclass(frozen=True)
class CalibrationPoint:
    """One held-out training question: the predicted advantage of the adapter's choice over the anchor and what
    taking it gained (the task's per-question utility of the choice minus the anchor's, by the gold);
    ``anchor_gain`` is the anchor's utility minus the baseline's (0 for the baseline itself)."""

    advantage: float
    gain: float
    anchor_gain: float = 0.0


@dataclass
class MarginChoice:
    """The chosen margin and anchor and how they did on the calibration points: how often the adapter would leave the
    anchor at that margin, how often that helped or hurt, and the total gain over the baseline; ``grid`` has every
    (anchor, margin) pair's."""

    margin: float
    points: int
    left: int
    helped: int
    hurt: int
    gain: float
    grid: list[dict[str, float]] = field(default_factory=list)
    anchor: str = BASELINE_ANCHOR
    llm_calls: int | None = None
    """How many LLM answers an answer asks for (a prefix of the pool's requests); None: the whole pool's."""

    def anchors_tried(self) -> tuple[str, ...]:
        """The decisions (anchors, with their LLM answer counts: :func:`decision_key`) the choice was made over, in
        order (from its grid; ``()`` for a grid without anchors).

        >>> MarginSums.zero((0.0, 1.0), anchors=("baseline", "edit-1")).choose().anchors_tried()
        ('baseline', 'edit-1')
        """
        return tuple(dict.fromkeys(str(r["anchor"]) for r in self.grid if "anchor" in r))

    def as_dict(self) -> dict:
        out = asdict(self)
        out["margin"] = None if math.isinf(self.margin) else self.margin
        for row in out["grid"]:
            row["margin"] = None if math.isinf(row["margin"]) else row["margin"]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MarginChoice:
        """The inverse of :meth:`as_dict` (None is an infinite margin).

        >>> c = MarginChoice(math.inf, 3, 0, 0, 0, 0.0, [{"margin": math.inf, "left": 0}])
        >>> MarginChoice.from_dict(c.as_dict()) == c
        True
        """
        inf = lambda m: math.inf if m is None else float(m)  # noqa: E731
        grid = [{**row, "margin": inf(row["margin"])} for row in data.get("grid", [])]
        calls = data.get("llm_calls")
        return cls(
            margin=inf(data["margin"]),
            points=int(data["points"]),
            left=int(data["left"]),
            helped=int(data["helped"]),
            hurt=int(data["hurt"]),
            gain=float(data["gain"]),
            grid=grid,
            anchor=str(data.get("anchor", BASELINE_ANCHOR)),
            llm_calls=None if calls is None else int(calls),
        )


@dataclass(frozen=True)
class MarginSums:
    """The additive summary of calibration points: per (anchor, margin) pair (``anchors`` in order, each with every
    margin of ``grid``, sorted ascending; entry ``i`` is anchor ``i // len(grid)`` and margin ``i % len(grid)``), on
    how many points the adapter would leave the anchor (``left``), how many of those helped or hurt, and the total
    ``gain`` over the baseline; ``points`` is how many points there were (each anchor has one per question). Sums of
    two sets of points add (``a + b``) and :meth:`choose` picks the same pair as :func:`choose_margin` of all the
    points."""

    grid: tuple[float, ...]
    points: int
    left: tuple[int, ...]
    helped: tuple[int, ...]
    hurt: tuple[int, ...]
    gain: tuple[float, ...]
    anchors: tuple[str, ...] = (BASELINE_ANCHOR,)

    COUNTS = ("left", "helped", "hurt")

    @classmethod
    def zero(cls, grid: Sequence[float] = MARGIN_GRID, anchors: Sequence[str] = (BASELINE_ANCHOR,)) -> MarginSums:
        g = tuple(float(m) for m in sorted(grid))
        n = len(g) * len(anchors)
        return cls(
            grid=g, points=0, left=(0,) * n, helped=(0,) * n, hurt=(0,) * n, gain=(0.0,) * n, anchors=tuple(anchors)
        )

    def __add__(self, other: MarginSums) -> MarginSums:
        if self.grid != other.grid or self.anchors != other.anchors:
            raise ValueError(
                f"margin sums over different grids: {self.anchors} x {self.grid} and {other.anchors} x {other.grid}"
            )
        return MarginSums(
            grid=self.grid,
            points=self.points + other.points,
            left=tuple(a + b for a, b in zip(self.left, other.left)),
            helped=tuple(a + b for a, b in zip(self.helped, other.helped)),
            hurt=tuple(a + b for a, b in zip(self.hurt, other.hurt)),
            gain=tuple(a + b for a, b in zip(self.gain, other.gain)),
            anchors=self.anchors,
        )

    def rows(self) -> list[dict[str, Any]]:
        pairs = [(a, m) for a in self.anchors for m in self.grid]
        return [
            {"anchor": a, "margin": m, "left": left, "helped": h, "hurt": u, "gain": g}
            for (a, m), left, h, u, g in zip(pairs, self.left, self.helped, self.hurt, self.gain)
        ]

    def choose(self) -> MarginChoice:
        """The (decision, margin) pair with the largest total gain (ties: the earlier decision, then the larger
        margin; without points: the first decision and ``inf``); a decision names an anchor and may name how many
        LLM answers are asked (:func:`decision_key`)."""
        rows = self.rows()
        order = {a: i for i, a in enumerate(self.anchors)}
        best = max(rows, key=lambda r: (round(r["gain"], 9), -order[r["anchor"]], r["margin"]))
        anchor, calls = split_decision(str(best["anchor"]))
        return MarginChoice(
            margin=best["margin"],
            points=self.points,
            left=int(best["left"]),
            helped=int(best["helped"]),
            hurt=int(best["hurt"]),
            gain=best["gain"],
            grid=rows,
            anchor=anchor,
            llm_calls=calls,
        )

    def to_record(self) -> dict[str, int | float]:
        """A flat ``{key: number}`` record (the anchors and margins are the grid's, known to both sides, so only
        indices travel): ``points``, ``left/i``, ``helped/i``, ``hurt/i``, ``gain/i`` for the i-th pair.

        >>> margin_sums([CalibrationPoint(0.3, 0.2)], grid=(0.0, 1.0)).to_record()
        {'points': 1, 'left/0': 1, 'helped/0': 1, 'hurt/0': 0, 'gain/0': 0.2, 'left/1': 0, 'helped/1': 0, 'hurt/1': 0, 'gain/1': 0.0}
        """
        out: dict[str, int | float] = {"points": int(self.points)}
        for i in range(len(self.left)):
            out.update(
                {
                    f"left/{i}": int(self.left[i]),
                    f"helped/{i}": int(self.helped[i]),
                    f"hurt/{i}": int(self.hurt[i]),
                    f"gain/{i}": float(self.gain[i]),
                }
            )
        return out

    @classmethod
    def record_keys(cls, grid: Sequence[float] = MARGIN_GRID, anchors: Sequence[str] = (BASELINE_ANCHOR,)) -> set[str]:
        return {"points"} | {f"{k}/{i}" for i in range(len(grid) * len(anchors)) for k in (*cls.COUNTS, "gain")}

    @classmethod
    def from_record(
        cls,
        record: Mapping[str, object],
        grid: Sequence[float] = MARGIN_GRID,
        anchors: Sequence[str] = (BASELINE_ANCHOR,),
    ) -> MarginSums:
        """The sums of a record made by :meth:`to_record` over ``anchors`` x ``grid``, checked: exactly the expected
        keys, numbers only, finite, counts whole and non-negative, ``helped + hurt <= left <= points``, and ``left``
        not growing with the margin. Raises ValueError on anything else."""
        keys, expected = set(record), cls.record_keys(grid, anchors)
        if keys != expected:
            extra, missing = sorted(keys - expected), sorted(expected - keys)
            raise ValueError(f"margin sums with other keys (extra {extra[:3]}, missing {missing[:3]})")
        values: dict[str, float] = {}
        for key, value in record.items():
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise ValueError(f"margin sums: {key} is not a number ({type(value).__name__})")
            if not math.isfinite(float(value)):
                raise ValueError(f"margin sums: {key} is not finite ({value})")
            values[key] = float(value)

        def count(key: str) -> int:
            v = values[key]
            if v < 0 or not v.is_integer():
                raise ValueError(f"margin sums: {key} is not a count ({v})")
            return int(v)

        n, points = len(grid) * len(anchors), count("points")
        left = tuple(count(f"left/{i}") for i in range(n))
        helped = tuple(count(f"helped/{i}") for i in range(n))
        hurt = tuple(count(f"hurt/{i}") for i in range(n))
        for i in range(n):
            if not helped[i] + hurt[i] <= left[i] <= points:
                raise ValueError(
                    f"margin sums: at margin {i} helped {helped[i]} + hurt {hurt[i]} <= left {left[i]} "
                    f"<= points {points} does not hold"
                )
            if i % len(grid) and left[i] > left[i - 1]:
                raise ValueError(f"margin sums: left grows with the margin at {i}")
        return cls(
            grid=tuple(float(m) for m in sorted(grid)),
            points=points,
            left=left,
            helped=helped,
            hurt=hurt,
            gain=tuple(values[f"gain/{i}"] for i in range(n)),
            anchors=tuple(anchors),
        )


def anchor_margin_sums(
    points: Mapping[str, Sequence[CalibrationPoint]], grid: Sequence[float] = MARGIN_GRID
) -> MarginSums:
    """The :class:`MarginSums` of each anchor's points (``{anchor: points}``, in anchor order, one point per question
    for every anchor); a point with an undefined advantage never leaves its anchor."""
    g = tuple(float(m) for m in sorted(grid))
    sizes = {len(p) for p in points.values()}
    if len(sizes) > 1:
        raise ValueError(f"anchors with different numbers of points: { {a: len(p) for a, p in points.items()} }")
    left, helped, hurt, gain = [], [], [], []
    for anchor_points in points.values():
        kept = float(sum(p.anchor_gain for p in anchor_points))
        for m in g:
            taken = [p.gain for p in anchor_points if p.advantage == p.advantage and p.advantage > m]
            left.append(len(taken))
            helped.append(sum(x > 0 for x in taken))
            hurt.append(sum(x < 0 for x in taken))
            gain.append(kept + float(sum(taken)))
    return MarginSums(
        grid=g,
        points=sizes.pop() if sizes else 0,
        left=tuple(left),
        helped=tuple(helped),
        hurt=tuple(hurt),
        gain=tuple(gain),
        anchors=tuple(points),
    )


def margin_sums(points: Sequence[CalibrationPoint], grid: Sequence[float] = MARGIN_GRID) -> MarginSums:
    """The :class:`MarginSums` of ``points`` about the baseline alone (a point with an undefined advantage never
    leaves the baseline)."""
    return anchor_margin_sums({BASELINE_ANCHOR: points}, grid)


def choose_margin(
    points: Sequence[CalibrationPoint] | Mapping[str, Sequence[CalibrationPoint]], grid: Sequence[float] = MARGIN_GRID
) -> MarginChoice:
    """The margin of ``grid`` (and, given ``{anchor: points}``, the anchor) with the largest total gain over the
    points (ties: the earlier anchor, then the larger margin).

    Without points it is ``inf``: with nothing to learn from, the baseline is kept. The same as
    ``margin_sums(points, grid).choose()`` (``anchor_margin_sums`` for anchors).
    """
    if isinstance(points, Mapping):
        return anchor_margin_sums(points, grid).choose()
    return margin_sums(points, grid).choose()
