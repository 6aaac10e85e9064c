"""Fault injection for reliability tests and the fault-injection script: a ClientApp mod.

The production ClientApp (:mod:`client.client_app`) does not carry it: :mod:`lab.faults.client_app` adds it, and a
simulation runs that app only when its caller passes the fault-injection app explicitly
(``simulate(..., app=fault_app(faults))``, :func:`lab.faults.app.fault_app`).

The faults are a JSON object, which travels inside the app copy the run submits (:data:`SPEC_FILE`). A key that is a
node's ``partition-id`` (as a string) maps to a fault applied to that node's training replies:

| fault | what the client does |
|---|---|
| ``raise`` | fails before training (an exception: Flower sends the server an error reply) |
| ``crash-after-train`` | trains (its store is written) and then fails, so the server never gets the update |
| ``kill`` | SIGKILLs its own process part-way through the round (a time drawn from 0 to ``kill-within-s``, default 3 s, seeded by round) |
| ``nan`` | sends a NaN in one tensor |
| ``scale`` | sends the update times 1e3 |
| ``poison`` | sends the update with its sign flipped and scaled by 10 |
| ``unknown-key``, ``personal-key``, ``wrong-shape``, ``wrong-dtype`` | sends a malformed reply |
| ``extra-metric`` | sends a metric the other clients do not (Flower would refuse to aggregate the round) |

Two more keys apply to every training node:

- ``"dropout": f`` makes ``round(f * data.train-users)`` training partitions fail in every round (an error reply,
  as Flower reports a ClientApp that died); which ones is drawn afresh each round from the run's ``run.seed`` and
  the round (:func:`dropped_partitions`), so that everyone agrees without talking. A partition out of the last
  round is out of the margin query that follows it too (it is offline).
- ``"kill-within-s": s`` bounds the delay of ``kill``.
- ``"capture": dir`` keeps every training reply's tensors and weight as the client is about to send them (faults
  applied; under secure aggregation, before SecAgg+ masks them) in ``dir/<node id>-<round>.npz`` (``__weight__``:
  ``dp-weight`` or ``num-examples``): what the tests compare the server's view with.

With no faults (an empty object, or no spec file) the mod does nothing.

Example:
    >>> import numpy as np
    >>> corrupt({"base.a": np.ones(2, np.float32)}, {"base.a": np.zeros(2, np.float32)}, "poison")["base.a"].tolist()
    [-10.0, -10.0]
    >>> sorted(dropped_partitions(10, 0.3, server_round=1, seed=0)) == sorted(dropped_partitions(10, 0.3, 1, 0))
    True
    >>> len(dropped_partitions(10, 0.3, server_round=2, seed=0))
    3
    >>> FaultsMod({"0": "nan"}).faults, FaultsMod(read_faults(Path("no-such-dir") / SPEC_FILE)).faults
    ({'0': 'nan'}, {})
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import cast

import numpy as np
from flwr.app import Array, ArrayRecord, Context, Message, MessageType

from shared.protocol import ASK_KEY, ASK_MARGIN, DP_WEIGHT_KEY, WEIGHT_KEY

__all__ = [
    "FaultsMod",
    "read_faults",
    "SPEC_FILE",
    "corrupt",
    "dropped_partitions",
    "FAULTS",
    "UPDATE_FAULTS",
    "InjectedFault",
]

UPDATE_FAULTS = ("nan", "scale", "poison", "unknown-key", "personal-key", "wrong-shape", "wrong-dtype")
"""Faults that alter the update a client sends."""
FAULTS = ("raise", "crash-after-train", "kill", "extra-metric") + UPDATE_FAULTS
SPEC_FILE = "faults.json"
"""The name of the faults' file beside :mod:`lab.faults.client_app` in the app copy a fault-injection run submits."""


class InjectedFault(RuntimeError):
    """Raised by a client told to fail."""


def corrupt(update: Mapping[str, np.ndarray], sent: Mapping[str, np.ndarray], fault: str) -> dict[str, np.ndarray]:
    """The update as a faulty client would send it."""
    out = {k: np.array(v, copy=True) for k, v in update.items()}
    first = sorted(out)[0]
    if fault == "nan":
        out[first].flat[0] = np.nan
    elif fault == "scale":
        out = {k: sent[k] + 1e3 * (v - sent[k]) for k, v in out.items()}
    elif fault == "poison":
        out = {k: sent[k] - 10.0 * (v - sent[k]) if np.any(v != sent[k]) else -10.0 * v for k, v in out.items()}
    elif fault == "unknown-key":
        out["base.adapter.extra"] = np.zeros(3, np.float32)
    elif fault == "personal-key":
        out["head.adapter.weight"] = np.zeros((1, 36), np.float32)
    elif fault == "wrong-shape":
        out[first] = np.zeros(out[first].size + 1, np.float32)
    elif fault == "wrong-dtype":
        out[first] = out[first].astype(np.float64)
    else:
        raise ValueError(f"unknown fault {fault!r}; known: {FAULTS}")
    return out


