"""The official LaMP metrics, computed exactly as ``eval/evaluation.py`` of the LaMP benchmark does.

- classification (LaMP-1, 2, 2N): ``accuracy`` and macro ``f1``; predictions and golds are stripped and
  mapped to their index in the official label list, anything else to -1 (an error that is not a class).
- rating (LaMP-3): ``MAE`` and ``RMSE``; an unparsable prediction is replaced by whichever of 1 or 5 is
  farther from the gold (the official worst case). "nan" and "inf" count as unparsable too (the
  official code would turn them into a NaN metric).
- rouge (LaMP-4..7): ``rouge-1`` and ``rouge-L`` F-measure as Google's ``rouge-score`` computes them
  without stemming (same tokenizer and formulas, reimplemented: see :func:`rouge_pair`). The official
  script reports the bootstrap "mid" of these per-example scores; we report their plain mean, which the
  bootstrap estimates (they agree to about 1e-3).

:func:`example_score` gives the per-example utility (higher is better) used to label training data.

Example:
    >>> from shared.tasks import get_task
    >>> evaluate(get_task("LaMP-3"), {"a": "4", "b": "oops"}, {"a": "5", "b": "2"})
    {'MAE': 2.0, 'RMSE': 2.23606797749979}
    >>> round(example_score(get_task("LaMP-7"), "the cat sat", "the cat sat down"), 4)
    0.8571
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence

from shared.errors import DataFormatError
from shared.tasks import TaskSpec

__all__ = [
    "evaluate",
    "example_score",
    "classification_metrics",
    "rating_metrics",
    "rouge_metrics",
    "rating_value",
    "METRIC_KEYS",
    "primary_metric",
]

METRIC_KEYS = {"classification": ("accuracy", "f1"), "rating": ("MAE", "RMSE"), "rouge": ("rouge-1", "rouge-L")}
_PRIMARY = {"classification": ("accuracy", True), "rating": ("MAE", False), "rouge": ("rouge-L", True)}


def primary_metric(task: TaskSpec) -> tuple[str, bool]:
    """(name, higher_is_better) of the metric a task is judged by.

    >>> from shared.tasks import get_task
    >>> primary_metric(get_task("LaMP-3"))
    ('MAE', False)
    """
    return _PRIMARY[task.metric]


def classification_metrics(preds: Sequence[str], golds: Sequence[str], labels: Sequence[str]) -> dict[str, float]:
    """Accuracy and macro-F1 over ``labels`` (F1 of a label with no gold and no prediction counts as 0)."""
    index = {label: i for i, label in enumerate(labels)}
    p = [index.get(str(x).strip(), -1) for x in preds]
    g = [index.get(str(x).strip(), -1) for x in golds]
    n = len(g)
    accuracy = sum(a == b for a, b in zip(p, g)) / n if n else 0.0
    f1s = []
    for c in range(len(labels)):
        tp = sum(1 for a, b in zip(p, g) if a == c and b == c)
        fp = sum(1 for a, b in zip(p, g) if a == c and b != c)
        fn = sum(1 for a, b in zip(p, g) if a != c and b == c)
        denom = 2 * tp + fp + fn
        f1s.append(2 * tp / denom if denom else 0.0)
    return {"accuracy": accuracy, "f1": sum(f1s) / len(f1s) if f1s else 0.0}


def rating_value(pred: str, gold: str) -> float:
    """The prediction as a number, or the official worst case (1 or 5, farther from the gold) if it does not parse.

    >>> rating_value("3", "5"), rating_value("five", "4"), rating_value("nan", "2")
    (3.0, 1.0, 5.0)
    """
    gold_value = float(gold)
    try:
        value = float(str(pred).strip())
        if math.isfinite(value):
            return value
    except ValueError:
        pass
    return 1.0 if abs(1.0 - gold_value) > abs(5.0 - gold_value) else 5.0


def rating_metrics(preds: Sequence[str], golds: Sequence[str]) -> dict[str, float]:
    """MAE and RMSE with the official worst-case substitute for unparsable predictions."""
    errors = [rating_value(p, g) - float(g) for p, g in zip(preds, golds)]
    n = len(errors)
    if not n:
        return {"MAE": 0.0, "RMSE": 0.0}
    return {"MAE": sum(abs(e) for e in errors) / n, "RMSE": math.sqrt(sum(e * e for e in errors) / n)}


_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def rouge_tokens(text: str) -> list[str]:
    """rouge-score's tokenizer without stemming: lowercase, runs of non-[a-z0-9] become spaces, split."""
    return _NON_ALNUM.sub(" ", text.lower()).split()


