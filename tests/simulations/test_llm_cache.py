"""``fedhydra simulate --llm-cache FILE``: every client of the Flower simulation caches its LLM answers in FILE (the
clients run in other processes: the path reaches them through ``FEDHYDRA_LLM_CACHE``), and the run's count of LLM
calls reads that file. Against the deterministic stub endpoint (not a language model)."""

from __future__ import annotations

import json
import sqlite3

import pytest

from lab.llm_stub import StubEndpoint
from lab.small_runs import TINY_FEDERATION, run_config_text
from shared.paths import llm_cache_path
from simulations.cli import main

pytestmark = pytest.mark.slow

SMALL = TINY_FEDERATION


def rows(path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0])


def test_simulate_caches_every_clients_answers_in_the_named_file(tmp_path):
    cache = tmp_path / "named-cache.sqlite"
    config = run_config_text(SMALL)
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
