"""The centralized reference run end to end, and the guarantee that a test question's gold fits nothing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from client.store import UserStore
from lab.llm_stub import StubEndpoint
from shared.config import RunConfig, default_mapping
from shared.data import load_outputs, load_split
from shared.hydra.variants import COST_METHODS, HYDRA_METHODS
from shared.llm import LLMClient, LLMConfig
from shared.synthetic import write_synthetic
from simulations.hydra_run import run_central

pytestmark = [pytest.mark.slow]

SMALL = {
    "data.task": "LaMP-3",
    "data.train-users": 2,
    "data.test-users": 2,
    "pool.pseudo-questions": 2,
    "pool.n-samples": 1,
    "pool.label-records": 2,
    "train.epochs": 1,
    "train.fit-steps": 50,
    "eval.methods": "all",
}


def central(data_dir, out, llm_config):
    cfg = RunConfig.from_mapping({**default_mapping(), **SMALL, "data.dir": str(data_dir)})
    dataset = load_split(data_dir, "LaMP-3")
    return dataset, run_central(dataset, cfg, LLMClient(llm_config), out, progress=None, bars=False)


@pytest.mark.llm
def test_changing_a_test_gold_changes_no_fitted_head_and_no_prediction(tmp_path, llm_config):
    data = write_synthetic(tmp_path / "data", "LaMP-3", n_users=4, items_per_user=10, seed=4)
    dataset, first = central(data, tmp_path / "a", llm_config)
    test_ids = [q.id for q in dataset.questions if q.user_id in ("s4u0002", "s4u0003")]
    outputs = json.loads((data / "synthetic_outputs.json").read_text())
    for gold in outputs["golds"]:
        if gold["id"] in test_ids:  # every test question gets another gold
            gold["output"] = "1" if gold["output"] != "1" else "5"
    (data / "synthetic_outputs.json").write_text(json.dumps(outputs))
    _, second = central(data, tmp_path / "b", llm_config)

    from shared.hydra.bundle import load_tensors

    for user in ("s4u0002", "s4u0003"):
        a, meta_a = load_tensors(UserStore(tmp_path / "a" / "clients", user, task="LaMP-3").heads_path, kind="heads")
        b, meta_b = load_tensors(UserStore(tmp_path / "b" / "clients", user, task="LaMP-3").heads_path, kind="heads")
        assert meta_a == meta_b and set(a) == set(b)
        assert all(np.array_equal(a[k], b[k]) for k in a)  # bit-identical fitted heads, on the same base
    for method in HYDRA_METHODS + COST_METHODS:
        assert load_outputs(tmp_path / "a" / f"{method}_outputs.json") == load_outputs(
            tmp_path / "b" / f"{method}_outputs.json"
        )
    assert first["llm_calls"] > 0 and second["llm_calls"] == 0  # the rerun was served by the cache
    # the decision margin is chosen on training users only: the same margin from the same calibration points
    assert first["margin"] is not None and first["margin"]["points"] > 0
    assert first["margin"] == second["margin"]
    # the same decisions to leave the baseline (whether leaving helped is scored by the golds, which differ)
    assert {m: r["left"] for m, r in first["left_baseline"].items()} == {
        m: r["left"] for m, r in second["left_baseline"].items()
    }
    table = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert [r["method"] for r in table["rows"]] == [
        "majority",
        "user-mean",
        "user-ridge",
        "zero-shot",
        "rag-k4",
        *HYDRA_METHODS,
        *COST_METHODS,
    ]
    ledger = table["ledger"]
    # the new users are onboarded (the LLM labels their history) after the margin is chosen, and only where a head
    # can change an answer: not under margin inf (summary: None), as on the device
    onboarded = first["margin"]["margin"] is not None
    stages = ["episodes", "train", "margin", *(["onboarding"] if onboarded else []), "export", "answer"]
    assert list(ledger["stages"]) == stages
    assert ledger["per_unit"]["new user onboarding"]["n"] == 2
    assert (ledger["per_unit"]["new user onboarding"]["asked"] > 0) is onboarded
    assert ledger["per_unit"]["training user"]["n"] == 2 and ledger["per_unit"]["training user"]["asked"] > 0
    assert ledger["per_unit"]["answer (hydra-calls-0)"]["asked"] == 0
    rows = {r["method"]: r for r in table["rows"]}
    # greedy + pool.n-samples 1; none under margin inf (summary: None), where no LLM answer could change the choice
    # and no more than the cross-validation's count of LLM answers (`llm_calls`), where it chose one
    full = 0.0 if first["margin"]["margin"] is None else 2.0
    chosen = first["margin"].get("llm_calls")
    asks = full if chosen is None else min(full, float(chosen))
    assert rows["hydra"]["llm_per_answer"] == asks and rows["hydra-no-margin"]["llm_per_answer"] == 2.0
    assert rows["hydra-calls-1"]["llm_per_answer"] == full / 2 and rows["hydra-calls-1"]["llm_calls"] == 0  # from cache
    assert (tmp_path / "a" / "metrics.png").stat().st_size > 1000
    assert first["pool_oracle"] == 0.0  # the label set always contains the gold


def test_a_cold_run_answers_the_same_at_every_llm_concurrency(tmp_path):
    """Against a deterministic endpoint (not a language model): the same predictions with 1 and 4 requests in
    flight, each run starting from an empty cache."""
    data = write_synthetic(tmp_path / "data", "LaMP-7", n_users=5, items_per_user=8, seed=2)
    dataset = load_split(data, "LaMP-7")
    outputs, served = {}, {}
    for concurrency in (1, 4):
        with StubEndpoint(delay_s=0.02) as stub:
            cfg = RunConfig.from_mapping(
                {
                    **default_mapping(),
                    "data.task": "LaMP-7",
                    "data.dir": str(data),
                    "data.train-users": 3,
                    "data.test-users": 2,
                    "train.epochs": 1,
                    "train.head-epochs": 2,
                    "train.fit-steps": 20,
                    "train.lora": False,
                    "llm.concurrency": concurrency,
                    "eval.methods": "all",
                }
            )
            llm = LLMClient(
                LLMConfig(
                    base_url=stub.url,
                    model="stub",
                    concurrency=concurrency,
                    cache_path=str(tmp_path / f"cache-{concurrency}.sqlite"),
                )
            )
            out = tmp_path / f"c{concurrency}"
            summary = run_central(dataset, cfg, llm, out, progress=None, bars=False)
            served[concurrency] = (stub.served, stub.max_in_flight)
        outputs[concurrency] = {p.name: load_outputs(p) for p in sorted(out.glob("*_outputs.json"))}
        assert summary["llm_concurrency"] == concurrency
    assert outputs[1] == outputs[4] and len(outputs[1]) == 5 + len(HYDRA_METHODS) + len(COST_METHODS) - 1
    assert served[1][0] == served[4][0]  # the same number of requests reached the endpoint
    assert served[1][1] == 1 and served[4][1] > 1


def test_free_training_users_train_the_base_without_an_llm_call(tmp_path):
    """Against a deterministic endpoint: two more training users whose questions teach the editor and the adapter,
    at no LLM cost, and who count in the margin's cross-validation."""
    data = write_synthetic(tmp_path / "data", "LaMP-7", n_users=6, items_per_user=8, seed=3)
    dataset = load_split(data, "LaMP-7")
    with StubEndpoint(delay_s=0.0) as stub:
        cfg = RunConfig.from_mapping(
            {
                **default_mapping(),
                "data.task": "LaMP-7",
                "data.dir": str(data),
                "data.train-users": 2,
                "data.free-train-users": 2,
                "data.test-users": 2,
                "train.epochs": 1,
                "train.head-epochs": 2,
                "train.fit-steps": 20,
                "train.lora": False,
                "pool.free-questions": 2,
                "pool.margin-folds": 2,
            }
        )
        llm = LLMClient(LLMConfig(base_url=stub.url, model="stub", cache_path=str(tmp_path / "cache.sqlite")))
        summary = run_central(dataset, cfg, llm, tmp_path / "out", progress=None, bars=False)
    units = summary["ledger"]["per_unit"]
    assert summary["train_users"] == 2 and summary["free_train_users"] == 2
    assert units["free training user"]["n"] == 2 and units["free training user"]["asked"] == 0
    assert units["training user"]["sent"] > 0
    # the free users' questions are training examples: 2 LLM users' episodes + 2 free ones (one question each)
    assert summary["episodes"]["train"]["episodes"] >= 2 * (1 + 2) + 2
    # they were held out in the margin's folds: every training user contributed a calibration point
    assert summary["margin"]["points"] >= 4
    # the new users are onboarded through the LLM only where a head can change an answer (not under margin inf)
    onboarded = summary["margin"]["margin"] is not None
    assert units["new user onboarding"]["n"] == 2 and (units["new user onboarding"]["asked"] > 0) is onboarded
    assert ("onboarding" in summary["ledger"]["stages"]) is onboarded
    assert (summary["episodes"]["test"]["episodes"] > 0) is onboarded
    _, answered = load_outputs(tmp_path / "out" / "hydra_outputs.json")
    assert summary["test_users"] == 2 and len(answered) == summary["test_questions"] > 0


