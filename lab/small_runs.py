"""Small runs for tests and lab scripts: the settings of a few synthetic users that train in seconds, and the
``fedhydra simulate`` process that runs them.

One place for what the fault-injection script, the hostile-server benchmark and the tests of simulations, faults and
the scale probe each spelled out: a run's settings here are ``--run-config`` keys (``[tool.flwr.app.config]``), which a
caller puts over :func:`shared.config.default_mapping` or passes to the command.

Example:
    >>> run_config_text({"data.task": "LaMP-3", "train.epochs": 1, "run.resume": False})
    'data.task="LaMP-3" train.epochs=1 run.resume=false'
    >>> simulate_command("out", "http://127.0.0.1:9/v1", {"train.epochs": 1})[3:]
    ['simulate', '--out', 'out', '--llm-url', 'http://127.0.0.1:9/v1', '--run-config', 'train.epochs=1']
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "REPO",
    "SMALL_FEDERATION",
    "TINY_FEDERATION",
    "SMALL_DEVICE",
    "run_config_text",
    "device_run_config",
    "simulate_command",
    "simulate_process",
]

REPO = Path(__file__).resolve().parents[1]
"""The repository root (where ``python -m simulations.cli`` runs)."""

SMALL_FEDERATION: dict[str, Any] = {
    "data.task": "LaMP-3",
    "data.synthetic-users": 4,
    "data.synthetic-items": 10,
    "data.train-users": 3,
    "data.test-users": 1,
    "federation.num-rounds": 1,
    "pool.pseudo-questions": 2,
    "pool.free-questions": 4,
    "pool.n-samples": 1,
    "pool.label-records": 2,
    "train.epochs": 1,
    "train.head-epochs": 5,
    "federation.local-epochs": 1,
    "federation.min-train-nodes": 2,
    "train.fit-steps": 20,
}
"""A federation of 4 synthetic LaMP-3 users (3 training, 1 test), one round: fault injection's run."""

TINY_FEDERATION: dict[str, Any] = {
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
"""The smallest whole ``fedhydra simulate``: 3 synthetic users (2 training, 1 test), one round, no margin."""

SMALL_DEVICE: dict[str, Any] = {
    "data.task": "LaMP-3",
    "data.train-users": 1,
    "data.test-users": 1,
    "pool.pseudo-questions": 2,
    "pool.free-questions": 2,
    "pool.n-samples": 1,
    "pool.label-records": 2,
    "federation.local-epochs": 1,
    "federation.local-head-epochs": 2,
    "run.seed": 0,
    "data.split": "synthetic",
    "llm.model": "stub",
}
"""One node's settings when a test or a benchmark sends messages to the production ClientApp itself (hostile bases,
the scale probe): synthetic LaMP-3 users, one training and one test user, on the stub endpoint."""


def run_config_text(mapping: Mapping[str, Any]) -> str:
    """``mapping`` as ``--run-config`` text (TOML values)."""
    return " ".join(f"{k}={json.dumps(v)}" for k, v in mapping.items())


def device_run_config(
    data: Path, store: Path, llm_url: str, overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A whole run config of :data:`SMALL_DEVICE` (and ``overrides``) over the table's defaults, for users in the
    folder ``data``, nodes' stores under ``store``, and the LLM at ``llm_url``."""
    from shared.config import default_mapping

    return {
        **default_mapping(),
        **SMALL_DEVICE,
        **(overrides or {}),
        "data.dir": str(data),
        "device.store-dir": str(store),
        "llm.url": llm_url,
    }


def simulate_command(out: str | Path, llm_url: str, config: Mapping[str, Any], extra: Sequence[str] = ()) -> list[str]:
    """The ``fedhydra simulate`` command line (this interpreter, ``-m simulations.cli``) of the run config keys
    ``config`` into ``out`` against the LLM at ``llm_url``, with ``extra`` flags."""
    return [
        sys.executable,
        "-m",
        "simulations.cli",
        "simulate",
        "--out",
        str(out),
        "--llm-url",
        llm_url,
        *extra,
        "--run-config",
        run_config_text(config),
    ]


def simulate_process(out: Path, llm_url: str, config: Mapping[str, Any], *, home: Path) -> subprocess.Popen:
    """``fedhydra simulate`` of ``config`` against the stub model at ``llm_url``, started in a session of its own (so
    that a test or a script can kill the whole run: driver, SuperLink, apps) with ``FEDHYDRA_HOME`` ``home``; its
    stderr is piped."""
    return subprocess.Popen(
        simulate_command(out, llm_url, config, ("--llm-model", "stub")),
        cwd=REPO,
        env={**os.environ, "FEDHYDRA_HOME": str(home), "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
