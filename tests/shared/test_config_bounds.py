"""Every config key has a documented range (issue 28, probe 4): declared once in shared/config.py, stated in its
comment in pyproject.toml (the two agree), checked before use with one typed error naming the key and the bound; a
device's node config can lower the maxima. Property-based (hypothesis): no value outside its range is ever let
through, whatever its type."""

from __future__ import annotations

import math
import re
import tomllib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.config import (
    BOUNDS,
    CHOICES,
    FLAGS,
    TEXT_LIMITS,
    RunConfig,
    check_number,
    default_mapping,
    describe_range,
    node_caps,
    pyproject_path,
)
from shared.errors import ConfigError, OutOfRange


def _comments() -> dict[str, list[str]]:
    """Each key of ``[tool.flwr.app.config]`` with the comment lines just above it."""
    out, block, inside = {}, [], False
    for line in pyproject_path().read_text().splitlines():
        if line.startswith("["):
            inside, block = line.strip() == "[tool.flwr.app.config]", []
            continue
        if not inside:
            continue
        if line.startswith("#"):
            block.append(line.lstrip("# ").rstrip())
        elif m := re.match(r"^([a-z0-9.-]+) = ", line):
            out[m.group(1)] = block
            block = []
        else:
            block = []
    return out


def test_every_key_states_its_declared_range_in_its_pyproject_comment():
    comments = _comments()
    declared = set(BOUNDS) | set(CHOICES) | set(TEXT_LIMITS) | set(FLAGS)
    assert set(comments) == declared == set(default_mapping())
    assert len(declared) == len(BOUNDS) + len(CHOICES) + len(TEXT_LIMITS) + len(FLAGS)  # each declared once
    for key, lines in comments.items():
        stated = [line for line in lines if line.startswith("Range: ")]
        assert stated == [f"Range: {describe_range(key)}."], key


def test_every_default_lies_in_its_range():
    defaults = default_mapping()
    for key, (low, high) in BOUNDS.items():
        assert low <= defaults[key] <= high, key
        assert isinstance(low, int) == isinstance(high, int), key
    for key, names in CHOICES.items():
        assert defaults[key] in names, key
    assert all(len(defaults[k]) <= n for k, n in TEXT_LIMITS.items())
    assert all(isinstance(defaults[k], bool) for k in FLAGS)


@pytest.mark.parametrize(
    "key,value",
    [
        ("federation.local-epochs", 1e9),
        ("train.epochs", 1e9),
        ("train.fit-steps", 1e9),
        ("model.lora-rank", 1e6),
        ("pool.n-samples", 1e6),
        ("model.max-query-tokens", 1e6),
        ("llm.calls-per-user", 1e9),
        ("train.lr", math.nan),
        ("train.lr", math.inf),
        ("federation.proximal-mu", -1.0),
        ("run.seed", -1),
        ("llm.concurrency", True),
    ],
)
def test_issue_28s_values_are_refused_naming_the_key_and_the_bound(key, value):
    with pytest.raises(OutOfRange) as caught:
        RunConfig.from_mapping({**default_mapping(), key: value})
    assert caught.value.key == key and (caught.value.low, caught.value.high) == BOUNDS[key]
    if not isinstance(value, bool):
        assert f"config key {key!r} must be >= " in str(caught.value)


def _in_range(key: str, value) -> bool:
    low, high = BOUNDS[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if isinstance(low, int) and isinstance(value, float) and not value.is_integer():
        return False
    return low <= value <= high


anything = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**70), 2**70),
    st.booleans(),
    st.text(max_size=5),
    st.none(),
)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(sorted(BOUNDS)), anything)
def test_no_value_outside_its_range_is_ever_let_through(key, value):
    """``check_number`` lets a value through exactly when it is in range; the run config refuses every value out of
    range (an in-range one may still break a key's one more rule, named in its comment)."""
    if _in_range(key, value):
        assert check_number(key, value) == value
    else:
        with pytest.raises(OutOfRange):
            check_number(key, value)
        with pytest.raises(ConfigError):
            RunConfig.from_mapping({**default_mapping(), key: value})


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from(sorted(k for k, (low, high) in BOUNDS.items() if isinstance(low, int) and high > low + 1)),
    st.data(),
)
def test_a_device_cap_lowers_the_maximum_a_run_may_ask(key, data):
    low, high = BOUNDS[key]
    cap = data.draw(st.integers(low, min(high, low + 1000)))
    value = data.draw(st.integers(low, min(high, low + 2000)))
    if value <= cap:
        assert check_number(key, value, node_caps({f"cap-{key}": cap})) == value
    else:
        with pytest.raises(OutOfRange, match="capped by this device's node config"):
            check_number(key, value, node_caps({f"cap-{key}": cap}))


def test_a_cap_is_itself_checked_and_names_a_known_key():
    with pytest.raises(OutOfRange, match="'federation.local-epochs'"):
        node_caps({"cap-federation.local-epochs": 1e9})
    with pytest.raises(ConfigError, match="no numeric config key"):
        node_caps({"cap-device.store-dir": 1})
    assert node_caps({"user-id": "u", "partition-id": 0}) == {}
    capped = RunConfig.from_mapping(
        {**default_mapping(), "federation.local-epochs": 1}, caps={"federation.local-epochs": 1}
    )
    assert capped.federation.local_epochs == 1


def test_text_keys_are_bounded_in_length():
    with pytest.raises(ConfigError, match="'device.store-dir' must be at most 4096 characters"):
        RunConfig.from_mapping({**default_mapping(), "device.store-dir": "x" * 5000})


def test_the_pyproject_table_parses_as_flower_reads_it():
    """Flower flattens the table's nested (dotted) keys to ``"group.name"`` in ``context.run_config``; the
    ``fedhydra`` command's :func:`default_mapping` reads the same keys."""
    from flwr.common.config import flatten_dict

    with open(pyproject_path(), "rb") as fh:
        assert flatten_dict(tomllib.load(fh)["tool"]["flwr"]["app"]["config"]) == default_mapping()
