from __future__ import annotations

import numpy as np
import pytest
from flwr.serverapp.strategy import DifferentialPrivacyClientSideFixedClipping, FedAdam, FedAvg, FedProx, FedTrimmedAvg

from server.checkpoint import checkpoint_path, latest_checkpoint, save_checkpoint
from server.plan import starting_point
from server.strategies import BUILDERS, build_strategy, sampled_clients
from shared.config import STRATEGIES, RunConfig, default_mapping
from shared.errors import ConfigError
from shared.hydra.bundle import BundleError
from shared.training.model import ModelConfig


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
    c = cfg(**{"run.out-dir": str(tmp_path), "run.resume": True})
    done, fresh = starting_point(c)
    assert done == 0 and all(k.startswith("base.") for k in fresh)
    save_checkpoint(tmp_path / "checkpoints", 4, fresh, model=c.model, task=c.task)
    assert starting_point(c)[0] == 4
    assert starting_point(cfg(**{"run.out-dir": str(tmp_path), "run.resume": False}))[0] == 0
    _, again = starting_point(cfg(**{"run.out-dir": str(tmp_path / "x")}))
    assert all(np.array_equal(fresh[k], again[k]) for k in fresh)  # seeded: the same initial base every time


@pytest.mark.parametrize(
    "name,kind", [("fedavg", FedAvg), ("fedprox", FedProx), ("fedadam", FedAdam), ("fedtrimmedavg", FedTrimmedAvg)]
)
def test_strategy_by_config(name, kind):
    strategy, accountant = build_strategy(cfg(**{"federation.strategy": name}).federation, n_train=10)
    assert type(strategy) is kind and accountant is None


def test_the_server_builds_exactly_the_strategies_the_config_accepts():
    assert list(BUILDERS) == list(STRATEGIES)  # one registry of names (shared.config), one builder per name (server)
    for name in STRATEGIES:
        strategy, _ = build_strategy(cfg(**{"federation.strategy": name}).federation, n_train=10)
        assert type(strategy).__name__.lower() == name
    with pytest.raises(
        ConfigError, match="'federation.strategy' must be fedavg, fedprox, fedadam, fedmedian or fedtrimmedavg"
    ):
        cfg(**{"federation.strategy": "fedsum"})


def test_differential_privacy_wraps_the_strategy():
    c = cfg(**{"dp.noise": 1.0, "dp.clip": 0.5, "federation.fraction-train": 0.5})
    strategy, _ = build_strategy(c.federation, n_train=10)
    assert isinstance(strategy, DifferentialPrivacyClientSideFixedClipping)
    assert strategy.noise_multiplier == 1.0 and strategy.clipping_norm == 0.5 and strategy.num_sampled_clients == 5
    assert sampled_clients(c.federation, 3) == 2


class _Grid:
    """Two connected nodes, for configure_train (nothing is sent)."""

    def get_node_ids(self):
        return [1, 2]


def _fedadam_round(strategy, server_round: int, arrays: dict[str, np.ndarray], updates: list[dict[str, np.ndarray]]):
    from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict

    record = ArrayRecord({k: Array(v) for k, v in arrays.items()})
    strategy.configure_train(server_round, record, ConfigRecord({}), _Grid())
    replies = [
        Message(
            content=RecordDict(
                {
                    "arrays": ArrayRecord({k: Array(v) for k, v in u.items()}),
                    "metrics": MetricRecord({"num-examples": 3}),
                }
            ),
            dst_node_id=0,
            message_type="train",
        )
        for u in updates
    ]
    out, _ = strategy.aggregate_train(server_round, replies)
    return {k: v.numpy() for k, v in out.items()}


