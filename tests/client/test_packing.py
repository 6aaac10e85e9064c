"""The client's packing mod (client/packing.py) and what the audit records of a packed reply (client/audit.py): the
handlers see tensors by name, a packed message gets a packed reply with the same tensors, an unpacked one an
unpacked reply, a layout that does not fit is refused naming it, and the audit describes the tensors a packed reply
carries."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict

from client.audit import describe
from client.guard import Guard
from client.packing import make_packing_mod
from shared.errors import PackingError, UnsafeBase
from shared.packing import LAYOUT_RECORD, PACKED_RECORD, is_packed, pack_content, unpack_content

pytestmark = pytest.mark.usefixtures("flower_task_identity")

BASE = {"base.a": np.arange(6, dtype=np.float32).reshape(3, 2), "base.b": np.zeros(4, np.float32)}
SPEC = {k: v.shape for k, v in BASE.items()}
packing_mod = make_packing_mod(lambda ctx: Guard(SPEC, "/nonexistent/fedhydra-store", "u", task="LaMP-3"))


def _content() -> RecordDict:
    return RecordDict(
        {"arrays": ArrayRecord({k: Array(v) for k, v in BASE.items()}), "config": ConfigRecord({"server-round": 2})}
    )


def _train(msg: Message, ctx) -> Message:
    """A handler as client.client_app's: reads tensors by name, answers with an update and metrics."""
    assert not is_packed(msg.content)
    assert int(msg.content["config"]["server-round"]) == 2
    arrays = {k: v.numpy() * 2 for k, v in msg.content["arrays"].items()}  # base.b is zeros: unchanged
    return Message(
        RecordDict(
            {
                "arrays": ArrayRecord({k: Array(v) for k, v in arrays.items()}),
                "metrics": MetricRecord({"num-examples": 3}),
            }
        ),
        reply_to=msg,
    )


def test_a_packed_message_gets_a_packed_reply_with_the_handlers_tensors():
    reply = packing_mod(Message(pack_content(_content()), dst_node_id=1, message_type="train"), None, _train)
    assert is_packed(reply.content)
    assert list(reply.content[LAYOUT_RECORD]["sent"]) == [0, 1]  # base.b came back unchanged: marked, not sent
    back = unpack_content(reply.content, reference={"arrays": BASE})
    assert {k: v.numpy().tolist() for k, v in back["arrays"].items()} == {k: (v * 2).tolist() for k, v in BASE.items()}
    assert dict(back["metrics"]) == {"num-examples": 3}


def test_an_unpacked_message_gets_an_unpacked_reply():
    reply = packing_mod(Message(_content(), dst_node_id=1, message_type="train"), None, _train)
    assert not is_packed(reply.content) and set(reply.content.keys()) == {"arrays", "metrics"}


def test_a_handler_that_changes_the_message_it_got_cannot_make_a_tensor_look_unchanged():
    def sneaky(msg, ctx):  # writes its update into the received record, then replies with the same values
        msg.content["arrays"]["base.a"] = Array(np.full((3, 2), 7, np.float32))
        return Message(RecordDict({"arrays": msg.content["arrays"]}), reply_to=msg)

    reply = packing_mod(Message(pack_content(_content()), dst_node_id=1, message_type="train"), None, sneaky)
    assert list(reply.content[LAYOUT_RECORD]["sent"]) == [0, 1]  # compared with what arrived, not with the record
    back = unpack_content(reply.content, reference={"arrays": BASE})
    assert back["arrays"]["base.a"].numpy().tolist() == [[7, 7]] * 3


def test_a_layout_that_does_not_fit_is_refused_before_any_handler_runs():
    content = pack_content(_content())
    content[LAYOUT_RECORD]["keys"] = ["base.a", "base.a"]
    called = []
    with pytest.raises(PackingError, match="'base.a' repeats"):
        packing_mod(Message(content, dst_node_id=1, message_type="train"), None, lambda m, c: called.append(m))
    assert not called


def test_the_audit_describes_the_tensors_a_packed_reply_carries():
    reply = packing_mod(Message(pack_content(_content()), dst_node_id=1, message_type="train"), None, _train)
    line = describe(reply)
    assert line["packed"] is True
    assert line["records"]["arrays"]["tensors"] == {"base.a": [[3, 2], "float32"], "base.b": [[4], "float32"]}
    assert line["records"]["arrays"]["unchanged"] == ["base.b"]
    assert set(line["records"]) == {"arrays", "metrics"}


