"""A real Flower simulation of federated HYDRA: what leaves a client, surviving bad clients, and the decision margin
chosen by the training clients (against the deterministic stub endpoint: no language model needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.faults.app import fault_app
from lab.small_runs import SMALL_FEDERATION
from shared.config import RunConfig, default_mapping
from shared.hydra.candidates import decision_keys
from shared.hydra.decision import MarginSums
from shared.protocol import ERROR_FAILED, ERROR_REPLIES, FAULT_COUNTERS
from shared.tasks import get_task
from shared.training.model import ModelConfig, initial_shared_state
from simulations.federated import production_app, simulate

pytestmark = [pytest.mark.slow]  # the tests on the real embedded LLM are marked `llm` one by one

SMALL = {
    "data.task": "LaMP-7",
    "data.synthetic-users": 5,
    "data.synthetic-items": 10,
    "data.train-users": 4,
    "data.test-users": 1,
    "federation.num-rounds": 1,
    "pool.pseudo-questions": 1,
    "pool.free-questions": 2,
    "pool.n-samples": 1,
    "pool.label-records": 2,
    "train.epochs": 1,
    "federation.local-epochs": 1,
    "federation.min-train-nodes": 2,
    "eval.methods": "all",
}
TRAIN_METRICS = {"num-examples", "train-loss", "llm-calls", "seconds", *FAULT_COUNTERS}


def decisions(overrides: dict) -> tuple[str, ...]:
    """The margin's decisions of a run of these settings: one block of margins per anchor and LLM answer count."""
    cfg = RunConfig.from_mapping({**default_mapping(), **SMALL, **overrides})
    return decision_keys(get_task(cfg.task), cfg.pool)


def run(tmp: Path, monkeypatch, llm_config, app=production_app, **overrides) -> tuple[dict, list[dict]]:
    audit = tmp / "audit"
    monkeypatch.setenv("FEDHYDRA_AUDIT_DIR", str(audit))
    summary = simulate(
        RunConfig.from_mapping({**default_mapping(), **SMALL, **overrides}),
        tmp / "out",
        llm_config=llm_config,
        progress=lambda s: None,
        app=app,
    )
    records = [json.loads(line) for f in sorted(audit.glob("*.jsonl")) for line in f.read_text().splitlines()]
    return summary, records


@pytest.fixture(scope="module")
def faulty_run(tmp_path_factory, llm_server):
    from shared.llm.embedded import embedded_config

    mp = pytest.MonkeyPatch()
    tmp = tmp_path_factory.mktemp("federated")
    mp.setenv("FEDHYDRA_HOME", str(tmp / "home"))
    try:  # the environment variables end with this run: the module's other runs must not inherit them
        result = run(tmp, mp, embedded_config(llm_server.url), app=fault_app({"0": "raise", "1": "nan"}))
    finally:
        mp.undo()
    yield result


@pytest.mark.llm
def test_run_survives_a_raising_client_and_a_malformed_update(faulty_run):
    summary, _ = faulty_run
    assert summary["status"] == "finished:completed"
    assert summary["failed_clients"] == 1 and summary["rejected_replies"] == 1
    rounds = summary["round_table"].splitlines()
    assert rounds[2].split("|")[3].strip() == "2"  # two clients accepted in round 1
    assert summary["test_users_without_predictions"] == []


@pytest.mark.llm
def test_privacy_audit_only_shared_tensors_and_numbers_leave_clients(faulty_run):
    _, records = faulty_run
    shared_keys = set(initial_shared_state(ModelConfig(), 0))
    kinds = {r["type"] for r in records}
    assert {"query", "train", "evaluate"} <= kinds
    trains = [r for r in records if r["type"] == "train" and "error" not in r]
    assert len(trains) == 3  # the raising client sent an error, no content
    for r in records:
        if "error" in r:  # a code and a fixed reason (client/replies.py): the exception's text stays on the device
            assert (r["code"], r["error"]) == (ERROR_FAILED, ERROR_REPLIES[ERROR_FAILED][1])
            continue
        for name, rec in r["records"].items():
            if rec["kind"] == "arrays":
                assert r["type"] == "train"
                assert r.get("packed") is True  # it left packed (shared/packing.py); described by what it packs
                assert set(rec["tensors"]) == shared_keys  # exactly the shared base, no head.*, nothing else
                assert all(dtype == "float32" for _, dtype in rec["tensors"].values())
            elif rec["kind"] == "metrics":
                assert all(isinstance(v, (int, float)) for v in rec["items"].values())
                if r["type"] == "train":
                    assert set(rec["items"]) <= TRAIN_METRICS
                elif r["type"] == "query":  # the margin reply: the grid's counts and sums, nothing else
                    assert name == "margin" and set(rec["items"]) == MarginSums.record_keys(anchors=decisions(SMALL))
                else:
                    assert all(
                        k in ("num-examples", "llm-calls", "seconds", *FAULT_COUNTERS) or "/" in k for k in rec["items"]
                    )
            else:
                assert r["type"] == "query" and rec["items"] == {"role": rec["items"]["role"]}
                assert rec["items"]["role"] in ("train", "test")


@pytest.mark.llm
def test_results_match_the_centralized_layout(faulty_run, tmp_path):
    summary, _ = faulty_run
    assert summary["bytes_up_per_client_round"] <= 500_000
    assert summary["bytes_up_per_client_round"] < summary["full_model_bytes"] / 100
    assert "fed-hydra" in summary["table"] and "input" in summary["table"]