@pytest.mark.usefixtures("flower_task_identity")
def test_a_resumed_fedadam_run_continues_with_its_moments(tmp_path):
    """FedAdam's moments are checkpointed with the base: a resumed round 2 equals the uninterrupted one."""
    from server.checkpoint import load_server_state, save_server_state, strategy_state
    from server.plan import restore_server_state

    c = cfg(**{"federation.strategy": "fedadam", "run.out-dir": str(tmp_path), "run.resume": True})
    rng = np.random.default_rng(0)
    start = {"base.a": rng.normal(size=(2, 3)).astype(np.float32)}
    updates = [
        [{"base.a": start["base.a"] + rng.normal(size=(2, 3)).astype(np.float32)} for _ in range(2)] for _ in range(2)
    ]
    running, _ = build_strategy(c.federation, n_train=2)
    after1 = _fedadam_round(running, 1, start, updates[0])
    moments = strategy_state(running)
    assert sorted(moments) == ["m_t.base.a", "v_t.base.a"]
    save_server_state(tmp_path / "checkpoints", 1, moments, model=c.model)
    save_checkpoint(tmp_path / "checkpoints", 1, after1, model=c.model, task=c.task)
    uninterrupted = _fedadam_round(running, 2, after1, updates[1])

    done, arrays = starting_point(c)
    resumed, _ = build_strategy(c.federation, n_train=2)
    assert done == 1 and restore_server_state(c, done, resumed)
    np.testing.assert_allclose(
        _fedadam_round(resumed, 2, arrays, updates[1])["base.a"], uninterrupted["base.a"], rtol=1e-6
    )
    forgetful, _ = build_strategy(c.federation, n_train=2)  # what a resume without the moments computed
    assert not np.allclose(_fedadam_round(forgetful, 2, arrays, updates[1])["base.a"], uninterrupted["base.a"])
    # a checkpoint without moments is reported, and a stateless strategy needs none
    (tmp_path / "checkpoints" / "round-0001.server-state.safetensors").unlink()
    assert load_server_state(tmp_path / "checkpoints", 1) is None
    assert not restore_server_state(c, 1, build_strategy(c.federation, n_train=2)[0])
    assert restore_server_state(
        cfg(**{"run.out-dir": str(tmp_path)}), 1, build_strategy(cfg().federation, n_train=2)[0]
    )


def test_a_server_state_file_holds_only_moments_of_shared_tensors(tmp_path):
    from server.checkpoint import save_server_state
    from shared.hydra.bundle import BundleError

    with pytest.raises(BundleError, match="head.adapter"):
        save_server_state(tmp_path, 1, {"m_t.head.adapter.weight": np.zeros(1, np.float32)}, model=ModelConfig())
    with pytest.raises(BundleError, match="base.a"):
        save_server_state(tmp_path, 1, {"base.a": np.zeros(1, np.float32)}, model=ModelConfig())


def test_a_resume_whose_checkpoints_all_fail_to_load_is_refused_not_started_from_round_0(tmp_path, caplog):
    # issue 28: latest_checkpoint skipped every damaged file and starting_point then began at round 0 over them
    c = cfg(**{"run.out-dir": str(tmp_path), "run.resume": True})
    folder = tmp_path / "checkpoints"
    _, fresh = starting_point(c)
    for rnd in (1, 2):
        save_checkpoint(folder, rnd, fresh, model=c.model, task=c.task)
    checkpoint_path(folder, 2).write_bytes(b"torn write")
    assert starting_point(c)[0] == 1  # one readable: resumed from it
    checkpoint_path(folder, 1).write_bytes(b"\x00" * 64)
    with pytest.raises(BundleError) as refused:
        starting_point(c)
    assert type(refused.value).__name__ == "UnreadableCheckpoints"
    message = str(refused.value)
    assert f"none of the 2 checkpoints in {folder} can be read" in message
    assert "round-0002.safetensors" in message and "resume = false" in message
    assert sorted(p.name for p in folder.iterdir()) == ["round-0001.safetensors", "round-0002.safetensors"]  # kept
    assert latest_checkpoint(folder, model=c.model) is None  # not strict: still "none" for other callers
    assert (
        starting_point(cfg(**{"run.out-dir": str(tmp_path), "run.resume": False}))[0] == 0
    )  # afresh, as the message says
    assert "round-0002.safetensors cannot be read" in caplog.text  # each skipped file is named in a warning
