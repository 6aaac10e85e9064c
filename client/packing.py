"""A ClientApp mod that unpacks the server's packed messages and packs the replies to them (:mod:`shared.packing`).

A message the server packed is unpacked before any other handler sees it (SecAgg+, DP clipping and the handlers of
:mod:`client.client_app` read tensors by name, as always); the reply to it is packed again, so a SuperNode pushes a
handful of objects instead of one per tensor, and a tensor the client sends back unchanged (equal to the one it
received under the same record and key; compared with a copy taken before any handler ran) is marked, not sent. A
message that came unpacked gets an unpacked reply: a server that does not pack is answered in its own layout. A
layout that does not describe its arrays raises :class:`shared.errors.PackingError`, which :mod:`client.replies` sends
back as the message's error (code 104).

Before anything of a packed message is unpacked, the device's guard checks its layout against the device's own base
(:func:`check_packed`, with the guard's rules and limits: tensor count, bytes, dtypes, shapes); the message is then unpacked into
read-only views of the bytes that came (a ``same-as`` tensor is the very view it names), the guard checks the base
(:meth:`client.guard.Guard.check_base`, every rule) and only then are the handlers' ``Array`` objects made, one per
stored tensor. A refused message never costs the device more memory than a few of its base's tensors, whatever its
layout says (``scripts/bench_hostile_memory.py``). The reply's tensors are compared with fingerprints of the
received ones (:class:`shared.packing.Fingerprint`), not with copies.

Example:
    >>> import numpy as np
    >>> from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict
    >>> from client.guard import Guard
    >>> from shared.packing import pack_content
    >>> class Msg:  # what the mod reads of a Flower Message
    ...     def __init__(self, content): self.content = content
    ...     def has_content(self): return True
    >>> base = {"base.a": np.ones(3, np.float32)}
    >>> mod = make_packing_mod(lambda ctx: Guard({"base.a": (3,)}, "/nonexistent", "u", task="LaMP-3"))
    >>> sent = RecordDict({"arrays": ArrayRecord({k: Array(v) for k, v in base.items()}), "config": ConfigRecord()})
    >>> def handler(m, ctx):  # what the app's handlers see: the tensors by name
    ...     assert list(m.content["arrays"].keys()) == ["base.a"]
    ...     return Msg(RecordDict({"arrays": m.content["arrays"]}))
    >>> reply = mod(Msg(pack_content(sent)), None, handler).content
    >>> sorted(reply.keys()), reply["packing"]["sent"]  # base.a came back unchanged: marked, not sent
    (['packed', 'packing'], [1])
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from flwr.app import Context, Message

from client.guard import (
    ACCEPTED_DTYPES,
    LIMITS,
    Guard,
    Limits,
    TensorShapes,
    _itemsize,
    _refuse,
    base_budget,
    check_declared,
)
from shared.errors import PackingError, UnsafeBase
from shared.packing import (
    LAYOUT_RECORD,
    PACKED_RECORD,
    declared_tensors,
    fingerprint,
    flat_views,
    is_packed,
    pack_content,
    unpack_arrays,
    unpack_content,
)
from shared.protocol import ARRAYS_RECORD

__all__ = ["make_packing_mod", "check_packed"]

Mod = Callable[[Message, Context, Callable], Message]

_HEADER = 4096
"""The most bytes a flat array's ``.npy`` header may add to its values (numpy writes 128)."""


def check_packed(
    layout: Mapping[str, Any], flat: Mapping[str, int], spec: TensorShapes, *, limits: Limits = LIMITS
) -> None:
    """Check a packed message (:mod:`shared.packing`) before anything of it is unpacked: ``layout`` is its layout
    record, ``flat`` the byte length of each of its flat arrays by dtype name. Raises :class:`UnsafeBase` when the
    layout names more tensors than the device's base has (counted on its list's length), the flat arrays hold more
    bytes than :func:`base_budget` (plus their small headers) or come in another dtype, a tensor is marked as sent
    back (a server's message answers none), or the ``arrays`` record breaks :func:`check_declared` (any other
    record, SecAgg+'s ``fitins.parameters``, must hold tensors of the base's shapes and dtypes, no more of them than
    the base has); :class:`shared.errors.PackingError` when the layout is of the wrong form."""
    keys = layout.get("keys")
    if isinstance(keys, (list, tuple)) and len(keys) > len(spec):
        _refuse(UnsafeBase, f"the message holds {len(keys)} tensors; this device's base has {len(spec)}")
    budget = base_budget(spec, limits)
    for dtype in flat:
        _itemsize(f"<packed {dtype}>", str(dtype))
    size = sum(int(n) for n in flat.values())
    if size > budget + _HEADER * len(flat):
        _refuse(UnsafeBase, f"the message holds {size:,} bytes of tensors; this device's base takes at most {budget:,}")
    declared = declared_tensors(layout, max_tensors=len(spec))
    shapes = {tuple(shape) for shape in spec.values()}
    total = 0
    for record, tensors in declared.items():
        for key, (shape, dtype, sent) in tensors.items():
            if sent:
                _refuse(
                    UnsafeBase,
                    f"tensor {key!r} of record {record!r} is marked as sent back unchanged, and this "
                    f"message answers none",
                    key,
                )
            total += 1
            if record != ARRAYS_RECORD and (tuple(shape) not in shapes or dtype not in ACCEPTED_DTYPES):
                _refuse(
                    UnsafeBase,
                    f"tensor {key!r} of record {record!r} is {dtype} {tuple(shape)}, no tensor of this device's base",
                    key,
                )
    if total > len(spec):
        _refuse(UnsafeBase, f"the message holds {total} tensors; this device's base has {len(spec)}")
    if ARRAYS_RECORD in declared:
        check_declared(
            {k: (shape, dtype) for k, (shape, dtype, _) in declared[ARRAYS_RECORD].items()}, spec, limits=limits
        )


def make_packing_mod(guard_of: Callable[[Context], Guard]) -> Mod:
    """The mod that unpacks a packed message once ``guard_of(context)`` (the guard of this node's user and base) let
    its layout and its base through, calls the next handler and packs its reply (see the module docstring)."""

    def packing_mod(msg: Message, ctx: Context, call_next) -> Message:
        if not msg.has_content() or not is_packed(msg.content):
            return call_next(msg, ctx)
        content = msg.content
        if PACKED_RECORD not in content.array_records:
            raise PackingError(f"packed message without its array record {PACKED_RECORD!r}")
        guard = guard_of(ctx)
        layout = dict(content.config_records[LAYOUT_RECORD])
        check_packed(
            layout,
            {k: len(v.data) for k, v in content.array_records[PACKED_RECORD].items()},
            guard.spec,
            limits=guard.limits,
        )
        records = unpack_arrays(flat_views(content), layout, reference=None, max_tensors=len(guard.spec))
        if ARRAYS_RECORD in records:
            guard.check_base(
                records[ARRAYS_RECORD], copy=False
            )  # every rule, on views of the message's bytes: no copy yet
        received = {name: {k: fingerprint(v) for k, v in tensors.items()} for name, tensors in records.items()}
        msg.content = unpack_content(content, records=records)
        del records, content
        reply = call_next(msg, ctx)
        if reply.has_content():
            reply.content = pack_content(reply.content, reference=received)
        return reply

    return packing_mod