@pytest.mark.llm
def test_metrics_can_stay_on_the_device(tmp_path, monkeypatch, llm_server):
    from shared.llm.embedded import embedded_config

    monkeypatch.setenv("FEDHYDRA_HOME", str(tmp_path / "home"))
    summary, records = run(
        tmp_path, monkeypatch, embedded_config(llm_server.url), **{"eval.report-metrics": False, "data.train-users": 2}
    )
    evaluations = [r for r in records if r["type"] == "evaluate"]
    assert evaluations
    for r in evaluations:
        assert set(r["records"]["metrics"]["items"]) == {"num-examples"}
    assert "fed-hydra" in summary["table"]  # scored from the predictions kept on the device


STUB_RUN = {
    **SMALL_FEDERATION,
    "data.synthetic-users": 5,
    "data.train-users": 2,
    "data.free-train-users": 1,
    "data.test-users": 2,
    "pool.margin-folds": 2,
    "federation.max-in-flight": 2,
    "federation.local-episodes": 3,
}
# (federation.max-in-flight 2: the rounds' training, margin and evaluation messages go out two at a time,
# server/window.py)


@pytest.fixture(scope="module")
def margin_run(tmp_path_factory):
    """A small LaMP-3 run against the stub endpoint with a margin rule and one free training user, audited."""
    from lab.llm_stub import StubEndpoint
    from shared.llm.client import LLMConfig

    mp = pytest.MonkeyPatch()
    tmp = tmp_path_factory.mktemp("federated-margin")
    mp.setenv("FEDHYDRA_HOME", str(tmp / "home"))
    try:
        with StubEndpoint(delay_s=0.0) as stub:
            summary, records = run(tmp, mp, LLMConfig(base_url=stub.url, model="stub"), **STUB_RUN)
    finally:
        mp.undo()
    yield tmp / "out", summary, records


def test_the_training_clients_choose_the_margin_and_the_test_clients_answer_with_it(margin_run):
    out, summary, _ = margin_run
    assert summary["status"] == "finished:completed"
    margin = summary["margin"]
    assert margin is not None and margin["clients"] == 3 and margin["dropped"] == []  # 2 + 1 free training clients
    assert margin["points"] > 0 and set(margin) >= {"margin", "points", "left", "helped", "hurt", "gain", "grid"}
    rounds = [json.loads(line) for line in (out / "server" / "rounds.jsonl").read_text().splitlines()]
    assert rounds[-1]["margin"] == margin
    assert (
        rounds[-1]["sampled"] == rounds[-1]["accepted"] == 3 and rounds[-1]["failed"] == 0
    )  # sent two at a time, all back
    value = float("inf") if margin["margin"] is None else margin["margin"]  # as_dict writes inf as None
    # every test client answered with a device bundle that carries the chosen margin, and no other bundle
    manifests = [json.loads(p.read_text()) for p in (out / "clients" / "bundles").glob("*/bundle.json")]
    assert manifests and {m.get("margin") for m in manifests} == {str(value)}
    left = summary["left_baseline"]
    assert left["fed-hydra"]["questions"] == summary["test_questions"]
    assert left["fed-hydra"]["left"] <= left["fed-hydra-no-margin"]["left"]
    if value == float("inf"):
        assert left["fed-hydra"]["left"] == 0


def test_a_margin_reply_carries_only_counts_and_sums(margin_run):
    """Privacy: what a training client sends for the margin is the grid's counts and sums, no tensor, no text, no
    user id."""
    from shared.data import load_split

    out, _, records = margin_run
    replies = [r for r in records if r["type"] == "query" and "margin" in r["records"]]
    assert len(replies) == 3
    users = {q.user_id for q in load_split(out / "data", "LaMP-3").questions if getattr(q, "user_id", None)}
    users |= {p.name for p in (out / "clients").iterdir() if (p / "meta.json").exists()}
    for r in replies:
        assert "error" not in r and set(r["records"]) == {"margin"}
        rec = r["records"]["margin"]
        assert rec["kind"] == "metrics" and set(rec["items"]) == MarginSums.record_keys(anchors=decisions(STUB_RUN))
        assert all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in rec["items"].values())
        text = json.dumps(rec)
        assert not any(u in text for u in users)
        MarginSums.from_record(rec["items"], anchors=decisions(STUB_RUN))  # and it passes the server's checks


def test_a_free_training_client_trains_without_any_llm_call(margin_run):
    from client.store import UserStore

    out, summary, records = margin_run
    assert summary["train_users"] == 2 and summary["free_train_users"] == 1
    assert "(+1 free)" in summary["table"].splitlines()[0]
    train_replies = [r for r in records if r["type"] == "train"]
    assert len(train_replies) == 3
    metas = {
        p.name: UserStore(out / "clients", p.name, task="LaMP-3").read_meta()
        for p in (out / "clients").iterdir()
        if (p / "meta.json").exists()
    }
    free = [m for m in metas.values() if m.get("role") == "train" and m["episode_llm_asked"] == 0]
    paid = [m for m in metas.values() if m.get("role") == "train" and m["episode_llm_asked"] > 0]
    assert len(free) == 1 and len(paid) == 2
