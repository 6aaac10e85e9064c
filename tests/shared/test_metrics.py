"""The official metrics, against hand-computed values and independent implementations."""

from __future__ import annotations

import json
import math
import random
import re

import pytest
from rouge_score import rouge_scorer
from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error, mean_squared_error

from shared.errors import DataFormatError
from shared.metrics import evaluate, example_score, rating_value, rouge_pair
from shared.tasks import get_task
from simulations.cli import main


# -- independent reference implementations -------------------------------------------------------
def ref_tokens(text: str) -> list[str]:
    """rouge-score's default tokenizer, rewritten: lowercase, non-[a-z0-9] to spaces, split."""
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).split()


def ref_lcs(a: list[str], b: list[str]) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def ref_f(overlap: int, n_pred: int, n_gold: int) -> float:
    if not overlap:
        return 0.0
    p, r = overlap / n_pred, overlap / n_gold
    return 2 * p * r / (p + r)


def ref_rouge(pred: str, gold: str) -> tuple[float, float]:
    p, g = ref_tokens(pred.strip()), ref_tokens(gold.strip())
    unigram = sum(min(p.count(t), g.count(t)) for t in set(p))
    return ref_f(unigram, len(p), len(g)), ref_f(ref_lcs(p, g), len(p), len(g))


def ref_classification(preds, golds, labels):
    index = {lab: i for i, lab in enumerate(labels)}
    p = [index.get(x.strip(), -1) for x in preds]
    g = [index.get(x.strip(), -1) for x in golds]
    return {
        "accuracy": accuracy_score(g, p),
        "f1": f1_score(g, p, labels=list(range(len(labels))), average="macro", zero_division=0),
    }


def ref_rating(preds, golds):
    values = []
    for p, g in zip(preds, golds):
        try:  # FedHydra's documented choice: "nan"/"inf" count as unparsable (official code would give NaN)
            value = float(p)
            if not math.isfinite(value):
                raise ValueError(p)
            values.append(value)
        except ValueError:
            values.append(1.0 if abs(1 - float(g)) > abs(5 - float(g)) else 5.0)
    y = [float(g) for g in golds]
    return {"MAE": mean_absolute_error(y, values), "RMSE": math.sqrt(mean_squared_error(y, values))}


# -- hand-computed values ---------------------------------------------------------------------------
def test_hand_computed_classification():
    t = get_task("LaMP-1")
    m = evaluate(t, {"a": "[1]", "b": "[1]", "c": "[2]", "d": "oops"}, {"a": "[1]", "b": "[2]", "c": "[2]", "d": "[1]"})
    # label [1]: tp=1 fp=1 fn=1 -> F1 0.5; label [2]: tp=1 fp=0 fn=1 -> 2/3
    assert m == pytest.approx({"accuracy": 0.5, "f1": (0.5 + 2 / 3) / 2})


def test_hand_computed_rating_with_official_worst_case():
    t = get_task("LaMP-3")
    m = evaluate(t, {"a": "5", "b": "x", "c": "4"}, {"a": "5", "b": "4", "c": "1"})
    # errors: 0, |1-4| = 3 (1 is farther from 4 than 5), 3
    assert m == pytest.approx({"MAE": 2.0, "RMSE": math.sqrt(6)})
    assert rating_value("", "3") == 5.0  # a tie goes to 5, as the official code does


def test_hand_computed_rouge():
    t = get_task("LaMP-7")
    m = evaluate(t, {"a": "the cat sat"}, {"a": "The cat sat down!"})
    assert m == pytest.approx({"rouge-1": 6 / 7, "rouge-L": 6 / 7})
    assert evaluate(t, {"a": "down sat cat the"}, {"a": "the cat sat down"})["rouge-L"] == pytest.approx(0.25)


def test_per_example_scores_rank_better_answers_higher():
    assert example_score(get_task("LaMP-3"), "4", "5") > example_score(get_task("LaMP-3"), "2", "5")
    assert example_score(get_task("LaMP-2N"), "sports", "sports") == 1.0
    assert example_score(get_task("LaMP-4"), "big news", "big news today") > example_score(
        get_task("LaMP-4"), "x", "big news today"
    )


# -- random agreement with the references, on every task type -------------------------------------------
WORDS = [
    "the",
    "a",
    "cat",
    "dog",
    "sat",
    "on",
    "mat",
    "big",
    "news",
    "today",
    "I",
    "love",
    "it",
    "can't",
    "won't",
    "café",
    "42",
    "emails",
    "subject",
]


def random_text(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 12))) + rng.choice(["", "!", " .", "  "])


