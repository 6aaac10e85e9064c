"""The server's messages travel packed (server/packing.py): a fake grid whose nodes answer as FedHydra clients do
(unpack, train, pack the reply, marking the tensor they did not change) sees only packed messages, and the rounds see
only whole unpacked replies; a reply whose layout does not fit becomes an error reply naming it, an unpacked reply
passes, and the windowed path packs too."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict

from server.packing import PackedGrid
from server.window import WindowedGrid
from shared.packing import LAYOUT_RECORD, PACKED_RECORD, array_tensors, is_packed, pack_content, unpack_content

pytestmark = pytest.mark.usefixtures("flower_task_identity")

BASE = {"base.a": np.ones((3, 2), np.float32), "base.b": np.zeros(4, np.float32)}


def _base(node: int) -> dict[str, np.ndarray]:
    """What the server sends node ``node`` (each its own ``base.b``, so that a reply's unchanged tensor must come from
    the very message it answers)."""
    return {"base.a": BASE["base.a"], "base.b": BASE["base.b"] + node}


def _message(node: int) -> Message:
    return Message(
        RecordDict(
            {
                "arrays": ArrayRecord({k: Array(v) for k, v in _base(node).items()}),
                "config": ConfigRecord({"server-round": 1}),
            }
        ),
        dst_node_id=node,
        message_type="train",
    )


class ClientsGrid:
    """Nodes that answer like FedHydra's ClientApp: unpack, add 1 to ``base.a`` (``base.b`` stays as sent), pack the
    reply against what they received."""

    def __init__(self, tamper: set[int] = frozenset(), plain: set[int] = frozenset()):
        self.seen: list[RecordDict] = []
        self.tamper, self.plain = tamper, plain
        self.pushed: list[Message] = []
        self.ids = 0

    def _answer(self, msg: Message) -> Message:
        self.seen.append(msg.content)
        received = unpack_content(msg.content)
        update = {k: v.numpy() + (k == "base.a") for k, v in received["arrays"].items()}
        content = RecordDict(
            {
                "arrays": ArrayRecord({k: Array(v.astype(np.float32)) for k, v in update.items()}),
                "metrics": MetricRecord({"num-examples": 2}),
            }
        )
        node = msg.metadata.dst_node_id
        if node not in self.plain:
            content = pack_content(content, reference=array_tensors(received))
            assert list(content[LAYOUT_RECORD]["sent"]) == [0, 1]
        if node in self.tamper:  # a layout that claims more values than were sent
            content[LAYOUT_RECORD]["dims"] = [4, 2, 4]  # base.a (4, 2): 8 values, 6 came
        return Message(content, reply_to=msg)

    def send_and_receive(self, messages, *, timeout=None):
        return self.pull_messages(self.push_messages(messages))

    def push_messages(self, messages):
        messages = list(messages)
        for m in messages:  # as Flower's grid: a fresh id written into each message pushed
            self.ids += 1
            m.metadata.__dict__["_message_id"] = f"m{self.ids}"
        self.pushed += messages
        return [m.metadata.message_id for m in messages]

    def pull_messages(self, ids):
        done = [m for m in self.pushed if m.metadata.message_id in ids]
        self.pushed = [m for m in self.pushed if m not in done]
        return [self._answer(m) for m in done]


def _check_replies(replies, nodes):
    assert sorted(r.metadata.src_node_id for r in replies) == nodes
    for r in replies:
        assert not is_packed(r.content) and set(r.content.keys()) == {"arrays", "metrics"}
        assert list(r.content["arrays"].keys()) == list(BASE)
        node = r.metadata.src_node_id
        assert np.array_equal(r.content["arrays"]["base.a"].numpy(), BASE["base.a"] + 1)
        assert np.array_equal(r.content["arrays"]["base.b"].numpy(), _base(node)["base.b"])  # from what it was sent


def test_messages_go_packed_and_replies_come_back_unpacked():
    inner = ClientsGrid()
    replies = PackedGrid(inner).send_and_receive([_message(n) for n in (1, 2, 3)])
    assert all(set(c.keys()) == {"config", PACKED_RECORD, LAYOUT_RECORD} for c in inner.seen)
    _check_replies(replies, [1, 2, 3])


def test_the_windowed_path_packs_too():
    inner = ClientsGrid()
    replies = PackedGrid(WindowedGrid(inner, 2)).send_and_receive([_message(n) for n in (1, 2, 3, 4, 5)], timeout=10)
    assert len(inner.seen) == 5 and all(is_packed(c) for c in inner.seen)
    _check_replies(replies, [1, 2, 3, 4, 5])


def test_a_reply_whose_layout_does_not_fit_becomes_an_error_naming_it():
    replies = PackedGrid(ClientsGrid(tamper={2})).send_and_receive([_message(n) for n in (1, 2, 3)])
    bad = [r for r in replies if r.has_error()]
    assert [r.metadata.src_node_id for r in bad] == [2]
    assert "PackingError" in bad[0].error.reason and "runs past the end" in bad[0].error.reason
    _check_replies([r for r in replies if not r.has_error()], [1, 3])


def test_an_unpacked_reply_passes_as_it_is():
    replies = PackedGrid(ClientsGrid(plain={1})).send_and_receive([_message(n) for n in (1, 2)])
    _check_replies(replies, [1, 2])


def test_messages_without_tensors_are_not_touched():
    inner = ClientsGrid()
    inner._answer = lambda m: (inner.seen.append(m.content), Message(RecordDict(), reply_to=m))[1]
    msg = Message(RecordDict({"config": ConfigRecord({"ask": "role"})}), dst_node_id=1, message_type="query")
    PackedGrid(inner).send_and_receive([msg])
    assert set(inner.seen[0].keys()) == {"config"}
