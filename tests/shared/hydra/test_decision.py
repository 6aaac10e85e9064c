"""The decision rule and the margin rule: the baseline is left only past the margin, and the margin is the one
that gained most on held-out training questions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from shared.errors import ConfigError
from shared.hydra.candidates import anchors_for
from shared.hydra.decision import (
    CalibrationPoint,
    MarginChoice,
    MarginSums,
    advantage,
    anchor_margin_sums,
    choose_margin,
    decide,
    decide_with_margin,
    margin_sums,
)
from shared.hydra.examples import RoleExample
from shared.hydra.features import ADAPTER_FEATURES
from shared.tasks import get_task
from shared.training.calibrate import calibration_points, fold_users

LAMP3, LAMP7 = get_task("LaMP-3"), get_task("LaMP-7")
LABELS = ["1", "2", "3", "4", "5"]


def test_a_rating_advantage_is_the_expected_error_saved_and_zero_when_the_choice_is_the_baseline():
    scores = np.log(np.array([0.0001, 0.0001, 0.0001, 0.4997, 0.5]))
    choice = decide(LAMP3, LABELS, scores)
    assert choice == "4"  # the weighted median
    p = np.exp(scores) / np.exp(scores).sum()
    expected = sum(w * abs(float(t) - 5) for t, w in zip(LABELS, p)) - sum(
        w * abs(float(t) - 4) for t, w in zip(LABELS, p)
    )
    assert advantage(LAMP3, LABELS, scores, "4", "5") == pytest.approx(expected)
    assert advantage(LAMP3, LABELS, scores, "4", "4") == 0.0
    # the margin decides between the adapter's choice and the user's typical score
    assert decide_with_margin(LAMP3, LABELS, scores, baseline=4, margin=expected + 1e-6)[0] == "5"
    assert decide_with_margin(LAMP3, LABELS, scores, baseline=4, margin=expected - 1e-6)[0] == "4"


def test_without_a_baseline_or_a_margin_the_plain_choice_stands():
    scores = np.array([0.0, 2.0])
    assert decide_with_margin(LAMP7, ["in", "out"], scores, baseline=None, margin=0.5)[0] == "out"
    assert decide_with_margin(LAMP7, ["in", "out"], scores, baseline=0, margin=None)[0] == "out"
    assert decide_with_margin(LAMP7, ["in", "out"], scores, baseline=0, margin=math.inf)[0] == "in"


def test_the_chosen_margin_maximizes_the_held_out_gain_and_prefers_keeping_the_baseline_on_ties():
    points = [
        CalibrationPoint(0.9, +0.3),
        CalibrationPoint(0.4, -0.2),
        CalibrationPoint(0.2, +0.1),
        CalibrationPoint(0.05, -0.5),
    ]
    choice = choose_margin(points, grid=(0.0, 0.1, 0.3, 0.5, math.inf))
    assert choice.margin == 0.5 and (choice.left, choice.helped, choice.hurt) == (1, 1, 0)
    assert choice.gain == pytest.approx(0.3)
    assert {r["margin"]: r["left"] for r in choice.grid} == {0.0: 4, 0.1: 3, 0.3: 2, 0.5: 1, math.inf: 0}
    # every leave hurts: never leave; nothing to learn from: never leave
    assert choose_margin([CalibrationPoint(0.5, -0.1)]).margin == math.inf
    assert choose_margin([]).margin == math.inf
    assert choose_margin([CalibrationPoint(0.01, 0.2)], grid=(0.0, 0.02)).margin == 0.0


def test_calibration_points_score_the_adapters_choice_against_each_anchor_by_the_gold():
    ex = RoleExample(
        user="u",
        query="q",
        items=["input", "edit", "llm"],
        extras=np.zeros((3, len(ADAPTER_FEATURES)), np.float32),
        utilities=np.array([0.4, 0.6, 0.1], np.float32),
    )
    edits = {"edit-0.6": "edit", "edit-0.8": "edit", "edit-1": "input"}
    anchors = {"baseline": "input", "style": "input", **edits, **{f"style-{a}": t for a, t in edits.items()}}
    points = calibration_points(LAMP7, [ex], [anchors], [np.array([0.0, 1.0, -1.0])])
    assert list(points) == list(anchors_for(LAMP7)) == list(anchors)
    [base], [edit] = points["baseline"], points["edit-0.6"]
    assert base.gain == pytest.approx(0.2) and base.advantage > 0 and base.anchor_gain == 0
    # against the edit the adapter's choice (the edit itself) gains nothing; the edit gains 0.2 over the input
    assert edit.gain == 0 and edit.advantage == 0 and edit.anchor_gain == pytest.approx(0.2)
    # an anchor that is not a candidate gives no point for any anchor
    missing = {**anchors, "edit-1": "missing"}
    assert calibration_points(LAMP7, [ex], [missing], [np.array([0.0, 1.0, -1.0])]) == {a: [] for a in anchors}


def test_the_anchor_is_chosen_with_the_margin_only_when_it_gains_over_the_baseline():
    # keeping the edit gains 0.1 per question over the input; the adapter's choices lose against both
    points = {
        "baseline": [CalibrationPoint(0.5, -0.05)] * 4,
        "edit-1": [CalibrationPoint(0.5, -0.15, anchor_gain=0.1)] * 4,
    }
    choice = choose_margin(points, grid=(0.0, 1.0))
    assert (choice.anchor, choice.margin, choice.gain) == ("edit-1", 1.0, pytest.approx(0.4))
    assert choice.anchors_tried() == ("baseline", "edit-1")
    # a margin saved before anchors existed (its grid rows name none) was chosen over no anchor: a resumed run
    # (simulations/hydra_run.py) must choose again rather than reuse it
    old = {
        "margin": 0.05,
        "points": 1,
        "left": 1,
        "helped": 1,
        "hurt": 0,
        "gain": 0.1,
        "grid": [{"margin": 0.05, "left": 1, "helped": 1, "hurt": 0, "gain": 0.1}],
    }
    assert MarginChoice.from_dict(old).anchors_tried() == () and MarginChoice.from_dict(old).anchor == "baseline"
    assert MarginChoice.from_dict(choice.as_dict()) == choice
    # an edit that loses to the input is never the anchor, and a tie keeps the baseline
    worse = {"baseline": [CalibrationPoint(0.5, 0.0)], "edit-1": [CalibrationPoint(0.5, 0.0, anchor_gain=-0.1)]}
    assert choose_margin(worse, grid=(0.0, 1.0)).anchor == "baseline"
    tie = {"baseline": [CalibrationPoint(0.5, 0.0)], "edit-1": [CalibrationPoint(0.5, 0.0, anchor_gain=0.0)]}
    assert choose_margin(tie, grid=(0.0, 1.0)).anchor == "baseline"
    # round trip through the wire record, which has one block of margins per anchor
    sums = anchor_margin_sums(points, grid=(0.0, 1.0))
    record = sums.to_record()
    assert len(record) == 1 + 4 * 2 * 2
    assert MarginSums.from_record(record, grid=(0.0, 1.0), anchors=("baseline", "edit-1")) == sums
    with pytest.raises(ValueError, match="other keys"):
        MarginSums.from_record(record, grid=(0.0, 1.0))  # the server expects the task's anchors
    with pytest.raises(ValueError, match="different grids"):
        sums + margin_sums(points["baseline"], grid=(0.0, 1.0))
    with pytest.raises(ValueError, match="different numbers of points"):
        anchor_margin_sums({"baseline": points["baseline"], "edit-1": points["edit-1"][:2]})


def test_folds_partition_the_training_users_and_need_two():
    users = [f"u{i}" for i in range(7)]
    groups = fold_users(users, 3, seed=1)
    assert sorted(u for g in groups for u in g) == sorted(users) and len(groups) == 3
    assert max(map(len, groups)) - min(map(len, groups)) <= 1
    assert fold_users(users, 3, seed=1) == groups
    with pytest.raises(ConfigError, match="pool.margin-folds"):
        fold_users(users, 1, seed=0)


def _random_points(rng: np.random.Generator, n: int) -> list[CalibrationPoint]:
    points = []
    for _ in range(n):
        adv = float(rng.choice([rng.uniform(0, 1), 0.0, 0.1, 0.5, float("nan")], p=[0.7, 0.1, 0.1, 0.05, 0.05]))
        gain = float(rng.choice([rng.normal(0, 0.3), 0.0], p=[0.8, 0.2]))
        points.append(CalibrationPoint(adv, gain))
    return points


@pytest.mark.parametrize("seed", range(20))
def test_margin_sums_of_clients_added_up_choose_what_the_union_of_their_points_chooses(seed):
    """The federated margin: each client sums its points per margin, the server adds the sums (through the wire
    record) and chooses; that is choose_margin of all the points together."""
    rng = np.random.default_rng(seed)
    points = _random_points(rng, int(rng.integers(0, 60)))
    clients = int(rng.integers(1, 6))
    owner = rng.integers(0, clients, size=len(points))
    parts = [[p for p, o in zip(points, owner) if o == c] for c in range(clients)]
    total = MarginSums.zero()
    for part in parts:
        total = total + MarginSums.from_record(margin_sums(part).to_record())
    union = choose_margin(points)
    chosen = total.choose()
    assert chosen.margin == union.margin
    assert (chosen.points, chosen.left, chosen.helped, chosen.hurt) == (
        union.points,
        union.left,
        union.helped,
        union.hurt,
    )
    assert chosen.gain == pytest.approx(union.gain, abs=1e-9)
    assert [(r["margin"], r["left"], r["helped"], r["hurt"]) for r in chosen.grid] == [
        (r["margin"], r["left"], r["helped"], r["hurt"]) for r in union.grid
    ]
    assert [r["gain"] for r in chosen.grid] == pytest.approx([r["gain"] for r in union.grid], abs=1e-9)


def test_choose_margin_is_the_choice_from_its_own_sums():
    points = _random_points(np.random.default_rng(7), 40)
    assert choose_margin(points) == margin_sums(points).choose()
    assert margin_sums([]).choose().margin == math.inf and MarginSums.zero().choose().margin == math.inf
    with pytest.raises(ValueError, match="different grids"):
        margin_sums(points, grid=(0.0, 1.0)) + margin_sums(points)


@pytest.mark.parametrize(
    "change, reason",
    [
        (lambda r: r.pop("gain/3"), "missing"),
        (lambda r: r.update({"user": 1}), "extra"),
        (lambda r: r.update({"gain/0": float("nan")}), "not finite"),
        (lambda r: r.update({"gain/1": float("inf")}), "not finite"),
        (lambda r: r.update({"points": -1}), "count"),
        (lambda r: r.update({"left/0": 2.5}), "count"),
        (lambda r: r.update({"hurt/0": True}), "not a number"),
        (lambda r: r.update({"helped/0": "3"}), "not a number"),
        (lambda r: r.update({"left/0": 999}), "<= points"),
        (lambda r: r.update({"helped/2": r["left/2"] + 1}), "<= left"),
        (lambda r: r.update({"left/4": r["left/3"] + 1, "points": 999}), "grows"),
    ],
)
def test_a_margin_record_is_checked_before_it_is_added(change, reason):
    points = [CalibrationPoint(a, g) for a, g in [(0.9, 0.3), (0.4, -0.2), (0.2, 0.1), (0.05, -0.5), (0.6, 0.0)]]
    record = margin_sums(points).to_record()
    assert MarginSums.from_record(dict(record)) == margin_sums(points)
    change(record)
    with pytest.raises(ValueError, match=reason):
        MarginSums.from_record(record)


def test_how_many_llm_answers_to_ask_is_chosen_with_the_anchor_and_fewer_calls_win_ties():
    from shared.hydra.decision import anchor_margin_sums, decision_key, split_decision

    same = [CalibrationPoint(0.5, 0.1), CalibrationPoint(0.5, -0.05)]
    tie = anchor_margin_sums({decision_key("baseline", c): same for c in (0, 1, 2)}, grid=(0.0, 1.0)).choose()
    assert (tie.anchor, tie.llm_calls, tie.margin) == ("baseline", 0, 0.0)  # the same gain: no call is asked
    # the LLM's answers add a helping choice on the second question: worth one call, not two
    one = [CalibrationPoint(0.5, 0.1), CalibrationPoint(0.5, 0.2)]
    paid = anchor_margin_sums({"baseline@0": same, "baseline@1": one, "baseline@2": one}, grid=(0.0, 1.0)).choose()
    assert (paid.llm_calls, paid.gain) == (1, pytest.approx(0.3))
    assert MarginChoice.from_dict(paid.as_dict()) == paid and split_decision("edit-0.6") == ("edit-0.6", None)


def test_held_out_points_score_each_llm_answer_count_with_the_same_questions():
    """One user against a frozen base: with ``calls`` every decision (anchor @ count) gets one point per question, and
    with no LLM answer the adapter can only choose among the LLM-free candidates."""
    from shared.hydra.candidates import anchors_for
    from shared.hydra.context import UserContext
    from shared.hydra.episodes import Episode
    from shared.hydra.settings import TrainConfig
    from shared.training.calibrate import held_out_points
    from shared.training.model import HydraBase, ModelConfig
    from shared.training.train import Trainer

    task = LAMP7
    history = [
        {"id": str(i), "text": t} for i, t in enumerate(["u r gr8", "see u tmrw lol", "thx so much", "omg yes"] * 3)
    ]
    ctx = UserContext.build(task, history)
    episodes = [
        Episode(
            qid=f"q{i}",
            input=task.instruction + q,
            query=q,
            gold=g,
            corpus=tuple(history),
            top=[0, 1],
            bm25=[1.0, 0.5],
            greedy=f"{g} for real",
            samples=[f"{q} ok"],
        )
        for i, (q, g) in enumerate(
            [
                ("Thank you so much, see you tomorrow", "thx so much see u tmrw"),
                ("You are really great", "u r gr8"),
                ("Oh my god yes, I really agree", "omg yes"),
                ("See you tomorrow at the game", "see u tmrw lol"),
            ]
        )
    ]
    trainer = Trainer(HydraBase(ModelConfig()), TrainConfig(epochs=1))
    plain = held_out_points(task, trainer, "u", ctx, episodes)
    by_calls = held_out_points(task, trainer, "u", ctx, episodes, calls=(0, 1, 2))
    assert list(plain) == list(anchors_for(task))
    assert list(by_calls) == [f"{a}@{c}" for c in (0, 1, 2) for a in anchors_for(task)]
    assert {len(p) for p in by_calls.values()} == {len(plain["baseline"])} and len(plain["baseline"]) == 4
    # the whole pool scores as without calls; the anchors' own gains do not depend on the calls
    assert [(p.gain, p.anchor_gain) for p in by_calls["edit-1@2"]] == [(p.gain, p.anchor_gain) for p in plain["edit-1"]]
    assert [p.anchor_gain for p in by_calls["style@0"]] == [p.anchor_gain for p in by_calls["style@2"]]