def test_a_rerun_with_resume_takes_the_trained_base_and_margin_and_answers_the_same(tmp_path):
    """Against a deterministic endpoint: the second run of the same settings into the same folder skips training and
    the margin's cross-validation (``resume = true``) and answers exactly as the first; other settings retrain."""
    data = write_synthetic(tmp_path / "data", "LaMP-7", n_users=5, items_per_user=8, seed=6)
    dataset = load_split(data, "LaMP-7")
    mapping = {
        **default_mapping(),
        "data.task": "LaMP-7",
        "data.dir": str(data),
        "data.train-users": 3,
        "data.test-users": 2,
        "train.epochs": 1,
        "train.head-epochs": 2,
        "train.fit-steps": 20,
        "train.lora": False,
        "pool.free-questions": 2,
        "pool.pseudo-questions": 1,
        "pool.margin-folds": 2,
        "run.resume": True,
    }
    out = tmp_path / "out"
    with StubEndpoint(delay_s=0.0) as stub:
        llm = LLMClient(LLMConfig(base_url=stub.url, model="stub", cache_path=str(tmp_path / "cache.sqlite")))
        first = run_central(dataset, RunConfig.from_mapping(mapping), llm, out, progress=None, bars=False)
        outputs = {m: load_outputs(out / f"{m}_outputs.json") for m in ("hydra", "hydra-shared-head")}
        second = run_central(dataset, RunConfig.from_mapping(mapping), llm, out, progress=None, bars=False)
        assert not first["trained_by_earlier_run"] and second["trained_by_earlier_run"]
        assert second["margin"] == first["margin"] and second["losses"] == first["losses"]
        assert "margin" not in second["stage_seconds"]  # no cross-validation the second time
        assert {m: load_outputs(out / f"{m}_outputs.json") for m in outputs} == outputs
        other = run_central(
            dataset, RunConfig.from_mapping({**mapping, "train.head-epochs": 3}), llm, out, progress=None, bars=False
        )
        assert not other["trained_by_earlier_run"]
