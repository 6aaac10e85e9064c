"""The run's configuration (shared/config.py): its parts have their real types, and every config dataclass checks
itself on construction, so one built or replaced directly is refused as one read from pyproject would be, by a
ConfigError naming the key (or field) and the value."""

from __future__ import annotations

from dataclasses import fields, replace

import pytest

from shared.config import STRATEGIES, FederationConfig, RunConfig, default_mapping
from shared.errors import ConfigError, UnknownTaskError
from shared.hydra.candidates import PoolConfig
from shared.hydra.episodes import EpisodeConfig
from shared.hydra.infer import InferenceConfig
from shared.hydra.settings import TrainConfig
from shared.hydra.spec import ModelConfig


@pytest.fixture(scope="module")
def cfg() -> RunConfig:
    return RunConfig.from_mapping(default_mapping())


def test_the_parts_have_their_real_types(cfg):
    kinds = {
        "federation": FederationConfig,
        "model": ModelConfig,
        "train": TrainConfig,
        "episodes": EpisodeConfig,
        "inference": InferenceConfig,
        "pool": PoolConfig,
    }
    annotations = {f.name: f.type for f in fields(RunConfig)}
    for name, kind in kinds.items():
        assert annotations[name] == kind.__name__
        assert type(getattr(cfg, name)) is kind


@pytest.mark.parametrize(
    "change,message",
    [
        (dict(protocol="mixed"), "config key 'data.protocol' must be 'disjoint' or 'history', got 'mixed'"),
        (dict(train_users=-1), "config key 'data.train-users' must be >= 0, got -1"),
        (dict(llm_concurrency=0), "config key 'llm.concurrency' must be >= 1, got 0"),
        (dict(test_users="3"), "config key 'data.test-users' must be a number, got '3'"),
        (dict(margin_folds=1), "config key 'pool.margin-folds' must be 0"),
        (
            dict(protocol="history", free_train_users=2),
            "config key 'data.free-train-users' needs data.protocol = 'disjoint'",
        ),
    ],
)
def test_a_run_config_built_directly_is_checked(cfg, change, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        replace(cfg, **change)


def test_an_unknown_task_is_refused_on_construction(cfg):
    with pytest.raises(UnknownTaskError, match="LaMP-99"):
        replace(cfg, task="LaMP-99")


@pytest.mark.parametrize(
    "change,message",
    [
        (
            dict(strategy="fedsum"),
            "config key 'federation.strategy' must be fedavg, fedprox, fedadam, fedmedian or fedtrimmedavg, "
            "got 'fedsum'",
        ),
        (dict(fraction_train=0.0), "config key 'federation.fraction-train' must be in (0, 1], got 0.0"),
        (dict(num_rounds=0), "config key 'federation.num-rounds' must be >= 1, got 0"),
        (dict(round_timeout=0.5), "config key 'federation.round-timeout' must be >= 1.0, got 0.5"),
    ],
)
def test_a_federation_config_built_directly_is_checked(cfg, change, message):
    with pytest.raises(ConfigError) as caught:
        replace(cfg.federation, **change)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    "build,message",
    [
        (lambda: PoolConfig(temperature=0.0), "PoolConfig.temperature must be > 0, got 0.0"),
        (lambda: PoolConfig(n_samples=-1), "PoolConfig.n_samples must be >= 0, got -1"),
        (lambda: PoolConfig(style="chat"), "PoolConfig.style must be one of ('turns', 'inline'), got 'chat'"),
        (lambda: EpisodeConfig(rerank_m=0), "EpisodeConfig.rerank_m must be >= 1, got 0"),
        (lambda: InferenceConfig(k=0), "InferenceConfig.k must be >= 1, got 0"),
        (lambda: ModelConfig(max_item_tokens=4), "ModelConfig.max_item_tokens must be >= 8, got 4"),
    ],
)
def test_the_parts_built_directly_are_checked(build, message):
    with pytest.raises(ConfigError) as caught:
        build()
    assert str(caught.value) == message


@pytest.mark.parametrize(
    "key,value,message",
    [
        (
            "federation.strategy",
            "fedsum",
            "config key 'federation.strategy' must be fedavg, fedprox, fedadam, fedmedian or fedtrimmedavg, "
            "got 'fedsum'",
        ),
        ("federation.fraction-train", 1.5, "config key 'federation.fraction-train' must be >= 0 and <= 1, got 1.5"),
        ("data.protocol", "mixed", "config key 'data.protocol' must be 'disjoint' or 'history', got 'mixed'"),
        (
            "pool.margin-folds",
            1,
            "config key 'pool.margin-folds' must be 0 (no margin rule) or >= 2 (folds of training users)",
        ),
        ("pool.temperature", 0, "config key 'pool.temperature' must be > 0, got 0.0"),
        ("prompt.retrieve-m", 0, "config key 'prompt.retrieve-m' must be >= 1 and <= 100, got 0"),
    ],
)
def test_the_pyproject_keys_are_named_as_before(key, value, message):
    with pytest.raises(ConfigError) as caught:
        RunConfig.from_mapping({**default_mapping(), key: value})
    assert str(caught.value) == message


def test_every_strategy_name_is_documented():
    assert list(STRATEGIES) == ["fedavg", "fedprox", "fedadam", "fedmedian", "fedtrimmedavg"]
    assert all(text.lower().startswith(name) for name, text in STRATEGIES.items())


def test_eval_methods_are_the_few_that_matter_by_default_all_or_the_named_ones_and_an_unknown_name_is_refused():
    from shared.config import RunConfig, default_mapping

    assert RunConfig.from_mapping(default_mapping()).eval_methods == (
        "input",
        "style-rules",
        "user-mean",
        "rag",
        "hydra",
        "hydra-shared-head",
    )
    assert RunConfig.from_mapping({**default_mapping(), "eval.methods": "all"}).eval_methods == ()
    chosen = RunConfig.from_mapping({**default_mapping(), "eval.methods": "user-ridge,hydra  hydra-shared-head"})
    assert chosen.eval_methods == ("user-ridge", "hydra", "hydra-shared-head")
    with pytest.raises(ConfigError, match="eval.methods': unknown method 'hydra-best'"):
        RunConfig.from_mapping({**default_mapping(), "eval.methods": "hydra hydra-best"})


@pytest.mark.parametrize(
    "key, field", [("federation.local-episodes", "local_episodes"), ("federation.max-in-flight", "max_in_flight")]
)
def test_the_scale_keys_are_off_by_default_and_checked(key, field):
    """`federation.local-episodes` and `federation.max-in-flight` (0 = every episode, every message at once) reject a
    negative value by name."""
    assert getattr(RunConfig.from_mapping(default_mapping()).federation, field) == 0
    assert getattr(RunConfig.from_mapping({**default_mapping(), key: 4}).federation, field) == 4
    with pytest.raises(ConfigError, match=key):
        RunConfig.from_mapping({**default_mapping(), key: -1})
