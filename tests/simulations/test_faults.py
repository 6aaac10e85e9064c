"""Faults injected into real (small) Flower simulations: the LLM misbehaving, clients dropping out, the server
killed mid-run. Each run must complete, report what the faults cost, and lose nothing.

The LLM is the misbehaving stub of ``lab/faulty_llm_stub.py`` (fault handling needs no real model); the
clients train the real models. LaMP-3 (ratings) is used because its answers have a label set.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from client.store import UserStore
from lab.faults.app import fault_app
from lab.faults.mod import dropped_partitions
from lab.faulty_llm_stub import StubLLM
from lab.small_runs import SMALL_FEDERATION, simulate_process
from server.checkpoint import latest_checkpoint
from shared.config import RunConfig, default_mapping
from shared.hydra.spec import ModelConfig
from shared.hydra.variants import VARIANTS
from shared.llm.client import LLMConfig
from shared.procs import pid_alive
from shared.protocol import ERROR_FAILED, ERROR_REPLIES
from simulations.cli import main
from simulations.federated import clear_results, production_app, simulate
from simulations.superlink import kill_tree

REPO = Path(__file__).resolve().parents[2]
SMALL = {**SMALL_FEDERATION, "eval.methods": "all"}
# every HYDRA variant that asks the LLM (all but hydra-calls-0) falls back without it
HYDRA_METHODS = sum(1 for v in VARIANTS.values() if v.llm_calls != 0)
LLM_BASELINES = 2  # zero-shot, rag-k4
MIX = {
    "500": 0.08,
    "503": 0.04,
    "429": 0.08,
    "drop": 0.04,
    "slow": 0.04,
    "badjson": 0.04,
    "nochoices": 0.02,
    "empty": 0.04,
    "offlabel": 0.1,
}


def run(tmp: Path, url: str, app=production_app, **overrides) -> dict:
    return simulate(
        RunConfig.from_mapping({**default_mapping(), **SMALL, **overrides}),
        tmp / "out",
        llm_config=LLMConfig(base_url=url, model="stub"),
        progress=lambda s: None,
        app=app,
    )


def stores_intact(out: Path, task: str = "LaMP-3") -> int:
    """Every client store under ``out/clients`` loads completely; returns how many there are."""
    users = [p.name for p in (out / "clients").iterdir() if (p / "meta.json").exists()]
    for user in users:
        store = UserStore(out / "clients", user, task=task)
        # a new user under margin inf is not onboarded (no head could change an answer): no episodes, by design
        onboarded = (store.read_meta() or {}).get("episodes") != 0
        assert store.read_history() and (store.read_episodes() is not None or not onboarded)
        store.read_heads(ModelConfig())
        store.read_predictions()
    return len(users)


def dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_refused_rerun_leaves_the_earlier_run_as_it_was(tmp_path, capsys):
    """A rerun refused for its input is refused before anything is written or removed: the earlier run's results
    stay byte for byte (nothing is lost; the error line says the rerun did not happen). A run that passes its checks
    clears the earlier results before it starts (``clear_results``), so no stale result looks like its own."""
    out = tmp_path / "out"
    (out / "server" / "checkpoints").mkdir(parents=True)
    (out / "clients" / "u1").mkdir(parents=True)
    results = [
        "summary.json",
        "metrics.md",
        "metrics.json",
        "metrics.png",
        "rounds.md",
        "rounds.png",
        "fed-hydra_outputs.json",
        "rag-k4_outputs.json",
        "majority_outputs.json",
        "server/server_summary.json",
    ]
    kept = [
        "notes_outputs.json",
        "server/rounds.jsonl",
        "server/checkpoints/round-0001.safetensors",
        "clients/u1/history.json",
        "run_config.toml",
    ]
    for name in results + kept:
        (out / name).write_text(f'{{"file": "{name}"}}')
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "dev_questions.json").write_text('[{"id": "0", "inp')
    (bad / "dev_outputs.json").write_text('{"task": "LaMP_3", "golds": []}')
    status = main(
        ["simulate", "--data", str(bad), "--task", "LaMP-3", "--out", str(out), "--llm-url", "http://127.0.0.1:9/v1"]
    )
    assert status == 2 and f"{bad / 'dev_questions.json'}: invalid JSON" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert not (out / "data").exists()
    # what a run that passes its checks removes first: the results, never stores, checkpoints or the round log
    assert sorted(str(p.relative_to(out)) for p in clear_results(out)) == sorted(results)
    assert all((out / n).exists() for n in kept) and not [n for n in results if (out / n).exists()]


def test_only_a_run_given_the_fault_app_submits_the_fault_injection_client_app(tmp_path):
    import io
    import tomllib
    import zipfile

    from flwr.cli.build import build_fab_from_disk

    from lab.faults import CLIENT_APP
    from lab.faults.app import fault_app
    from lab.faults.mod import SPEC_FILE
    from simulations.federated import production_app

    assert production_app(tmp_path) == REPO  # the production app, as deployed: what simulate submits by default
    app = fault_app({"0": "raise"})(tmp_path)
    production = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["flwr"]["app"]
    staged = tomllib.loads((app / "pyproject.toml").read_text())["tool"]["flwr"]["app"]
    assert staged["components"] == {**production["components"], "clientapp": CLIENT_APP}
    assert staged["config"] == production["config"]  # the same settings
    fab = zipfile.ZipFile(io.BytesIO(build_fab_from_disk(app)))
    names = set(fab.namelist())
    code = {
        p.relative_to(REPO).as_posix()
        for pattern in production["fab-include"]
        for p in REPO.glob(pattern)
        if "__pycache__" not in p.parts
    }
    assert code <= names and "lab/faults/client_app.py" in names
    assert json.loads(fab.read(f"lab/faults/{SPEC_FILE}")) == {"0": "raise"}  # the faults travel inside the app


@pytest.mark.slow
def test_a_misbehaving_llm_costs_examples_and_retries_but_the_run_completes(tmp_path):
    with StubLLM(mix=MIX, slow_s=1.5, seed=3) as stub:
        summary = run(tmp_path, stub.url, **{"llm.timeout": 0.5})
    assert summary["status"] == "finished:completed"
    assert summary["failed_clients"] == 0 and summary["rejected_replies"] == 0
    assert summary["test_users_without_predictions"] == []
    faults = summary["faults"]
    served = {k: v for k, v in stub.counts.items() if k != "ok"}
    assert set(served) >= {"500", "429", "badjson", "offlabel"}, served
    assert faults["llm-retries"] >= served.get("500", 0) // 2  # retryable faults were retried
    assert faults["skipped-examples"] >= 1  # malformed answers cost their example, nothing was invented
    assert faults["offlabel-answers"] >= 1  # answers outside 1..5 were kept as such and counted
    assert stores_intact(tmp_path / "out") == 4
    assert "| examples skipped | answers degraded | LLM calls failed |" in summary["round_table"]


@pytest.mark.slow
def test_an_llm_endpoint_that_is_down_degrades_every_answer_and_the_run_completes(tmp_path):
    summary = run(tmp_path, f"http://127.0.0.1:{dead_port()}/v1")
    assert summary["status"] == "finished:completed"
    assert summary["failed_clients"] == 0 and summary["rejected_replies"] == 0  # LLM-free examples still train
    questions = summary["test_questions"]
    faults = summary["faults"]
    # with no LLM answer to learn from, the margin's cross-validation asks none (fewer calls win ties), so the variants
    # that follow the bundle's choice answer from the LLM-free pool without trying; every other one degrades
    assert summary["margin"]["llm_calls"] == 0
    follow = sum(1 for v in VARIANTS.values() if v.llm_calls is None and v.adapter and v.margin and not v.stable)
    assert faults["degraded-answers"] == (HYDRA_METHODS - follow) * questions  # non-personalized fallback answers
    assert faults["failed-answers"] == LLM_BASELINES * questions  # the LLM-only baselines had nothing to say
    assert faults["skipped-examples"] >= 3 * SMALL["pool.pseudo-questions"]  # every LLM-labelled example, counted
    assert faults["llm-refused"] > 0  # the circuit breaker stopped the calls to the dead endpoint
    assert "fed-hydra" in summary["table"]  # the fallback answers are scored like any other
    assert stores_intact(tmp_path / "out") == 4


@pytest.mark.slow
def test_a_third_of_the_clients_drop_out_every_round(tmp_path):
    with StubLLM() as stub:
        summary = run(tmp_path, stub.url, app=fault_app({"dropout": 1 / 3}), **{"federation.num-rounds": 2})
    assert summary["status"] == "finished:completed"
    rounds = [json.loads(line) for line in (tmp_path / "out" / "server" / "rounds.jsonl").read_text().splitlines()]
    assert [(r["accepted"], r["failed"]) for r in rounds] == [(2, 1), (2, 1)]
    # a dropout leaves as the fixed reason of any failure: its own text stays on the device (client/replies.py)
    assert all(ERROR_REPLIES[ERROR_FAILED][1] in f for r in rounds for f in r["failures"])
    assert summary["test_users_without_predictions"] == []
    trained = {p for p in range(3) for r in (1, 2) if p not in dropped_partitions(3, 1 / 3, r, seed=0)}
    assert stores_intact(tmp_path / "out") == len(trained) + 1  # (a client dropped in every round has no store)


@pytest.mark.slow
def test_the_server_killed_mid_run_resumes_from_its_last_checkpoint(tmp_path):
    out, home = tmp_path / "out", tmp_path / "home"
    log = out / "server" / "rounds.jsonl"
    with StubLLM() as stub:
        proc = simulate_process(out, stub.url, {**SMALL, "federation.num-rounds": 2, "run.resume": False}, home=home)
        try:
            deadline = time.monotonic() + 600
            while not (log.exists() and log.read_text().strip()) and time.monotonic() < deadline:
                assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
                time.sleep(0.2)
            # round 1 is checkpointed and logged: the server is starting round 2 (killed at once, as round 2 can be
            # over within seconds)
        finally:
            killed = kill_tree(proc.pid)
            proc.wait(30)
        assert len(killed) > 3 and not any(pid_alive(p) for p in killed)  # the driver, SuperLink, ServerApp, clients
        assert not (out / "summary.json").exists()  # a killed run leaves nothing that looks complete
        found = latest_checkpoint(out / "server" / "checkpoints", model=ModelConfig())
        assert found is not None and found[0] == 1

        again = simulate_process(out, stub.url, {**SMALL, "federation.num-rounds": 2, "run.resume": True}, home=home)
        _, err = again.communicate(timeout=900)
        assert again.returncode == 0, err.decode()[-3000:]
    server = json.loads((out / "server" / "server_summary.json").read_text())
    assert server["resumed_after"] == 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finished:completed" and summary["rounds_logged"] == [1, 2]
    assert summary["test_users_without_predictions"] == []
    assert stores_intact(out) == 4
