"""A real Flower simulation of federated HYDRA: what leaves a client, and surviving bad clients."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.protocol import FAULT_COUNTERS
from shared.config import default_mapping
from shared.hydra.model import ModelConfig, initial_shared_state
from simulations.federated import simulate

pytestmark = [pytest.mark.slow, pytest.mark.llm]

SMALL = {"task": "LaMP-7", "synthetic-users": 5, "synthetic-items": 10, "train-users": 4, "test-users": 1,
         "num-rounds": 1, "pseudo-questions": 1, "free-questions": 2, "n-samples": 1, "label-records": 2, "epochs": 1,
         "local-epochs": 1,
         "min-train-nodes": 2}
TRAIN_METRICS = {"num-examples", "train-loss", "llm-calls", "seconds", *FAULT_COUNTERS}


def run(tmp: Path, monkeypatch, llm_config, **overrides) -> tuple[dict, list[dict]]:
    audit = tmp / "audit"
    monkeypatch.setenv("FEDHYDRA_AUDIT_DIR", str(audit))
    summary = simulate({**default_mapping(), **SMALL, **overrides}, tmp / "out", llm_config=llm_config,
                       progress=lambda s: None)
    records = [json.loads(line) for f in sorted(audit.glob("*.jsonl")) for line in f.read_text().splitlines()]
    return summary, records


@pytest.fixture(scope="module")
def faulty_run(tmp_path_factory, llm_server):
    from shared.llm.embedded import embedded_config

    mp = pytest.MonkeyPatch()
    tmp = tmp_path_factory.mktemp("federated")
    mp.setenv("FEDHYDRA_HOME", str(tmp / "home"))
    mp.setenv("FEDHYDRA_FAULTS", json.dumps({"0": "raise", "1": "nan"}))
    try:
        yield run(tmp, mp, embedded_config(llm_server.url))
    finally:
        mp.undo()


def test_run_survives_a_raising_client_and_a_malformed_update(faulty_run):
    summary, _ = faulty_run
    assert summary["status"] == "finished:completed"
    assert summary["failed_clients"] == 1 and summary["rejected_replies"] == 1
    rounds = summary["round_table"].splitlines()
    assert rounds[2].split("|")[3].strip() == "2"  # two clients accepted in round 1
    assert summary["test_users_without_predictions"] == []


def test_privacy_audit_only_shared_tensors_and_numbers_leave_clients(faulty_run):
    _, records = faulty_run
    shared_keys = set(initial_shared_state(ModelConfig(), 0))
    kinds = {r["type"] for r in records}
    assert {"query", "train", "evaluate"} <= kinds
    trains = [r for r in records if r["type"] == "train" and "error" not in r]
    assert len(trains) == 3  # the raising client sent an error, no content
    for r in records:
        if "error" in r:
            assert "injected failure" in r["error"]
            continue
        for name, rec in r["records"].items():
            if rec["kind"] == "arrays":
                assert r["type"] == "train"
                assert set(rec["tensors"]) == shared_keys  # exactly the shared base, no head.*, nothing else
                assert all(dtype == "float32" for _, dtype in rec["tensors"].values())
            elif rec["kind"] == "metrics":
                assert all(isinstance(v, (int, float)) for v in rec["items"].values())
                if r["type"] == "train":
                    assert set(rec["items"]) <= TRAIN_METRICS
                else:
                    assert all(k in ("num-examples", "llm-calls", "seconds", *FAULT_COUNTERS) or "/" in k
                               for k in rec["items"])
            else:
                assert r["type"] == "query" and rec["items"] == {"role": rec["items"]["role"]}
                assert rec["items"]["role"] in ("train", "test")


def test_results_match_the_centralized_layout(faulty_run, tmp_path):
    summary, _ = faulty_run
    assert summary["bytes_up_per_client_round"] <= 500_000
    assert summary["bytes_up_per_client_round"] < summary["full_model_bytes"] / 100
    assert "fed-hydra" in summary["table"] and "input" in summary["table"]


def test_metrics_can_stay_on_the_device(tmp_path, monkeypatch, llm_server):
    from shared.llm.embedded import embedded_config

    monkeypatch.setenv("FEDHYDRA_HOME", str(tmp_path / "home"))
    summary, records = run(tmp_path, monkeypatch, embedded_config(llm_server.url), **{"report-metrics": False,
                                                                                        "train-users": 2})
    evaluations = [r for r in records if r["type"] == "evaluate"]
    assert evaluations
    for r in evaluations:
        assert set(r["records"]["metrics"]["items"]) == {"num-examples"}
    assert "fed-hydra" in summary["table"]  # scored from the predictions kept on the device