def test_rouge_pair_equals_rouge_score_exactly():
    """rouge_pair reimplements rouge-score (no import of it on the device): equal, pair by pair, bit for bit."""
    rng = random.Random(7)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=False)
    odd = ["", "  ", "!!!", "İstanbul ÇA ß straße", "x\ny\tz", "a-b_c d.e", "ＡＢＣ 123", "naïve café"]
    pairs = [(random_text(rng), random_text(rng)) for _ in range(300)] + [(a, b) for a in odd for b in odd]
    for pred, gold in pairs:
        official = scorer.score(gold.strip(), pred.strip())
        assert rouge_pair(pred, gold) == (official["rouge1"].fmeasure, official["rougeL"].fmeasure), (pred, gold)


@pytest.mark.parametrize("seed", range(5))
def test_rouge_matches_rouge_score_and_a_from_scratch_lcs(seed):
    rng = random.Random(seed)
    preds = {str(i): random_text(rng) for i in range(40)}
    golds = {str(i): random_text(rng) or "x" for i in range(40)}
    ours = evaluate(get_task("LaMP-7"), preds, golds)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=False)
    official = [scorer.score(golds[k].strip(), preds[k].strip()) for k in golds]
    scratch = [ref_rouge(preds[k], golds[k]) for k in golds]
    assert ours["rouge-1"] == pytest.approx(sum(s["rouge1"].fmeasure for s in official) / 40)
    assert ours["rouge-L"] == pytest.approx(sum(s["rougeL"].fmeasure for s in official) / 40)
    assert ours["rouge-1"] == pytest.approx(sum(a for a, _ in scratch) / 40)
    assert ours["rouge-L"] == pytest.approx(sum(b for _, b in scratch) / 40)


def _random_case(task_name: str, rng: random.Random):
    spec = get_task(task_name)
    if spec.metric == "rouge":
        golds = {f"q{i}": random_text(rng) or "x" for i in range(30)}
        preds = {k: random_text(rng) for k in golds}
    else:
        pool = list(spec.labels) + ["garbage", " " + spec.labels[0] + " ", "nan", "3.5"]
        golds = {f"q{i}": rng.choice(spec.labels) for i in range(30)}
        preds = {k: rng.choice(pool) for k in golds}
    return spec, preds, golds


@pytest.mark.parametrize("task", ["LaMP-1", "LaMP-2", "LaMP-2N", "LaMP-3", "LaMP-4", "LaMP-5", "LaMP-6", "LaMP-7"])
def test_fedhydra_eval_cli_agrees_with_independent_references(tmp_path, capsys, task):
    spec, preds, golds = _random_case(task, random.Random(task))
    g = tmp_path / "golds.json"
    p = tmp_path / "preds.json"
    official_id = spec.official_id
    g.write_text(json.dumps({"task": official_id, "golds": [{"id": k, "output": v} for k, v in golds.items()]}))
    p.write_text(
        json.dumps({"task": official_id, "golds": [{"id": k, "output": v} for k, v in reversed(preds.items())]})
    )
    assert main(["eval", "--golds", str(g), "--preds", str(p)] + (["--task", task] if task == "LaMP-2N" else [])) == 0
    printed = json.loads(capsys.readouterr().out)
    keys = list(golds)
    if spec.metric == "classification":
        expected = ref_classification([preds[k] for k in keys], [golds[k] for k in keys], spec.labels)
    elif spec.metric == "rating":
        expected = ref_rating([preds[k] for k in keys], [golds[k] for k in keys])
    else:
        pairs = [ref_rouge(preds[k], golds[k]) for k in keys]
        expected = {"rouge-1": sum(a for a, _ in pairs) / len(keys), "rouge-L": sum(b for _, b in pairs) / len(keys)}
    assert printed == pytest.approx(expected)


def test_eval_detects_the_news_task_behind_lamp_2(tmp_path, capsys):
    golds = {"a": "sports", "b": "crime"}
    for name, data in (("g.json", golds), ("p.json", {"a": "sports", "b": "sports"})):
        (tmp_path / name).write_text(
            json.dumps({"task": "LaMP_2", "golds": [{"id": k, "output": v} for k, v in data.items()]})
        )
    assert main(["eval", "--golds", str(tmp_path / "g.json"), "--preds", str(tmp_path / "p.json")]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == 0.5


def test_eval_cli_reports_mismatched_ids(tmp_path, capsys):
    (tmp_path / "g.json").write_text(json.dumps({"task": "LaMP_3", "golds": [{"id": "1", "output": "5"}]}))
    (tmp_path / "p.json").write_text(json.dumps({"task": "LaMP_3", "golds": [{"id": "2", "output": "5"}]}))
    assert main(["eval", "--golds", str(tmp_path / "g.json"), "--preds", str(tmp_path / "p.json")]) == 2
    err = capsys.readouterr().err
    assert "p.json" in err and "1 missing" in err and "'1'" in err and "1 not in the golds" in err


def test_evaluate_rejects_mismatched_ids():
    with pytest.raises(DataFormatError):
        evaluate(get_task("LaMP-7"), {"a": "x"}, {"a": "x", "b": "y"})
