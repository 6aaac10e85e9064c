from __future__ import annotations

import json
import statistics

import pytest

from shared.data import load_split
from shared.errors import ConfigError
from shared.style import STYLE_RULES, style_profile
from shared.synthetic import generate, write_synthetic


def test_same_seed_same_data_other_seed_other_data():
    a = generate("LaMP-3", n_users=4, items_per_user=10, seed=3)
    b = generate("LaMP-3", n_users=4, items_per_user=10, seed=3)
    c = generate("LaMP-3", n_users=4, items_per_user=10, seed=4)
    assert a == b and a[0] != c[0]


@pytest.mark.parametrize("task", ["LaMP-3", "LaMP-7"])
def test_written_files_load_with_the_official_loader(tmp_path, task):
    write_synthetic(tmp_path, task, n_users=5, items_per_user=8, questions_per_user=2, seed=1)
    ds = load_split(tmp_path, task)
    assert len(ds.questions) == 10 and len(ds.users()) == 5
    assert all(len(q.profile) == 8 for q in ds.questions)
    structure = json.loads((tmp_path / "structure.json").read_text())
    assert set(structure["users"]) == set(ds.users())


def test_rating_bias_is_visible_in_the_history():
    questions, _, truth = generate("LaMP-3", n_users=60, items_per_user=60, seed=0)
    by_bias = {-1: [], 0: [], 1: []}
    for q in questions:
        by_bias[truth["users"][q["user_id"]]["bias"]].append(statistics.fmean(int(p["score"]) for p in q["profile"]))
    assert statistics.fmean(by_bias[-1]) + 0.5 < statistics.fmean(by_bias[0]) < statistics.fmean(by_bias[1]) - 0.5


def test_rating_tastes_are_visible_per_topic():
    questions, _, truth = generate("LaMP-3", n_users=30, items_per_user=80, seed=2)
    gaps = []
    for q in questions:
        t = truth["users"][q["user_id"]]
        liked = [int(p["score"]) for p in q["profile"] if any(n in p["text"] for n in _nouns(t["likes"]))]
        disliked = [int(p["score"]) for p in q["profile"] if any(n in p["text"] for n in _nouns(t["dislikes"]))]
        if liked and disliked:
            gaps.append(statistics.fmean(liked) - statistics.fmean(disliked))
    assert statistics.fmean(gaps) > 1.0


def _nouns(topic):
    from shared.synthetic import TOPICS

    return TOPICS[topic]


def test_rewrite_quirks_are_visible_in_history_and_gold():
    questions, outputs, truth = generate("LaMP-7", n_users=40, items_per_user=30, seed=0)
    hits = total = 0
    for q in questions:
        profile = style_profile([p["text"] for p in q["profile"]])
        for rule in STYLE_RULES:
            if rule.name == "no-apostrophe":
                continue
            formal, informal = rule.counts(" ".join(p["text"] for p in q["profile"]))
            if formal + informal < 3:
                continue
            total += 1
            hits += (profile[rule.name] > 0.5) == (rule.name in truth["users"][q["user_id"]]["quirks"])
    assert total > 50 and hits / total > 0.95
    assert sum(o["output"] != q["input"].split(": ", 1)[1] for q, o in zip(questions, outputs["golds"])) > 30


def test_bad_arguments():
    with pytest.raises(ConfigError, match="LaMP-4"):
        generate("LaMP-4", n_users=1)
    with pytest.raises(ConfigError):
        generate("LaMP-3", n_users=0)
