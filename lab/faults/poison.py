"""One client in ten poisoned, without a simulation: the harness of ``tests/server/test_robust_aggregation.py`` and
the ``poison`` scenario of ``scripts/fault_injection.py``.

Ten clients train the adapter of a small HYDRA base on a task that is easy to learn (pick the good answer over the
bad one); :func:`federate` aggregates their updates for a few rounds through the server's validating strategy,
optionally with client 0 poisoned (:func:`lab.faults.mod.corrupt`, ``poison``), and returns the global
model's accuracy. Messages built here need a Flower task identity (``TaskIdentity.run_id``, ``node_id`` and
``task_id`` set), as outside a Flower process they have none.
"""

from __future__ import annotations

from typing import cast

import numpy as np
from flwr.app import Array, ArrayRecord, Message, MetricRecord, RecordDict

from lab.faults.mod import corrupt
from server.federation import ValidatingStrategy, expected_from, to_numpy
from shared.hydra.examples import RoleExample
from shared.hydra.spec import N_EXTRA
from shared.protocol import WEIGHT_KEY
from shared.training.model import PersonalHeads
from shared.training.train import Trainer

__all__ = ["GOOD", "BAD", "examples", "reply", "accuracy", "federate"]

GOOD = ["a good honest answer", "a kind and good reply", "good and true"]
BAD = ["a rude wrong answer", "nonsense and lies", "bad and false"]


def examples(seed: int, n: int = 8) -> list[RoleExample]:
    """``n`` adapter examples of one client: a good and a bad answer in random order, the good one the target."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        items = [str(rng.choice(GOOD)), str(rng.choice(BAD))]
        order = rng.permutation(2)
        out.append(
            RoleExample(
                user=f"u{seed}",
                query=f"question {i}",
                items=[items[j] for j in order],
                extras=np.zeros((2, N_EXTRA["adapter"]), np.float32),
                target=np.asarray([1.0 if j == 0 else 0.0 for j in order], np.float32),
            )
        )
    return out


def reply(arrays: dict[str, np.ndarray], node: int) -> Message:
    """A training reply carrying ``arrays``, as if it came from node ``node``."""
    content = RecordDict(
        {"arrays": ArrayRecord({k: Array(v) for k, v in arrays.items()}), "metrics": MetricRecord({WEIGHT_KEY: 8})}
    )
    from flwr.supercore.task_identity import TaskIdentity

    TaskIdentity.node_id = node  # as if it came from node `node`
    return Message(content=content, dst_node_id=0, message_type="train")


def accuracy(trainer: Trainer, arrays: dict[str, np.ndarray]) -> float:
    """The share of held-out examples whose good answer the adapter of base ``arrays`` ranks first."""
    trainer.base.load_shared_state(arrays)
    trainer.invalidate()
    test = examples(999, 20)
    return float(
        np.mean([np.argmax(trainer.scores("adapter", e)) == np.argmax(cast(np.ndarray, e.target)) for e in test])
    )


def federate(trainer: Trainer, strategy, *, poisoned: bool, rounds: int = 3, norm_factor: float = 10.0) -> float:
    """The global model's accuracy after ``rounds`` rounds of ten clients (client 0 poisoned if ``poisoned``),
    aggregated by ``strategy`` behind the server's validation (outlier filter ``norm_factor``; 0 = off). The
    trainer's base is put back as it was."""
    start = {k: v.numpy() for k, v in trainer.base.shared_state().items()}
    arrays = dict(start)
    wrapped = ValidatingStrategy(
        strategy, expected_from(ArrayRecord({k: Array(v) for k, v in start.items()})), norm_factor=norm_factor
    )
    for rnd in range(1, rounds + 1):
        wrapped._sent = dict(arrays)
        replies = []
        for client in range(10):
            trainer.base.load_shared_state(arrays)
            trainer.invalidate()
            heads = {f"u{client}": PersonalHeads.from_shared(trainer.base)}
            trainer.train_role("adapter", examples(client), heads)
            update = {k: v.numpy() for k, v in trainer.base.shared_state().items()}
            if poisoned and client == 0:
                update = corrupt(update, arrays, "poison")
            replies.append(reply(update, client))
        aggregated, _ = wrapped.aggregate_train(rnd, replies)
        arrays = to_numpy(aggregated)
    result = accuracy(trainer, arrays)
    trainer.base.load_shared_state(start)
    return result
