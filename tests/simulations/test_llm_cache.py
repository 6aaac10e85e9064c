"""``fedhydra simulate --llm-cache FILE``: every client of the Flower simulation caches its LLM answers in FILE (the
clients run in other processes: the path reaches them through ``FEDHYDRA_LLM_CACHE``), and the run's count of LLM
calls reads that file. Against the deterministic stub endpoint (not a language model)."""

from __future__ import annotations

import json
import sqlite3

import pytest

from lab.llm_stub import StubEndpoint
from shared.paths import llm_cache_path
from simulations.cli import main

pytestmark = pytest.mark.slow

SMALL = {"task": "LaMP-3", "synthetic-users": 3, "synthetic-items": 8, "train-users": 2, "test-users": 1,
         "num-rounds": 1, "pseudo-questions": 1, "free-questions": 2, "n-samples": 1, "label-records": 2,
         "epochs": 1, "head-epochs": 2, "local-epochs": 1, "min-train-nodes": 2, "fit-steps": 10, "margin-folds": 0}


def rows(path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0])


def test_simulate_caches_every_clients_answers_in_the_named_file(tmp_path):
    cache = tmp_path / "named-cache.sqlite"
    config = " ".join(f"{k}={json.dumps(v)}" for k, v in SMALL.items())
    with StubEndpoint(delay_s=0.0) as stub:
        status = main(["simulate", "--out", str(tmp_path / "out"), "--llm-url", stub.url, "--llm-cache", str(cache),
                       "--run-config", config])
    assert status == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["status"] == "finished:completed"
    assert cache.exists() and rows(cache) == stub.served == summary["llm_calls"] > 0
    assert not llm_cache_path().exists()  # the default cache was not touched
