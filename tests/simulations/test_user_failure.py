"""Issue 28, item 16 (the run's side): one user's failure costs that user, not the run.

A real LaMP-7 user whose store could not be read made ``fedhydra run`` over 150 new users exit 2 after 35 minutes
with no outputs at all. Here one test user's store is damaged by the test itself (its folder replaced by a file, so
the case does not depend on what the store's format is): the others' answers are written, the failure is counted
and named (stderr, ``summary.json``, ``metrics.json``), the metrics say over how many users they were computed, and
the exit status is 3 (``simulations.failures.EXIT_USERS_FAILED``: outputs written, some users failed).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from client.store import UserStore
from lab.llm_stub import StubEndpoint
from shared.config import RunConfig, default_mapping
from shared.data import load_outputs, load_split
from shared.synthetic import write_synthetic
from shared.users import split_users
from simulations.cli import main
from simulations.federated import collect

EXIT_USERS_FAILED = 3
"""Outputs written, some users failed (``simulations.failures.EXIT_USERS_FAILED``)."""


def damage_store(root: Path, user: str, task: str) -> None:
    """Replace ``user``'s store folder by a file: whatever the store keeps inside, it can be neither read nor
    written (what a botched copy or a full disk's half-written restore leaves)."""
    path = UserStore(root, user, task=task).path
    shutil.rmtree(path)
    path.write_text("not a store\n")


def split(data: Path, train: int, test: int):
    dataset = load_split(data, "LaMP-7")
    return dataset, *split_users(dataset, train_users=train, test_users=test, protocol="disjoint")


@pytest.mark.slow  # a whole centralized run (training, ONNX export, answering): about half a minute
def test_fedhydra_run_survives_one_users_damaged_store(tmp_path, capsys):
    data = write_synthetic(tmp_path / "data", "LaMP-7", n_users=5, items_per_user=8, seed=2)
    dataset, _, test = split(data, 2, 3)
    victim = test[1].user_id
    out = tmp_path / "out"
    damage_store(out / "clients", victim, "LaMP-7")
    with StubEndpoint(delay_s=0.0) as stub:
        status = main(
            [
                "run",
                "--out",
                str(out),
                "--data",
                str(data),
                "--task",
                "LaMP-7",
                "--train-users",
                "2",
                "--test-users",
                "3",
                "--llm-url",
                stub.url,
                "--llm-model",
                "stub",
                "--llm-cache",
                str(tmp_path / "cache.sqlite"),
                "--run-config",
                "train.epochs=1 train.head-epochs=2 train.fit-steps=20 train.lora=false",
            ]
        )
    captured = capsys.readouterr()
    assert status == EXIT_USERS_FAILED, captured.err[-2000:]
    last = captured.err.strip().splitlines()[-1]
    assert last.startswith("fedhydra run: 1 of 5 users failed: ") and victim in last and "answer" in last

    summary = json.loads((out / "summary.json").read_text())
    failed = summary["failed_users"]
    assert failed["count"] == 1 and [f["user"] for f in failed["users"]] == [victim]
    assert failed["users"][0]["stage"] == "answer" and failed["users"][0]["error"]
    assert summary["test_users"] == 3 and summary["scored_test_users"] == 2
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["failed_users"] == failed and metrics["scored_test_users"] == 2
    # the others' answers are written, and only theirs
    others = {q.id for u in test if u.user_id != victim for q in u.questions}
    for name in ("hydra", "input"):
        _, answers = load_outputs(out / f"{name}_outputs.json")
        assert set(answers) == others
    assert "2 test users (1 failed)" in (out / "metrics.md").read_text()


def test_every_test_user_failing_is_an_error(tmp_path):
    from simulations.failures import EXIT_USERS_FAILED as documented
    from simulations.failures import EveryUserFailed, UserFailures

    assert documented == EXIT_USERS_FAILED
    failures = UserFailures()
    failures.guard(lambda u: 1 / 0, "answer")("u1")
    failures.check_some_left(["u1", "u2"], "test users")  # one left: fine
    failures.guard(lambda u: 1 / 0, "answer")("u2")
    with pytest.raises(EveryUserFailed, match="every one of the 2 test users failed"):
        failures.check_some_left(["u1", "u2"], "test users")


def test_a_simulation_gathers_the_others_when_one_test_clients_store_is_damaged(tmp_path):
    """``fedhydra simulate``'s last step (:func:`simulations.federated.collect`) reads each test client's stored
    predictions: a client whose store cannot be read is counted and named, the others are scored."""
    data = write_synthetic(tmp_path / "data", "LaMP-7", n_users=5, items_per_user=6, seed=3)
    dataset, _, test = split(data, 2, 3)
    cfg = RunConfig.from_mapping(
        {**default_mapping(), "data.task": "LaMP-7", "data.dir": str(data), "data.train-users": 2, "data.test-users": 3}
    )
    store_dir, out = tmp_path / "clients", tmp_path / "out"
    out.mkdir()
    victim = test[0].user_id
    for user in test:
        answers = {q.id: dataset.golds[q.id] for q in user.questions}
        UserStore(store_dir, user.user_id, task="LaMP-7").write_predictions(
            {
                "by_method": {"input": {k: "x" for k in answers}, "hydra": answers},
                "seconds": {"input": 0.1, "hydra": 0.2},
                "calls": {"input": 0, "hydra": 1},
            }
        )
    damage_store(store_dir, victim, "LaMP-7")
    summary = collect(
        cfg,
        dataset,
        out,
        store_dir,
        summary={"task": "LaMP-7", "train_users": 2, "free_train_users": 0, "test_users": 3},
    )
    assert summary["failed_users"]["count"] == 1
    assert [f["user"] for f in summary["failed_users"]["users"]] == [victim]
    assert summary["scored_test_users"] == 2
    others = {q.id for u in test if u.user_id != victim for q in u.questions}
    _, answers = load_outputs(out / "fed-hydra_outputs.json")
    assert set(answers) == others
    assert json.loads((out / "summary.json").read_text())["failed_users"] == summary["failed_users"]
