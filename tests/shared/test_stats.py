"""shared.stats: the paired bootstrap against hand-checked cases, and compare_runs using it."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pytest

from shared.errors import ConfigError, DataFormatError
from shared.stats import compare_predictions, paired_bootstrap
from shared.tasks import get_task


def test_constant_difference_has_a_point_interval():
    c = paired_bootstrap([-1.0, -2.0, 0.0, -1.0], [-0.5, -1.5, 0.5, -0.5])
    assert (c.n, c.wins, c.losses, c.ties) == (4, 4, 0, 0)
    assert c.mean == pytest.approx(0.5) and c.low == pytest.approx(0.5) and c.high == pytest.approx(0.5)
    assert c.significant


def test_two_questions_by_hand():
    # differences (1, 0): a resample's mean is 0, .5 or 1 with probability 1/4, 1/2, 1/4, so the 2.5% and
    # 97.5% percentiles are 0 and 1 and the interval includes zero
    c = paired_bootstrap([0.0, 3.0], [1.0, 3.0], resamples=4000, seed=3)
    assert (c.mean, c.low, c.high, c.wins, c.losses, c.ties) == (0.5, 0.0, 1.0, 1, 0, 1)
    assert not c.significant


def test_matches_the_percentile_bootstrap_it_replaced_and_is_seeded():
    rng = random.Random(7)
    a = [-float(rng.randint(0, 3)) for _ in range(60)]
    b = [-float(rng.randint(0, 2)) for _ in range(60)]
    c = paired_bootstrap(a, b, resamples=1000, seed=0)
    diffs = [y - x for x, y in zip(a, b)]
    ref = random.Random(0)
    means = sorted(sum(ref.choices(diffs, k=60)) / 60 for _ in range(1000))
    assert (c.low, c.high) == (means[25], means[974])
    assert c.low < c.mean < c.high
    assert paired_bootstrap(a, b, resamples=1000, seed=0) == c
    assert paired_bootstrap(a, b, resamples=1000, seed=1) != c
    assert c.wins + c.losses + c.ties == 60


def test_bad_inputs():
    with pytest.raises(ConfigError, match="differ in length"):
        paired_bootstrap([1.0], [1.0, 2.0])
    with pytest.raises(ConfigError, match="no paired scores"):
        paired_bootstrap([], [])


def test_rating_sign_convention_lower_error_is_positive():
    task = get_task("LaMP-3")
    golds = {"a": "5", "b": "4", "c": "1"}
    first = {"a": "3", "b": "4", "c": "2"}  # MAE 1.0
    second = {"a": "5", "b": "4", "c": "x"}  # MAE 4/3: "x" is unparsable, scored as 5 (the worst case for gold 1)
    c = compare_predictions(task, first, second, golds)  # second minus first: > 0 where second's error is lower
    assert c.mean == pytest.approx((2 + 0 - 3) / 3) and (c.wins, c.losses, c.ties) == (1, 1, 1)
    assert c.as_dict()["n"] == 3


def test_compare_runs_prints_the_module_result(tmp_path, monkeypatch, capsys):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
    try:
        import compare_runs
    finally:
        sys.path.pop(0)
    golds = {"task": "LaMP_3", "golds": [{"id": str(i), "output": str(1 + i % 5)} for i in range(20)]}
    first = {"task": "LaMP_3", "golds": [{"id": str(i), "output": "5"} for i in range(20)]}
    second = {"task": "LaMP_3", "golds": [{"id": str(i), "output": str(1 + i % 5)} for i in range(20)]}
    (tmp_path / "dev_outputs.json").write_text(json.dumps(golds))
    (tmp_path / "dev_questions.json").write_text("[]")
    (tmp_path / "a.json").write_text(json.dumps(first))
    (tmp_path / "b.json").write_text(json.dumps(second))
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "compare_runs",
            "--golds",
            str(tmp_path),
            "--task",
            "LaMP-3",
            str(tmp_path / "a.json"),
            str(tmp_path / "b.json"),
        ],
    )
    compare_runs.main()
    out = capsys.readouterr().out
    c = compare_predictions(
        get_task("LaMP-3"),
        {g["id"]: g["output"] for g in first["golds"]},
        {g["id"]: g["output"] for g in second["golds"]},
        {g["id"]: g["output"] for g in golds["golds"]},
    )
    assert c.mean == pytest.approx(2.0) and c.wins == 16 and c.losses == 0
    assert f"| 16 of 20 | 16 | 0 | {c.mean:+.4f} | [{c.low:+.4f}, {c.high:+.4f}] |" in out


def test_compare_runs_averages_the_runs_joined_by_plus(tmp_path, monkeypatch, capsys):
    """A side of several runs (seeds) scores each question by the mean of its runs' scores."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
    try:
        import compare_runs
    finally:
        sys.path.pop(0)
    ids = [str(i) for i in range(20)]
    gold = {i: "3" for i in ids}

    def write(name: str, outputs: dict[str, str]) -> str:
        (tmp_path / name).write_text(
            json.dumps({"task": "LaMP_3", "golds": [{"id": i, "output": o} for i, o in outputs.items()]})
        )
        return str(tmp_path / name)

    (tmp_path / "dev_questions.json").write_text("[]")
    write("dev_outputs.json", gold)
    base = write("base.json", {i: "5" for i in ids})  # error 2 on every question
    seed0 = write("s0.json", {i: "3" for i in ids})  # error 0
    seed1 = write("s1.json", {i: "4" if int(i) < 10 else "1" for i in ids})  # error 1 or 2
    monkeypatch.setattr(
        sys,
        "argv",
        ["compare_runs", "--golds", str(tmp_path), "--task", "LaMP-3", f"{base}+{base}", f"{seed0}+{seed1}"],
    )
    compare_runs.main()
    out = capsys.readouterr().out
    # per question: -2 against the mean of 0 and -1 (first 10) or of 0 and -2 (last 10): gains 1.5 and 1
    assert "| 20 of 20 | 20 | 0 | +1.2500 |" in out
    assert (
        f"| {tmp_path.name}/base.json+{tmp_path.name}/base.json | {tmp_path.name}/s0.json+{tmp_path.name}/s1.json |"
        in out
    )
    bad = write("bad.json", {i: "3" for i in ids[:-1]})
    monkeypatch.setattr(
        sys, "argv", ["compare_runs", "--golds", str(tmp_path), "--task", "LaMP-3", base, f"{seed0}+{bad}"]
    )
    with pytest.raises(DataFormatError, match="bad.json"):
        compare_runs.main()


