"""One client in ten poisoned: validation and robust aggregation keep the global model's quality."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord, Message, MetricRecord, RecordDict
from flwr.serverapp.strategy import FedAvg, FedMedian, FedTrimmedAvg

from client.faults import corrupt
from server.federation import ValidatingStrategy, expected_from, to_numpy
from shared.hydra.examples import RoleExample
from shared.hydra.model import HydraBase, ModelConfig, PersonalHeads
from shared.hydra.train import TrainConfig, Trainer

GOOD = ["a good honest answer", "a kind and good reply", "good and true"]
BAD = ["a rude wrong answer", "nonsense and lies", "bad and false"]


def examples(seed: int, n: int = 8) -> list[RoleExample]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        items = [str(rng.choice(GOOD)), str(rng.choice(BAD))]
        order = rng.permutation(2)
        out.append(RoleExample(user=f"u{seed}", query=f"question {i}", items=[items[j] for j in order],
                               extras=np.zeros((2, 12), np.float32),
                               target=np.asarray([1.0 if j == 0 else 0.0 for j in order], np.float32)))
    return out


def reply(arrays: dict[str, np.ndarray], node: int) -> Message:
    content = RecordDict({"arrays": ArrayRecord({k: Array(v) for k, v in arrays.items()}),
                          "metrics": MetricRecord({"num-examples": 8})})
    from flwr.supercore.task_identity import TaskIdentity

    TaskIdentity.node_id = node  # as if it came from node `node`
    return Message(content=content, dst_node_id=0, message_type="train")


pytestmark = pytest.mark.usefixtures("flower_task_identity")


@pytest.fixture(scope="module")
def trainer():
    torch.manual_seed(0)
    # one plain epoch per round (no extra head epochs): each round moves the base by one honest step
    return Trainer(HydraBase(ModelConfig()), TrainConfig(epochs=1, head_epochs=0, batch_size=8, lr=1e-2, train_lora=False))


def accuracy(trainer: Trainer, arrays: dict[str, np.ndarray]) -> float:
    trainer.base.load_shared_state(arrays)
    trainer.invalidate()
    test = examples(999, 20)
    return float(np.mean([np.argmax(trainer.scores("adapter", e)) == np.argmax(e.target) for e in test]))


def federate(trainer: Trainer, strategy, *, poisoned: bool, rounds: int = 3, norm_factor: float = 10.0) -> float:
    start = {k: v.numpy() for k, v in trainer.base.shared_state().items()}
    arrays = dict(start)
    wrapped = ValidatingStrategy(strategy, expected_from(ArrayRecord({k: Array(v) for k, v in start.items()})),
                                 norm_factor=norm_factor)
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


@pytest.mark.slow
def test_quality_holds_with_one_poisoned_client_in_ten(trainer):
    clean = federate(trainer, FedAvg(), poisoned=False)
    assert clean >= 0.9  # the task is learnable
    assert federate(trainer, FedAvg(), poisoned=True) >= clean - 0.05  # the outlier filter rejects it
    for robust in (FedTrimmedAvg(beta=0.2), FedMedian()):  # robust aggregation alone neutralizes it
        assert federate(trainer, robust, poisoned=True, norm_factor=0) >= clean - 0.05
    assert federate(trainer, FedAvg(), poisoned=True, norm_factor=0) < clean  # without either, it hurts
