"""Packing a message's tensors into one array per dtype (shared/packing.py): lossless round-trips, also through
Flower's own serialization, fewer objects for the shared base, and a clear error for every layout that does not
describe its arrays."""

from __future__ import annotations

import numpy as np
import pytest

from shared.errors import PackingError
from shared.packing import (
    LAYOUT_RECORD,
    PACKED_RECORD,
    array_tensors,
    is_packed,
    pack_arrays,
    pack_content,
    packed_tensors,
    unpack_arrays,
    unpack_content,
)


def _records() -> dict[str, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    return {
        "arrays": {
            "base.w": rng.normal(size=(3, 4)).astype(np.float32),
            "base.zero": np.zeros((2, 2), np.float32),
            "base.zero2": np.zeros((2, 2), np.float32),
            "base.scalar": np.float32(1.5),
            "base.empty": np.zeros((0, 3), np.float32),
            "base.steps": np.arange(5, dtype=np.int64),
            "base.half": rng.normal(size=7).astype(np.float16),
        },
        "nothing": {},
        "more": {"base.w": rng.normal(size=2)},
    }


def test_round_trip_keeps_records_keys_order_dtypes_shapes_and_values():
    records = _records()
    flat, layout = pack_arrays(records)
    assert sorted(flat) == ["float16", "float32", "float64", "int64"]
    assert all(v.ndim == 1 for v in flat.values())
    back = unpack_arrays(flat, layout, reference=None)
    assert list(back) == list(records)
    for name, tensors in records.items():
        assert list(back[name]) == list(tensors)
        for key, value in tensors.items():
            value = np.asarray(value)
            assert back[name][key].dtype == value.dtype and back[name][key].shape == value.shape
            assert np.array_equal(back[name][key], value)


def test_equal_tensors_are_stored_once():
    records = _records()
    flat, layout = pack_arrays(records)
    keys = layout["keys"]
    assert layout["same-as"][keys.index("base.zero2")] == keys.index("base.zero")
    assert flat["float32"].size == 12 + 4 + 1 + 0  # the second zero matrix is not stored
    # a different shape or dtype is never taken for the same tensor
    flat, layout = pack_arrays(
        {"a": {"x": np.zeros(4, np.float32), "y": np.zeros((2, 2), np.float32), "z": np.zeros(4, np.float64)}}
    )
    assert layout["same-as"] == [0, 1, 2]


def test_tensors_sent_back_unchanged_are_marked_not_stored_and_taken_from_the_message_answered():
    rng = np.random.default_rng(2)
    sent = {
        "arrays": {
            "base.a": rng.normal(size=(3, 2)).astype(np.float32),
            "base.b": np.ones(4, np.float32),
            "base.c": np.ones(4, np.float32),
        }
    }
    reply = {
        "arrays": {
            "base.a": sent["arrays"]["base.a"] + 1,
            "base.b": np.ones(4, np.float32),
            "base.c": np.ones(4, np.float64),
        },  # same values, other dtype: not the tensor that was sent
        "other": {"base.b": np.ones(4, np.float32)},
    }  # same values, other record: not the tensor that was sent
    flat, layout = pack_arrays(reply, reference=sent)
    assert layout["sent"] == [0, 1, 0, 0]
    assert flat["float32"].size == 6 + 4 and flat["float64"].size == 4
    back = unpack_arrays(flat, layout, reference=sent)
    for name, tensors in reply.items():
        for key, value in tensors.items():
            assert back[name][key].dtype == value.dtype and np.array_equal(back[name][key], value)
    # the receiver must hold what it sent, with the same dtype and shape
    with pytest.raises(PackingError, match="'base.b' of record 'arrays' is marked as sent back unchanged"):
        unpack_arrays(flat, layout, reference=None)
    with pytest.raises(PackingError, match="no such float32 \\(4,\\) tensor"):
        unpack_arrays(flat, layout, reference={"arrays": {"base.b": np.ones(5, np.float32)}})


def test_the_layout_says_what_a_packed_message_carries():
    from flwr.app import Array, ArrayRecord, RecordDict

    content = RecordDict(
        {
            "arrays": ArrayRecord(
                {"base.a": Array(np.ones((2, 2), np.float32)), "base.b": Array(np.zeros(3, np.float32))}
            )
        }
    )
    packed = pack_content(content, reference={"arrays": {"base.b": np.zeros(3, np.float32)}})
    assert packed_tensors(packed) == {
        "arrays": {"base.a": ([2, 2], "float32", False), "base.b": ([3], "float32", True)}
    }
    back = array_tensors(unpack_content(packed, reference=array_tensors(content)))
    assert back["arrays"]["base.b"].tolist() == [0, 0, 0]


def test_flower_serialization_round_trip_and_fewer_objects():
    from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict
    from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects
    from flwr.supercore.inflatable.inflatable_utils import inflate_object_from_contents

    rng = np.random.default_rng(1)
    tensors = {f"base.t{i}": rng.normal(size=(16, 8)).astype(np.float32) for i in range(40)}
    content = RecordDict(
        {
            "arrays": ArrayRecord({k: Array(v) for k, v in tensors.items()}),
            "metrics": MetricRecord({"num-examples": 3}),
            "config": ConfigRecord({"x": "y"}),
        }
    )
    packed = pack_content(content)
    assert is_packed(packed) and not is_packed(content)
    assert set(packed.keys()) == {"metrics", "config", PACKED_RECORD, LAYOUT_RECORD}
    before, after = get_all_nested_objects(content), get_all_nested_objects(packed)
    assert len(before) >= 2 * len(tensors) and len(after) <= 7
    wire = {k: o.deflate() for k, o in after.items()}
    back = unpack_content(inflate_object_from_contents(packed.object_id, wire))
    assert set(back.keys()) == {"arrays", "metrics", "config"}
    assert list(back["arrays"].keys()) == list(tensors)
    assert all(np.array_equal(back["arrays"][k].numpy(), v) for k, v in tensors.items())
    assert dict(back["metrics"]) == {"num-examples": 3} and dict(back["config"]) == {"x": "y"}


def test_content_without_arrays_is_left_as_it_is():
    from flwr.app import ConfigRecord, RecordDict

    content = RecordDict({"config": ConfigRecord({"role": "train"})})
    assert pack_content(content) is content


def test_refuses_to_pack_over_its_own_record_names():
    from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict

    content = RecordDict({"arrays": ArrayRecord({"a": Array(np.ones(2, np.float32))}), LAYOUT_RECORD: ConfigRecord()})
    with pytest.raises(PackingError, match="already has a record"):
        pack_content(content)


def _bad(field: str, value):
    flat, layout = pack_arrays(
        {
            "arrays": {
                "a": np.ones((2, 3), np.float32),
                "b": np.ones(2, np.float32),
                "c": np.zeros(2, np.float32),
                "d": np.zeros(2, np.float32),
            }
        }
    )
    layout = {**layout, field: value}
    return flat, layout


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("format", 2, "layout format 2"),
        ("keys", "a", "'keys' missing or not a list"),
        ("ndims", [2, 1, 1], "differ in length"),
        ("dims", [2, 3, 2, 2], "'dims' holds 4 sizes"),
        ("dims", [2, 3, 2, 2, 2, 2], "'dims' holds 6 sizes, 'ndims' asks 5"),
        ("dims", [2, 3, 3, 2, 2], "tensor 'c' \\(2,\\) runs past the end"),
        ("dims", [2, 2, 2, 2, 2], "holds 10 values, its layout describes 8"),
        ("dims", [3, 3, 2, 2, 2], "tensor 'b' \\(2,\\) runs past the end"),
        ("dims", [2, -3, 2, 2, 2], "whole numbers >= 0"),
        ("keys", ["a", "a", "c", "d"], "tensor 'a' repeats"),
        ("record-of", [0, 1, 0, 0], "of record 1, the layout has 1"),
        ("dtypes", ["float32", "int64", "float32", "float32"], "no int64 array came"),
        ("same-as", [0, 1, 2, 0], "'same-as' 0, which is no earlier stored tensor"),
        ("same-as", [0, 1, 3, 3], "'same-as' 3"),
        ("records", ["arrays", "arrays"], "record name repeats"),
        ("sent", [0, 0, 0, 2], "'sent' must hold whole numbers >= 0 and <= 1"),
        ("sent", [0, 0, 0], "differ in length"),
        (
            "sent",
            [0, 1, 0, 0],
            "'b' of record 'arrays' is marked as sent back unchanged, and the message it answers has no",
        ),
    ],
)
def test_layouts_that_do_not_fit_are_refused_naming_what(field, value, message):
    flat, layout = _bad(field, value)
    with pytest.raises(PackingError, match=message):
        unpack_arrays(flat, layout, reference=None)


def test_flat_arrays_of_the_wrong_dtype_or_shape_are_refused():
    flat, layout = pack_arrays({"arrays": {"a": np.ones(4, np.float32)}})
    with pytest.raises(PackingError, match="must be 1-D of dtype float32"):
        unpack_arrays({"float32": flat["float32"].astype(np.float64)}, layout, reference=None)
    with pytest.raises(PackingError, match="must be 1-D"):
        unpack_arrays({"float32": flat["float32"].reshape(2, 2)}, layout, reference=None)


def test_packed_content_without_its_arrays_is_refused():
    from flwr.app import ConfigRecord, RecordDict

    _, layout = pack_arrays({"arrays": {"a": np.ones(2, np.float32)}})
    with pytest.raises(PackingError, match="without its array record"):
        unpack_content(RecordDict({LAYOUT_RECORD: ConfigRecord(layout)}))


def test_objects_are_refused():
    with pytest.raises(PackingError, match="dtype object"):
        pack_arrays({"arrays": {"a": np.array(["x", None], dtype=object)}})
