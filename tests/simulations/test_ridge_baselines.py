"""The ridge baselines (shared/baselines.py) run by ``fedhydra baseline`` (simulations/baseline.py), with a fake
embedder in place of shared/training/text_embedder.py (the ridge itself: tests/shared/test_ridge.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from shared.data import load_split
from shared.metrics import evaluate
from shared.training import text_embedder
from simulations.baseline import run_baselines, select_users


class FakeEmbedder:
    """Texts are "f=<a>,<b>,<c>": their embedding is that vector (no model needed)."""

    def __init__(self, *args, **kwargs):
        self.calls = 0

    def __call__(self, texts):
        self.calls += len(texts)
        return np.array([[float(v) for v in t.split("=", 1)[1].split(",")] for t in texts]).reshape(len(texts), 3)


def planted(tmp_path, n=80):
    """Three users whose score is linear in the text's vector; the last one's relation is the reverse."""
    rng = np.random.default_rng(0)
    users = []
    for u, sign in enumerate([1.0, 1.0, -1.0]):
        items = []
        for i in range(n):
            v = rng.normal(size=3)
            score = int(np.clip(np.rint(3 + sign * 1.6 * v[0] + 0.2 * v[1]), 1, 5))
            items.append({"id": f"u{u}_h{i}", "text": "f=" + ",".join(f"{a:.5f}" for a in v), "score": str(score)})
        users.append({"user": f"u{u}", "items": items})
    (tmp_path / "user_histories.json").write_text(json.dumps(users))
    return load_split(tmp_path, "LaMP-3", "timeline", timeline_questions=20)


def test_planted_linear_users(tmp_path, monkeypatch):
    monkeypatch.setattr(text_embedder, "TextEmbedder", FakeEmbedder)
    ds = planted(tmp_path)
    results = {
        r.name: r
        for r in run_baselines(ds, ds.questions, ["user-mean", "user-ridge", "global-ridge"], llm=None, progress=False)
    }
    golds = ds.golds
    assert all(p in {"1", "2", "3", "4", "5"} for r in results.values() for p in r.predictions.values())
    assert results["user-ridge"].metrics["MAE"] < 0.5 * results["user-mean"].metrics["MAE"]
    reverse = [q.id for q in ds.questions if q.user_id == "u2"]

    def mae(name):
        return evaluate(ds.task, {i: results[name].predictions[i] for i in reverse}, {i: golds[i] for i in reverse})[
            "MAE"
        ]

    # global-ridge learns from the other two users, whose relation is the reverse of u2's: it fails u2
    assert mae("user-ridge") < 0.5 and mae("global-ridge") > mae("user-mean") > mae("user-ridge")


def test_user_ridge_uses_only_the_earlier_reviews(tmp_path, monkeypatch):
    monkeypatch.setattr(text_embedder, "TextEmbedder", FakeEmbedder)
    ds = planted(tmp_path)
    (before,) = run_baselines(ds, ds.questions, ["user-ridge"], llm=None, progress=False)
    # rewrite every question's own review score (its gold) and the later ones: no prediction may change
    raw = json.loads((tmp_path / "user_histories.json").read_text())
    for user in raw:
        for item in user["items"][-20:]:
            item["score"] = "1" if item["score"] != "1" else "5"
    (tmp_path / "user_histories.json").write_text(json.dumps(raw))
    changed = load_split(tmp_path, "LaMP-3", "timeline", timeline_questions=20)
    first = {
        u: min(qs, key=lambda q: len(q.profile)).id
        for u, qs in [(u, [q for q in changed.questions if q.user_id == u]) for u in changed.users()]
    }
    (after,) = run_baselines(changed, changed.questions, ["user-ridge"], llm=None, progress=False)
    assert all(after.predictions[i] == before.predictions[i] for i in first.values())
    assert after.predictions != before.predictions  # later questions do see the earlier (changed) reviews


def test_global_ridge_without_other_users_answers_the_majority(tmp_path, monkeypatch):
    monkeypatch.setattr(text_embedder, "TextEmbedder", FakeEmbedder)
    ds = planted(tmp_path)
    one = select_users(ds, 1)
    majority, glob = run_baselines(ds, one, ["majority", "global-ridge"], llm=None, progress=False)
    assert glob.predictions == majority.predictions


@pytest.mark.slow
def test_real_user_quick(lamp_data):
    """One real user (405 reviews), their last 6 as questions, with the real encoder: valid ratings, one
    embedding per distinct text, and no worse than the user's mean by more than one question's worth."""
    ds = load_split(lamp_data / "lamp3", "LaMP-3", "timeline", timeline_questions=6)
    questions = select_users(ds, 1)
    mean, user = run_baselines(ds, questions, ["user-mean", "user-ridge"], llm=None, progress=False)
    assert len(user.predictions) == 6 and set(user.predictions.values()) <= {"1", "2", "3", "4", "5"}
    assert user.metrics["MAE"] <= mean.metrics["MAE"] + 1 / 6 + 1e-9
