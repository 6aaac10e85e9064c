from __future__ import annotations

import numpy as np
import pytest

from lab.faults.mod import FAULTS, corrupt
from server.validation import InvalidUpdate, expected_spec, validate_update

SENT = {
    "base.adapter.trunk.weight": np.zeros((3, 4), np.float32),
    "base.reranker.lora.x.lora_A.weight": np.ones(5, np.float32),
}
SPEC = expected_spec(SENT)


def good():
    return {k: v + 0.01 for k, v in SENT.items()}


def test_a_well_formed_update_passes():
    validate_update(good(), SPEC, num_examples=7)


@pytest.mark.parametrize(
    "fault,reason",
    [
        ("nan", "NaN or Inf"),
        ("unknown-key", "unknown key 'base.adapter.extra'"),
        ("personal-key", "personal key 'head.adapter.weight'"),
        ("wrong-shape", "has shape"),
        ("wrong-dtype", "dtype float64"),
        ("scale", "magnitude"),
    ],
)
def test_each_injected_fault_is_rejected_with_a_reason(fault, reason):
    update = corrupt(good(), SENT, fault)
    if fault == "scale":  # a large enough scale leaves the plausible range
        update = {k: v * 1e4 for k, v in update.items()}
    with pytest.raises(InvalidUpdate, match=reason):
        validate_update(update, SPEC, num_examples=3)


def test_missing_tensors_and_bad_counts_are_rejected():
    with pytest.raises(InvalidUpdate, match="lacks 1 shared tensors"):
        validate_update({"base.adapter.trunk.weight": SENT["base.adapter.trunk.weight"]}, SPEC, num_examples=1)
    for count in (0, -1, float("nan"), None, "3", True):
        with pytest.raises(InvalidUpdate, match="num-examples"):
            validate_update(good(), SPEC, num_examples=count)


def test_fault_catalogue_is_complete():
    assert set(FAULTS) == {
        "raise",
        "crash-after-train",
        "kill",
        "extra-metric",
        "nan",
        "scale",
        "poison",
        "unknown-key",
        "personal-key",
        "wrong-shape",
        "wrong-dtype",
    }
    with pytest.raises(ValueError, match="unknown fault"):
        corrupt(good(), SENT, "gremlins")