def _hostile(layout_edit=None, flat=None) -> RecordDict:
    """A packed message of BASE with its layout or flat arrays replaced as a hostile server would."""
    content = pack_content(_content())
    if flat is not None:
        content[PACKED_RECORD] = ArrayRecord({k: Array(v) for k, v in flat.items()})
    if layout_edit is not None:
        layout = dict(content[LAYOUT_RECORD])
        layout.update(layout_edit(layout))
        content[LAYOUT_RECORD] = ConfigRecord(layout)
    return content


@pytest.mark.parametrize(
    "name,content,error,reason",
    [
        (
            "same-as under 500 names",
            lambda: _hostile(
                lambda _: {
                    "records": ["arrays"],
                    "record-of": [0] * 500,
                    "keys": [f"base.k{i}" for i in range(500)],
                    "dtypes": ["float32"] * 500,
                    "ndims": [1] * 500,
                    "dims": [4] * 500,
                    "same-as": [0] * 500,
                    "sent": [0] * 500,
                },
                flat={"float32": np.zeros(4, np.float32)},
            ),
            UnsafeBase,
            "holds 500 tensors; this device's base has 2",
        ),
        (
            "a huge flat array",
            lambda: _hostile(flat={"float32": np.zeros(10_000, np.float32)}),
            UnsafeBase,
            "bytes of tensors",
        ),
        ("a huge shape", lambda: _hostile(lambda _: {"dims": [3, 2, 10**9]}), UnsafeBase, "bytes of tensors"),
        ("a shape of another tensor", lambda: _hostile(lambda _: {"dims": [2, 3, 4]}), UnsafeBase, "has shape"),
        ("a long dims list", lambda: _hostile(lambda _: {"dims": [1] * 100_000}), PackingError, "'dims' holds 100000"),
        ("a tensor marked sent", lambda: _hostile(lambda _: {"sent": [0, 1]}), UnsafeBase, "marked as sent back"),
        ("an integer dtype", lambda: _hostile(lambda _: {"dtypes": ["int64", "float32"]}), UnsafeBase, "dtype int64"),
        (
            "a second record",
            lambda: _hostile(lambda _: {"records": ["arrays", "x"], "record-of": [0, 1]}),
            UnsafeBase,
            "lacks 1 shared tensors",
        ),
    ],
)
def test_a_hostile_layout_is_refused_by_the_guard_before_anything_is_unpacked(
    name, content, error, reason, monkeypatch
):
    """Refused on the layout and the flat arrays' byte length: nothing is unpacked, no handler runs."""
    import client.packing

    unpacked = []
    monkeypatch.setattr(client.packing, "flat_views", lambda *a, **k: unpacked.append(a))
    called = []
    with pytest.raises(error, match=reason):
        packing_mod(Message(content(), dst_node_id=1, message_type="train"), None, lambda m, c: called.append(m))
    assert not called and not unpacked, name


def test_a_base_that_breaks_a_value_rule_is_refused_on_views_of_the_message_before_any_array_is_made(monkeypatch):
    import client.packing

    made = []
    monkeypatch.setattr(client.packing, "unpack_content", lambda *a, **k: made.append(a))
    bad = {"float32": np.array([0, 1, 2, 3, 4, np.nan, 0, 0, 0, 0], np.float32)}
    with pytest.raises(UnsafeBase, match="'base.a' holds NaN"):
        packing_mod(Message(_hostile(flat=bad), dst_node_id=1, message_type="train"), None, _train)
    assert not made


def test_a_tensor_named_twice_is_one_array_not_a_copy_per_name():
    twice = RecordDict(
        {"arrays": ArrayRecord({"base.a": Array(np.ones(4, np.float32)), "base.b": Array(np.ones(4, np.float32))})}
    )
    packed = pack_content(twice)
    assert list(packed[LAYOUT_RECORD]["same-as"]) == [0, 0]
    back = unpack_content(packed)
    assert back["arrays"]["base.a"].data is back["arrays"]["base.b"].data  # one serialization, two names
