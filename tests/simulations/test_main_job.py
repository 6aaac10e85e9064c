"""Issue 29, item 6: the README's main job (``fedhydra simulate``) prints what a person needs, in one screen and as
plain text: progress, the table of the methods that matter, HYDRA against the strongest baseline, the plots.

Run as a person runs it, in a process of its own with stdout and stderr going to pipes (not a terminal), on a few
synthetic LaMP-7 users against the deterministic stub endpoint (not a language model: the figures mean nothing)."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from lab.llm_stub import StubEndpoint
from lab.small_runs import TINY_FEDERATION, simulate_command
from tests.conftest import REPO

pytestmark = pytest.mark.slow

SMALL = {**TINY_FEDERATION, "data.task": "LaMP-7"}
DEFAULT_METHODS = [
    "input",
    "style-rules",
    "rag-k4",
    "fed-hydra",
    "fed-hydra-shared-head",
]  # the default eval.methods on LaMP-7


def test_the_main_job_prints_one_plain_screen_with_the_four_methods(tmp_path):
    out = tmp_path / "out"
    with StubEndpoint(delay_s=0.0) as stub:
        done = subprocess.run(
            simulate_command(out, stub.url, SMALL, ("--llm-cache", str(tmp_path / "cache.sqlite"))),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=1200,
            env=dict(os.environ),
        )
    printed = done.stdout + done.stderr
    assert done.returncode == 0, printed[-3000:]
    assert "\x1b" not in printed and "\r" not in printed, "escape codes or progress-bar debris in a pipe"
    assert "\x1b" not in (out / "flwr.log").read_text(encoding="utf-8")
    assert len(printed.splitlines()) <= 40, printed
    rows = [
        line.split("|")[1].strip()
        for line in done.stdout.splitlines()
        if line.startswith("| ") and not line.startswith("| method")
    ]
    assert rows == DEFAULT_METHODS, done.stdout
    assert [r["method"] for r in json.loads((out / "metrics.json").read_text())["rows"]] == DEFAULT_METHODS
    comparisons = [line for line in done.stdout.splitlines() if " vs " in line]
    assert len(comparisons) == 1 and comparisons[0].startswith("fed-hydra vs "), done.stdout
    assert "(the strongest baseline in the table)" in comparisons[0]
    plots = next(line for line in done.stdout.splitlines() if line.startswith("plots: "))
    assert plots == f"plots: {out / 'metrics.png'}, {out / 'rounds.png'}"
    assert "[ROUND 1/1]" in done.stderr  # the progress
    metrics = (out / "metrics.md").read_text(encoding="utf-8")
    assert "Paired comparisons" in metrics and "LLM cost" in metrics  # the rest is in the files
