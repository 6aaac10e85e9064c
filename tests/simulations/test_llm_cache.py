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

SMALL = {
    "data.task": "LaMP-3",
    "data.synthetic-users": 3,
    "data.synthetic-items": 8,
    "data.train-users": 2,
    "data.test-users": 1,
    "federation.num-rounds": 1,
    "pool.pseudo-questions": 1,
    "pool.free-questions": 2,
    "pool.n-samples": 1,
    "pool.label-records": 2,
    "train.epochs": 1,
    "train.head-epochs": 2,
    "federation.local-epochs": 1,
    "federation.min-train-nodes": 2,
    "train.fit-steps": 10,
    "pool.margin-folds": 0,
}


def rows(path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0])


def test_simulate_caches_every_clients_answers_in_the_named_file(tmp_path):
    cache = tmp_path / "named-cache.sqlite"
    config = " ".join(f"{k}={json.dumps(v)}" for k, v in SMALL.items())
    with StubEndpoint(delay_s=0.0) as stub:
        status = main(
            [
                "simulate",
                "--out",
                str(tmp_path / "out"),
                "--llm-url",
                stub.url,
                "--llm-cache",
                str(cache),
                "--run-config",
                config,
            ]
        )
    assert status == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["status"] == "finished:completed"
    assert cache.exists() and rows(cache) == stub.served == summary["llm_calls"] > 0
    assert not llm_cache_path().exists()  # the default cache was not touched
