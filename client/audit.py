"""A ClientApp mod that records what leaves the client, for privacy audits.

When ``FEDHYDRA_AUDIT_DIR`` is set, every reply the client sends is described in
``$FEDHYDRA_AUDIT_DIR/<pid>.jsonl``: the message type, the sending node's id, an error reply's code and reason
(:mod:`client.replies`, just inside this mod, turns every exception into one), and per record its kind and contents
(tensor keys, shapes and dtypes; metric and config items with their values, byte strings by their length). A packed
reply (:mod:`shared.packing`) is described by the tensors its layout names, with ``"packed": true`` and the keys it
marked as sent back unchanged under ``"unchanged"``: its flat arrays and layout record are those tensors' values,
names, shapes and dtypes, and nothing else. Byte
strings (under secure aggregation: public keys, encrypted key shares, the masked update, mask shares) are also kept
whole, in ``<pid>-<n>.npz`` beside it (``payload``; one uint8 array per string, named ``record::item::index``), so an
audit can look at what was sent, not only at its size. With the variable unset it does nothing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from flwr.app import Context, Message

from shared.packing import LAYOUT_RECORD, PACKED_RECORD, is_packed, packed_tensors

__all__ = ["audit_mod", "describe", "byte_strings"]


def describe(message: Message) -> dict:
    """A JSON-able description of a message's content."""
    out: dict = {"type": message.metadata.message_type, "records": {}}
    if message.has_error():  # client.replies: a code and a fixed reason, both recorded as they leave
        out["error"] = message.error.reason
        out["code"] = message.error.code
        return out
    content = message.content
    packing = {PACKED_RECORD, LAYOUT_RECORD} if is_packed(content) else set()
    if packing:  # described by what it packs
        out["packed"] = True
        for name, tensors in packed_tensors(content).items():
            out["records"][name] = {
                "kind": "arrays",
                "tensors": {k: [shape, dtype] for k, (shape, dtype, _) in tensors.items()},
                "unchanged": [k for k, (_, _, sent) in tensors.items() if sent],
            }
    for name, record in content.array_records.items():
        if name not in packing:
            out["records"][name] = {
                "kind": "arrays",
                "tensors": {k: [list(v.shape), str(v.dtype)] for k, v in record.items()},
            }
    for name, metrics in content.metric_records.items():
        out["records"][name] = {"kind": "metrics", "items": dict(metrics.items())}
    for name, config in content.config_records.items():
        if name not in packing:
            out["records"][name] = {"kind": "config", "items": {k: _item(v) for k, v in config.items()}}
    return out


def _item(value):
    if isinstance(value, (int, float, str, bool)):
        return value
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if isinstance(value, list) and value and all(isinstance(v, bytes) for v in value):
        return f"<{len(value)} byte strings, {sum(len(v) for v in value)} bytes>"
    return str(value)


def byte_strings(message: Message) -> dict[str, np.ndarray]:
    """Every byte string of a message's config records, as ``{"record::item::index": uint8 array}``."""
    out: dict[str, np.ndarray] = {}
    if message.has_error():
        return out
    for name, record in message.content.config_records.items():
        for key, value in record.items():
            values = [value] if isinstance(value, bytes) else value if isinstance(value, list) else []
            for i, v in enumerate(values):
                if isinstance(v, bytes):
                    out[f"{name}::{key}::{i}"] = np.frombuffer(v, dtype=np.uint8)
    return out


def audit_mod(msg: Message, ctx: Context, call_next) -> Message:
    reply = call_next(msg, ctx)
    folder = os.environ.get("FEDHYDRA_AUDIT_DIR")
    if folder:
        path = Path(folder)
        path.mkdir(parents=True, exist_ok=True)
        line = {**describe(reply), "node": ctx.node_id}
        strings = byte_strings(reply)
        if strings:
            name = f"{os.getpid()}-{len(list(path.glob(f'{os.getpid()}-*.npz')))}.npz"
            np.savez(path / name, **strings)  # type: ignore[arg-type]  # numpy's stub reads **kwds as allow_pickle
            line["payload"] = name
        with open(path / f"{os.getpid()}.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(line, default=str) + "\n")
    return reply