def dropped_partitions(n_train: int, fraction: float, server_round: int, seed: int = 0) -> set[int]:
    """The ``round(fraction * n_train)`` training partitions that drop out of ``server_round`` (deterministic)."""
    if not 0 <= fraction <= 1:
        raise ValueError(f"dropout fraction must be in [0, 1], got {fraction}")
    k = int(round(fraction * n_train))
    order = sorted(range(n_train), key=lambda p: hashlib.sha256(f"{seed}:{server_round}:{p}".encode()).hexdigest())
    return set(order[:k])


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _schedule_kill(partition: str, server_round: int, within_s: float) -> threading.Timer:
    """SIGKILL this process after a seeded delay (the process dies wherever it is: training, writing its store)."""
    delay = random.Random(f"kill:{partition}:{server_round}").uniform(0.0, within_s)
    timer = threading.Timer(delay, _die)
    timer.daemon = True
    timer.start()
    return timer


def read_faults(path: Path) -> dict:
    """The faults of ``path`` (a JSON object; see the module docstring); none if there is no such file."""
    if not path.is_file():
        return {}
    faults = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(faults, dict):
        raise ValueError(f"{path.name}: the faults must be a JSON object, got {type(faults).__name__}")
    return faults


class FaultsMod:
    """The ClientApp mod that applies ``faults`` (see the module docstring) to this node's messages."""

    def __init__(self, faults: Mapping):
        self.faults = dict(faults)

    def __call__(self, msg: Message, ctx: Context, call_next) -> Message:
        return _apply(self.faults, msg, ctx, call_next)


def _apply(faults: Mapping, msg: Message, ctx: Context, call_next) -> Message:
    config = msg.content.config_records.get("config") if msg.has_content() else None
    margin_query = (
        msg.metadata.message_type == MessageType.QUERY and config is not None and config.get(ASK_KEY) == ASK_MARGIN
    )
    if not faults or (msg.metadata.message_type != MessageType.TRAIN and not margin_query):
        return call_next(msg, ctx)
    partition = str(ctx.node_config.get("partition-id", ""))
    server_round = int(cast(int, config.get("server-round", 0))) if config is not None else 0
    dropout = float(faults.get("dropout", 0) or 0)
    if dropout and partition.isdigit():
        n_train = int(ctx.run_config.get("data.train-users", 0))
        if int(partition) in dropped_partitions(n_train, dropout, server_round, int(ctx.run_config.get("run.seed", 0))):
            raise InjectedFault(f"partition {partition} dropped out of round {server_round}")
    if margin_query:  # the per-partition faults are those of training replies
        return call_next(msg, ctx)
    fault = faults.get(partition)
    if fault is None:
        return _capture(faults, ctx, server_round, call_next(msg, ctx))
    if fault == "raise":
        raise InjectedFault(f"injected failure on partition {partition}")
    if fault == "kill":  # dies in this round for sure: at the drawn time, or before replying if training was faster
        _schedule_kill(partition, server_round, float(faults.get("kill-within-s", 3.0)))
        call_next(msg, ctx)
        _die()
    reply = call_next(msg, ctx)
    if fault == "crash-after-train":
        raise InjectedFault(f"injected crash after training on partition {partition}")
    if reply.has_error():
        return reply
    if fault == "extra-metric":
        reply.content["metrics"]["injected-metric"] = 1.0
        return reply
    sent = {k: v.numpy() for k, v in msg.content.array_records["arrays"].items()}
    update = {k: v.numpy() for k, v in reply.content["arrays"].items()}
    reply.content["arrays"] = ArrayRecord({k: Array(v) for k, v in corrupt(update, sent, fault).items()})
    return _capture(faults, ctx, server_round, reply)


def _capture(faults: Mapping, ctx: Context, server_round: int, reply: Message) -> Message:
    """Keep a training reply's tensors and weight in ``faults["capture"]`` (if set; see the module docstring)."""
    folder = faults.get("capture")
    if folder and not reply.has_error() and "arrays" in reply.content.array_records:
        metrics = reply.content["metrics"]
        weight = metrics.get(DP_WEIGHT_KEY, metrics.get(WEIGHT_KEY))
        Path(folder).mkdir(parents=True, exist_ok=True)
        np.savez(
            Path(folder) / f"{ctx.node_id}-{server_round}.npz",
            __weight__=np.asarray(weight),
            **{k: v.numpy() for k, v in reply.content.array_records["arrays"].items()},  # type: ignore[arg-type]
        )
    return reply
