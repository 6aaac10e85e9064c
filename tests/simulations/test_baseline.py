from __future__ import annotations

import json

import pytest

from shared.data import load_outputs, load_split
from shared.errors import ConfigError
from shared.llm import LLMClient
from shared.synthetic import write_synthetic
from shared.tasks import get_task
from simulations.baseline import run_baselines, select_users
from simulations.cli import main


@pytest.fixture
def synth3(tmp_path):
    return write_synthetic(tmp_path / "d3", "LaMP-3", n_users=6, items_per_user=12, questions_per_user=2, seed=0)


def test_non_llm_baselines(synth3, tmp_path):
    ds = load_split(synth3, "LaMP-3")
    results = run_baselines(
        ds, ds.questions, ["majority", "user-mean"], llm=None, out_dir=tmp_path / "o", progress=False
    )
    assert [r.name for r in results] == ["majority", "user-mean"]
    majority = results[0].predictions
    assert len(set(majority.values())) == 1
    for q in ds.questions:
        mean = sum(int(p["score"]) for p in q.profile) / len(q.profile)
        assert abs(int(results[1].predictions[q.id]) - mean) <= 0.5
    assert load_outputs(tmp_path / "o" / "user-mean_outputs.json")[1] == results[1].predictions
    assert results[1].llm_calls == 0


def test_input_baseline_returns_the_query(tmp_path):
    d = write_synthetic(tmp_path / "d7", "LaMP-7", n_users=3, items_per_user=5, seed=0)
    ds = load_split(d, "LaMP-7")
    (r,) = run_baselines(ds, ds.questions, ["input"], llm=None, progress=False)
    assert r.predictions == {q.id: q.query for q in ds.questions}


def test_methods_are_checked_against_the_task(synth3):
    ds = load_split(synth3, "LaMP-3")
    with pytest.raises(ConfigError, match="do not apply to LaMP-3"):
        run_baselines(ds, ds.questions, ["input"], llm=None, progress=False)
    with pytest.raises(ConfigError, match="unknown baseline"):
        run_baselines(ds, ds.questions, ["magic"], llm=None, progress=False)
    with pytest.raises(ConfigError, match="LLM is needed"):
        run_baselines(ds, ds.questions, ["zero-shot"], llm=None, progress=False)


def test_select_users_takes_whole_users(synth3):
    ds = load_split(synth3, "LaMP-3")
    qs = select_users(ds, 2, offset=1)
    assert len(qs) == 4 and len({q.user_id for q in qs}) == 2 and qs[0].user_id == ds.users()[1]


@pytest.mark.llm
@pytest.mark.slow
def test_llm_baselines_end_to_end_and_rerun_hits_the_cache(synth3, tmp_path, llm_config):
    ds = load_split(synth3, "LaMP-3")
    questions = select_users(ds, 2)
    client = LLMClient(llm_config)
    first = run_baselines(
        ds, questions, ["zero-shot", "rag"], llm=client, ks=[1, 2], out_dir=tmp_path / "a", progress=False
    )
    assert [r.name for r in first] == ["zero-shot", "rag-k1", "rag-k2"]
    assert all(r.llm_calls + r.cache_hits == len(questions) for r in first)
    assert sum(r.llm_calls for r in first) >= len(questions)
    for r in first:
        assert set(r.predictions) == {q.id for q in questions} and 0 <= r.metrics["MAE"] <= 4
    rerun = run_baselines(
        ds,
        questions,
        ["zero-shot", "rag"],
        llm=LLMClient(llm_config),
        ks=[1, 2],
        out_dir=tmp_path / "b",
        progress=False,
    )
    assert [r.llm_calls for r in rerun] == [0, 0, 0]
    assert [r.predictions for r in rerun] == [r.predictions for r in first]


@pytest.mark.llm
@pytest.mark.slow
def test_cli_baseline_writes_predictions_and_tables(synth3, tmp_path, llm_server, monkeypatch, capsys):
    monkeypatch.setenv("FEDHYDRA_LLM_BASE_URL", llm_server.url)
    out = tmp_path / "out"
    code = main(
        [
            "baseline",
            "--data",
            str(synth3),
            "--task",
            "LaMP-3",
            "--users",
            "2",
            "--method",
            "all",
            "--k",
            "1",
            "--out",
            str(out),
            "--llm-cache",
            str(tmp_path / "c.sqlite"),
        ]
    )
    assert code == 0
    table = json.loads((out / "metrics.json").read_text())
    names = ["majority", "user-mean", "user-ridge", "global-ridge", "zero-shot", "rag-k1"]
    assert [r["method"] for r in table["rows"]] == names
    assert table["users"] == 2 and table["questions"] == 4
    assert (out / "metrics.md").read_text().startswith("### LaMP-3")
    rows = {r["method"]: r for r in table["rows"]}
    assert rows["zero-shot"]["llm_per_answer"] == 1.0 and rows["user-ridge"]["llm_per_answer"] == 0.0
    for name in names:
        assert load_outputs(out / f"{name}_outputs.json")[0] == get_task("LaMP-3").official_id
    assert "LLM calls" in capsys.readouterr().out
