from __future__ import annotations

import numpy as np
import pytest
from flwr.serverapp.strategy import DifferentialPrivacyClientSideFixedClipping, FedAdam, FedAvg, FedProx, FedTrimmedAvg

from server.checkpoint import checkpoint_path, latest_checkpoint, save_checkpoint
from server.plan import starting_point
from server.strategies import build_strategy, sampled_clients
from shared.config import RunConfig, default_mapping
from shared.hydra.model import ModelConfig


def cfg(**kw):
    return RunConfig.from_mapping({**default_mapping(), **kw})


def test_checkpoints_resume_from_the_newest_readable_round(tmp_path):
    model = ModelConfig()
    for rnd in (1, 2, 3):
        save_checkpoint(tmp_path, rnd, {"base.a": np.full(2, rnd, np.float32)}, model=model, task="LaMP-7")
    checkpoint_path(tmp_path, 3).write_bytes(b"torn write")  # a crash in the middle of round 3's write
    rnd, arrays = latest_checkpoint(tmp_path, model=model)
    assert rnd == 2 and arrays["base.a"].tolist() == [2.0, 2.0]
    assert latest_checkpoint(tmp_path / "nothing") is None
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_server_resumes_only_when_asked(tmp_path):
    c = cfg(**{"out-dir": str(tmp_path), "resume": True})
    done, fresh = starting_point(c)
    assert done == 0 and all(k.startswith("base.") for k in fresh)
    save_checkpoint(tmp_path / "checkpoints", 4, fresh, model=c.model, task=c.task)
    assert starting_point(c)[0] == 4
    assert starting_point(cfg(**{"out-dir": str(tmp_path), "resume": False}))[0] == 0
    _, again = starting_point(cfg(**{"out-dir": str(tmp_path / "x")}))
    assert all(np.array_equal(fresh[k], again[k]) for k in fresh)  # seeded: the same initial base every time


@pytest.mark.parametrize("name,kind", [("fedavg", FedAvg), ("fedprox", FedProx), ("fedadam", FedAdam),
                                       ("fedtrimmedavg", FedTrimmedAvg)])
def test_strategy_by_config(name, kind):
    strategy, accountant = build_strategy(cfg(strategy=name).federation, n_train=10)
    assert type(strategy) is kind and accountant is None


def test_differential_privacy_wraps_the_strategy():
    c = cfg(**{"dp-noise": 1.0, "dp-clip": 0.5, "fraction-train": 0.5})
    strategy, _ = build_strategy(c.federation, n_train=10)
    assert isinstance(strategy, DifferentialPrivacyClientSideFixedClipping)
    assert strategy.noise_multiplier == 1.0 and strategy.clipping_norm == 0.5 and strategy.num_sampled_clients == 5
    assert sampled_clients(c.federation, 3) == 2
