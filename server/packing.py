"""A view of a Grid that packs the tensors of every message it sends and unpacks the replies (:mod:`shared.packing`).

The server's messages then travel as a handful of objects instead of one per tensor, and a client's
:func:`client.packing.packing_mod` answers in kind. Replies come back unpacked, so validation, aggregation and the
secure-aggregation workflow read tensors by name as before; a tensor a client marked as sent back unchanged is taken
from the message it answers (kept, unpacked, until ``send_and_receive`` returns; the rounds never change a message's
content once it is sent). A reply whose layout does not describe its arrays becomes an error reply naming what did
not fit (the round counts it as a failed client); an unpacked reply (a client without the mod) passes as it is.

Messages are packed in place (their content is replaced), as Flower's own grid writes their ids into them; a reply
is matched to its message by ``reply_to_message_id``.

Example:
    >>> import numpy as np
    >>> from flwr.app import Array, ArrayRecord, RecordDict
    >>> class Msg:  # what packing reads of a Flower Message
    ...     def __init__(self, content): self.content = content
    ...     def has_content(self): return True
    >>> msg = Msg(RecordDict({"arrays": ArrayRecord({"base.a": Array(np.ones(3, np.float32))})}))
    >>> sorted(pack_message(msg).content.keys())  # as it travels
    ['packed', 'packing']
    >>> sorted(unpack_reply(msg).content.keys())  # as a packed reply reaches the rounds
    ['arrays']
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flwr.app import Error, Message
from flwr.common.constant import ErrorCode

from shared.errors import PackingError
from shared.packing import array_tensors, is_packed, pack_content, unpack_content

__all__ = ["PackedGrid", "pack_message", "unpack_reply"]


def pack_message(msg: Any) -> Any:
    """``msg`` with its array records packed (in place; a message without arrays is left as it is)."""
    if msg.has_content():
        msg.content = pack_content(msg.content)
    return msg


def unpack_reply(reply: Any, sent: Any = None) -> Any:
    """A reply with its arrays unpacked (in place; ``sent``: the unpacked content of the message it answers), or an
    error reply when its layout does not fit."""
    if not reply.has_content() or not is_packed(reply.content):
        return reply
    try:
        reference = array_tensors(sent) if sent is not None else None
        reply.content = unpack_content(reply.content, reference=reference)
    except PackingError as exc:
        return Message(
            error=Error(code=ErrorCode.UNKNOWN, reason=f"PackingError: {exc}"),  # type: ignore[call-overload]
            metadata=reply.metadata,
        )  # Flower's stubs omit the metadata form its own code uses
    return reply


class PackedGrid:
    """A view of a Grid whose ``send_and_receive`` sends packed and returns unpacked (see the module docstring);
    everything else is delegated (messages pushed with ``push_messages`` go unpacked, and clients answer them in kind).
    Put it outside :class:`server.window.WindowedGrid`, whose window pushes through the grid it wraps."""

    def __init__(self, grid: Any):
        self._grid = grid

    def send_and_receive(self, messages: Iterable[Any], *, timeout: float | None = None) -> list[Any]:
        packed = [(msg, msg.content if msg.has_content() else None) for msg in messages]
        replies = self._grid.send_and_receive([pack_message(m) for m, _ in packed], timeout=timeout)
        sent = {m.metadata.message_id: original for m, original in packed}  # ids: given as they were pushed
        return [unpack_reply(r, sent.get(r.metadata.reply_to_message_id)) for r in replies]

    def __getattr__(self, name: str):
        return getattr(self._grid, name)
