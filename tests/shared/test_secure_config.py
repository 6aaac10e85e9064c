"""The secure-aggregation keys (secagg.*) of the run config (shared/config.py): validated, and what needs single updates
refused at start with a typed error that says why."""

from __future__ import annotations

from dataclasses import replace

import pytest

from shared.config import RunConfig, SecureAggregationConfig, default_mapping
from shared.errors import ConfigError, SecureAggregationConflict

SECURE = {"secagg.enabled": True, "federation.outlier-norm-factor": 0.0}


def test_the_defaults_are_off_and_sound():
    cfg = RunConfig.from_mapping(default_mapping())
    assert cfg.federation.secure_aggregation is False
    s = cfg.federation.secagg
    assert (s.num_shares, s.threshold, s.clipping_range, s.quantization_range, s.max_weight) == (
        0,
        0.67,
        16.0,
        2**23,
        200.0,
    )
    assert s.max_clients == 511  # 2^32 / 2^23 - 1: the masked sum cannot wrap around
    on = RunConfig.from_mapping({**default_mapping(), **SECURE})
    assert on.federation.secure_aggregation is True


@pytest.mark.parametrize(
    "overrides,why",
    [
        (
            {"federation.strategy": "fedmedian"},
            "federation.strategy = 'fedmedian' takes the coordinate-wise median of every update",
        ),
        (
            {"federation.strategy": "fedtrimmedavg"},
            "federation.strategy = 'fedtrimmedavg' trims the largest and smallest values of every update",
        ),
        (
            {"federation.outlier-norm-factor": 10.0},
            "federation.outlier-norm-factor = 10 compares each update's norm with the round's median",
        ),
        ({"federation.min-train-nodes": 1}, "federation.min-train-nodes = 1: the sum of one update is that update"),
    ],
)
def test_what_needs_single_updates_is_refused_at_start_saying_why(overrides, why):
    with pytest.raises(SecureAggregationConflict) as caught:
        RunConfig.from_mapping({**default_mapping(), **SECURE, **overrides})
    assert str(caught.value).startswith("secagg.enabled = true cannot combine with: ")
    assert why in str(caught.value)
    assert isinstance(caught.value, ConfigError)  # a config error like any other
    RunConfig.from_mapping({**default_mapping(), **overrides, "secagg.enabled": False})  # fine without it


def test_every_conflict_is_named_at_once_and_a_config_built_directly_is_checked_too():
    with pytest.raises(SecureAggregationConflict) as caught:
        RunConfig.from_mapping({**default_mapping(), "secagg.enabled": True, "federation.strategy": "fedmedian"})
    assert "fedmedian" in str(caught.value) and "federation.outlier-norm-factor = 10" in str(caught.value)
    plain = RunConfig.from_mapping(default_mapping()).federation
    with pytest.raises(SecureAggregationConflict, match="federation.outlier-norm-factor"):
        replace(plain, secure_aggregation=True)


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("secagg.num-shares", 2, "config key 'secagg.num-shares' must be 0 (every client of the round) or >= 3, got 2"),
        ("secagg.threshold", 0.0, "config key 'secagg.threshold' must be in (0, 1], got 0.0"),
        ("secagg.clipping-range", 0.0, "config key 'secagg.clipping-range' must be > 0, got 0.0"),
        (
            "secagg.quantization-range",
            1,
            "config key 'secagg.quantization-range' must be >= 2 and <= 2147483647, got 1",
        ),
        ("secagg.max-weight", -1.0, "config key 'secagg.max-weight' must be >= 0 and <= 1e+09, got -1.0"),
        ("secagg.num-shares", 3.5, "config key 'secagg.num-shares' must be int, got 3.5"),
    ],
)
def test_the_secagg_keys_are_validated(key, value, message):
    with pytest.raises(ConfigError) as caught:
        RunConfig.from_mapping({**default_mapping(), **SECURE, key: value})
    assert str(caught.value) == message


def test_a_secagg_config_built_directly_is_checked():
    with pytest.raises(ConfigError, match="'secagg.threshold' must be in"):
        SecureAggregationConfig(threshold=1.5)
    with pytest.raises(ConfigError, match="'secagg.num-shares' must be an integer"):
        SecureAggregationConfig(num_shares=True)
