"""A ClientApp mod that unpacks the server's packed messages and packs the replies to them (:mod:`shared.packing`).

A message the server packed is unpacked before any other handler sees it (SecAgg+, DP clipping and the handlers of
:mod:`client.client_app` read tensors by name, as always); the reply to it is packed again, so a SuperNode pushes a
handful of objects instead of one per tensor, and a tensor the client sends back unchanged (equal to the one it
received under the same record and key; compared with a copy taken before any handler ran) is marked, not sent. A
message that came unpacked gets an unpacked reply: a server that does not pack is answered in its own layout. A
layout that does not describe its arrays raises :class:`shared.errors.PackingError`, which Flower sends back as the
message's error.

Example:
    >>> import numpy as np
    >>> from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict
    >>> from shared.packing import pack_content
    >>> class Msg:  # what the mod reads of a Flower Message
    ...     def __init__(self, content): self.content = content
    ...     def has_content(self): return True
    >>> sent = RecordDict({"arrays": ArrayRecord({"base.a": Array(np.ones(3, np.float32))}), "config": ConfigRecord()})
    >>> def handler(m, ctx):  # what the app's handlers see: the tensors by name
    ...     assert list(m.content["arrays"].keys()) == ["base.a"]
    ...     return Msg(RecordDict({"arrays": m.content["arrays"]}))
    >>> reply = packing_mod(Msg(pack_content(sent)), None, handler).content
    >>> sorted(reply.keys()), reply["packing"]["sent"]  # base.a came back unchanged: marked, not sent
    (['packed', 'packing'], [1])
"""

from __future__ import annotations

from flwr.app import Context, Message

from shared.packing import array_tensors, is_packed, pack_content, unpack_content

__all__ = ["packing_mod"]


def packing_mod(msg: Message, ctx: Context, call_next) -> Message:
    """Unpack a packed message, call the next handler, pack its reply (see the module docstring)."""
    if not msg.has_content() or not is_packed(msg.content):
        return call_next(msg, ctx)
    msg.content = unpack_content(msg.content)
    received = array_tensors(msg.content)
    reply = call_next(msg, ctx)
    if reply.has_content():
        reply.content = pack_content(reply.content, reference=received)
    return reply
