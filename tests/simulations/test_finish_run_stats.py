"""finish_run adds paired bootstrap intervals (shared.stats) to the summary."""

from __future__ import annotations

import json

from shared.evaluation import Predictions
from shared.stats import compare_predictions
from shared.tasks import get_task
from simulations.hydra_run import finish_run


def test_finish_run_reports_paired_intervals(tmp_path):
    task = get_task("LaMP-3")
    ids = [f"q{i}" for i in range(30)]
    golds = {q: str(1 + i % 5) for i, q in enumerate(ids)}
    by_method = {
        "majority": {q: "5" for q in ids},
        "user-mean": {q: "4" for q in ids},  # MAE 1.2, the strongest baseline (majority: 2.0)
        "hydra-shared-head": {q: "3" for q in ids},
        "hydra": {q: (golds[q] if i % 3 else "5") for i, q in enumerate(ids)},
    }
    preds = Predictions(
        by_method=by_method,
        seconds={m: 0.0 for m in by_method},
        calls={m: 0 for m in by_method},
        failures={m: 0 for m in by_method},
    )
    summary = finish_run(task, preds, golds, tmp_path, title="t", summary={})
    paired = summary["paired_bootstrap"]
    assert set(paired) == {"hydra vs user-mean", "hydra-shared-head vs user-mean", "hydra vs hydra-shared-head"}
    assert summary["strongest_baseline"] == "user-mean"
    expected = compare_predictions(task, by_method["user-mean"], by_method["hydra"], golds).as_dict()
    assert paired["hydra vs user-mean"] == expected and expected["n"] == 30
    shared = compare_predictions(task, by_method["hydra-shared-head"], by_method["hydra"], golds)
    assert paired["hydra vs hydra-shared-head"]["mean_difference"] == round(shared.mean, 4) > 0
    assert json.loads((tmp_path / "summary.json").read_text())["paired_bootstrap"] == paired


def test_finish_run_adds_the_user_level_interval_where_users_ask_several_questions(tmp_path):
    """Three users with ten questions each (as LaMP-3's timeline split): the comparisons also resample users; with
    one question per user they stay question-level only."""
    task = get_task("LaMP-3")
    ids = [f"q{i}" for i in range(30)]
    golds = {q: str(1 + i % 5) for i, q in enumerate(ids)}
    by_method = {
        "user-mean": {q: "4" for q in ids},
        "hydra": {q: (golds[q] if i < 10 else "4") for i, q in enumerate(ids)},
    }
    preds = Predictions(
        by_method=by_method,
        seconds={m: 0.0 for m in by_method},
        calls={m: 0 for m in by_method},
        failures={m: 0 for m in by_method},
    )
    users = {q: f"u{i // 10}" for i, q in enumerate(ids)}
    summary = finish_run(task, preds, golds, tmp_path / "a", title="t", summary={}, users=users)
    row = summary["paired_bootstrap"]["hydra vs user-mean"]
    expected = compare_predictions(task, by_method["user-mean"], by_method["hydra"], golds, users=users)
    assert row == expected.as_dict() and row["users"] == 3 and row["user_interval"][0] == 0.0
    assert "95% interval over users" in (tmp_path / "a" / "metrics.md").read_text()
    single = finish_run(task, preds, golds, tmp_path / "b", title="t", summary={}, users={q: q for q in ids})
    assert "user_interval" not in single["paired_bootstrap"]["hydra vs user-mean"]
    assert "over users" not in (tmp_path / "b" / "metrics.md").read_text()


def test_a_rewrite_tasks_table_gives_each_methods_broken_share_and_the_readable_comparison(tmp_path):
    """LaMP-7: the broken column counts answers that delete words grammar needs; the "(readable)" comparison scores
    HYDRA with its broken answers replaced by the input."""
    task = get_task("LaMP-7")
    inputs = {
        "q0": "My printer is fixed and now we can print.",
        "q1": "I am so tired today.",
        "q2": "I really love you.",
        "q3": "See you at the game tonight.",
    }
    golds = {"q0": "My is and now we print", "q1": "so tired today", "q2": "love u", "q3": "see u at the game"}
    by_method = {
        "input": dict(inputs),
        "hydra": {
            "q0": "My is and now we print.",
            "q1": "so tired today",
            "q2": "I love u.",
            "q3": "see u at the game tonight",
        },
    }
    preds = Predictions(
        by_method=by_method,
        seconds={m: 0.0 for m in by_method},
        calls={m: 0 for m in by_method},
        failures={m: 0 for m in by_method},
    )
    summary = finish_run(task, preds, golds, tmp_path, title="t", summary={}, inputs=inputs)
    rows = {r["method"]: r for r in json.loads((tmp_path / "metrics.json").read_text())["rows"]}
    assert rows["input"]["broken"] == 0 and rows["hydra"]["broken"] == 0.25
    readable = {**by_method["hydra"], "q0": inputs["q0"]}
    expected = compare_predictions(task, by_method["input"], readable, golds).as_dict()
    assert summary["paired_bootstrap"]["hydra (readable) vs input"] == expected
    assert summary["paired_bootstrap"]["hydra vs input"]["mean_difference"] > expected["mean_difference"]
    assert "broken" in (tmp_path / "metrics.md").read_text()