def _fmeasure(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def rouge_pair(pred: str, gold: str) -> tuple[float, float]:
    """(ROUGE-1 F, ROUGE-L F) of one prediction against one gold, both stripped.

    The same tokens and formulas as ``rouge_score.rouge_scorer.RougeScorer(["rouge1", "rougeL"],
    use_stemmer=False)`` (the tests check equality), without importing rouge-score: it pulls in nltk, scipy
    and scikit-learn (about 120 MB), which the on-device SDK, whose candidate features use this, must not carry.
    """
    target, prediction = rouge_tokens(str(gold).strip()), rouge_tokens(str(pred).strip())
    counts = Counter(prediction)
    overlap = sum(min(n, counts[t]) for t, n in Counter(target).items())
    rouge1 = _fmeasure(overlap / max(len(prediction), 1), overlap / max(len(target), 1))
    if not target or not prediction:
        return rouge1, 0.0
    lcs = _lcs_length(target, prediction)
    return rouge1, _fmeasure(lcs / len(prediction), lcs / len(target))


def _lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence, bit-parallel (Crochemore et al. 2001): bit ``i`` of ``v`` is
    cleared when ``a[i]`` ends a longer common subsequence; one big-integer step per token of ``b``.

    >>> _lcs_length("the cat sat on the mat".split(), "a cat on a mat".split())
    3
    """
    masks: dict[str, int] = {}
    for i, token in enumerate(a):
        masks[token] = masks.get(token, 0) | (1 << i)
    full = (1 << len(a)) - 1
    v = full
    for token in b:
        u = v & masks.get(token, 0)
        v = ((v + u) | (v - u)) & full
    return len(a) - bin(v).count("1")


def rouge_metrics(preds: Sequence[str], golds: Sequence[str]) -> dict[str, float]:
    """Mean ROUGE-1 and ROUGE-L F-measure."""
    pairs = [rouge_pair(p, g) for p, g in zip(preds, golds)]
    n = len(pairs)
    if not n:
        return {"rouge-1": 0.0, "rouge-L": 0.0}
    return {"rouge-1": sum(a for a, _ in pairs) / n, "rouge-L": sum(b for _, b in pairs) / n}


def evaluate(
    task: TaskSpec,
    predictions: Mapping[str, str],
    golds: Mapping[str, str],
    *,
    preds_name: str = "predictions",
    golds_name: str = "golds",
) -> dict[str, float]:
    """Score predictions against golds with the task's official metric.

    Predictions must cover exactly the gold ids (as the official script asserts).

    Raises:
        DataFormatError: there are no golds (a metric over nothing would read as a perfect or a worst score), or
            ids are missing or unknown; the message names both sides.
    """
    if not golds:
        raise DataFormatError(golds_name, "no golds to score (a metric needs at least one)")
    missing = [k for k in golds if k not in predictions]
    extra = [k for k in predictions if k not in golds]
    if missing or extra:
        raise DataFormatError(
            preds_name,
            f"ids do not match {golds_name}: {len(missing)} missing (e.g. {missing[:3]}), "
            f"{len(extra)} not in the golds (e.g. {extra[:3]})",
        )
    ids = list(golds)
    preds = [predictions[k] for k in ids]
    gold_values = [golds[k] for k in ids]
    if task.metric == "classification":
        return classification_metrics(preds, gold_values, task.labels)
    if task.metric == "rating":
        for k, g in zip(ids, gold_values):
            try:
                ok = math.isfinite(float(g))
            except ValueError:
                ok = False
            if not ok:
                raise DataFormatError(golds_name, f"gold of id {k!r} is {g!r}, not a rating")
        return rating_metrics(preds, gold_values)
    return rouge_metrics(preds, gold_values)


def example_score(task: TaskSpec, pred: str, gold: str) -> float:
    """Per-example utility, higher is better: 1/0 correctness, minus the absolute rating error, or ROUGE-L F."""
    if task.metric == "classification":
        return float(str(pred).strip() == str(gold).strip())
    if task.metric == "rating":
        return -abs(rating_value(pred, gold) - float(gold))
    return rouge_pair(pred, gold)[1]
