"""One client in ten poisoned: validation and robust aggregation keep the global model's quality.

The harness (ten clients, the poisoned update, the accuracy) is :mod:`lab.faults.poison`.
"""

from __future__ import annotations

import pytest
import torch
from flwr.serverapp.strategy import FedAvg, FedMedian, FedTrimmedAvg

from lab.faults.poison import federate
from shared.hydra.settings import TrainConfig
from shared.training.model import HydraBase, ModelConfig
from shared.training.train import Trainer

pytestmark = pytest.mark.usefixtures("flower_task_identity")


@pytest.fixture(scope="module")
def trainer():
    torch.manual_seed(0)
    # one plain epoch per round (no extra head epochs): each round moves the base by one honest step
    return Trainer(
        HydraBase(ModelConfig()), TrainConfig(epochs=1, head_epochs=0, batch_size=8, lr=1e-2, train_lora=False)
    )


@pytest.mark.slow
def test_quality_holds_with_one_poisoned_client_in_ten(trainer):
    clean = federate(trainer, FedAvg(), poisoned=False)
    assert clean >= 0.9  # the task is learnable
    assert federate(trainer, FedAvg(), poisoned=True) >= clean - 0.05  # the outlier filter rejects it
    for robust in (FedTrimmedAvg(beta=0.2), FedMedian()):  # robust aggregation alone neutralizes it
        assert federate(trainer, robust, poisoned=True, norm_factor=0) >= clean - 0.05
    assert federate(trainer, FedAvg(), poisoned=True, norm_factor=0) < clean  # without either, it hurts