def test_user_level_interval_resamples_users_and_is_wider_when_users_differ():
    """Six users, forty questions each, one user carrying the whole gain: the question-level interval excludes
    zero, the user-level one (users resampled, their questions kept together) does not, and the question-level
    figures are those of the plain call."""
    a = [0.0] * 240
    b = [1.0 if i < 40 else 0.0 for i in range(240)]
    groups = [f"u{i // 40}" for i in range(240)]
    plain = paired_bootstrap(a, b, resamples=2000, seed=0)
    c = paired_bootstrap(a, b, resamples=2000, seed=0, groups=groups)
    assert (c.n, c.mean, c.low, c.high) == (plain.n, plain.mean, plain.low, plain.high)
    assert plain.significant and c.users == 6
    assert c.user_low == 0.0 and c.user_high > plain.high  # a resample without u0 has no gain at all
    assert not c.significant
    assert c.as_dict()["user_interval"] == [round(c.user_low, 4), round(c.user_high, 4)]
    assert "users" not in plain.as_dict() and "u=6" in str(c)


def test_user_level_interval_by_hand_and_bad_groups():
    # two users with per-question differences (1, 1) and (0,): a resample draws {A, A}, {A, B}, {B, A} or {B, B}
    # with means 1, 2/3, 2/3, 0: the 2.5% and 97.5% percentiles are 0 and 1
    c = paired_bootstrap([0.0, 0.0, 0.0], [1.0, 1.0, 0.0], groups=["A", "A", "B"], resamples=4000, seed=1)
    assert (c.users, c.user_low, c.user_high) == (2, 0.0, 1.0)
    with pytest.raises(ConfigError, match="groups: 2"):
        paired_bootstrap([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], groups=["a", "b"])


def test_compare_predictions_takes_each_questions_user():
    task = get_task("LaMP-3")
    golds = {str(i): "5" for i in range(8)}
    first = {str(i): "4" for i in range(8)}
    second = {str(i): ("5" if i < 4 else "4") for i in range(8)}
    users = {str(i): f"u{i // 4}" for i in range(8)}
    c = compare_predictions(task, first, second, golds, users=users)
    assert c.users == 2 and c.user_low == 0.0 and c.user_high == 1.0
    assert compare_predictions(task, first, second, golds).users is None


def test_compare_runs_adds_the_user_level_interval_when_users_carry_several_questions(tmp_path, monkeypatch, capsys):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
    try:
        import compare_runs
    finally:
        sys.path.pop(0)
    n = 12
    questions = [
        {
            "id": str(i),
            "input": "What score?",
            "user_id": f"u{i % 3}",
            "profile": [{"text": "fine", "score": "4", "id": "p"}],
        }
        for i in range(n)
    ]
    golds = {"task": "LaMP_3", "golds": [{"id": str(i), "output": "4"} for i in range(n)]}
    first = {"task": "LaMP_3", "golds": [{"id": str(i), "output": "5"} for i in range(n)]}
    second = {"task": "LaMP_3", "golds": [{"id": str(i), "output": "4" if i % 3 == 0 else "5"} for i in range(n)]}
    for name, data in [
        ("dev_questions.json", questions),
        ("dev_outputs.json", golds),
        ("a.json", first),
        ("b.json", second),
    ]:
        (tmp_path / name).write_text(json.dumps(data))
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "compare_runs",
            "--golds",
            str(tmp_path),
            "--task",
            "LaMP-3",
            str(tmp_path / "a.json"),
            str(tmp_path / "b.json"),
        ],
    )
    compare_runs.main()
    out = capsys.readouterr().out
    users = {str(i): f"u{i % 3}" for i in range(n)}
    c = compare_predictions(
        get_task("LaMP-3"),
        {g["id"]: g["output"] for g in first["golds"]},
        {g["id"]: g["output"] for g in second["golds"]},
        {g["id"]: g["output"] for g in golds["golds"]},
        users=users,
    )
    assert c.users == 3 and c.user_low == 0.0  # a resample without u0 gains nothing
    assert "95% interval over users" in out
    assert f"| [{c.low:+.4f}, {c.high:+.4f}] | 3 | [{c.user_low:+.4f}, {c.user_high:+.4f}] |" in out
