"""A ClientApp mod that records what leaves the client, for privacy audits.

When ``FEDHYDRA_AUDIT_DIR`` is set, every reply the client sends is described in
``$FEDHYDRA_AUDIT_DIR/<pid>.jsonl``: the message type, and per record its kind and contents (tensor keys,
shapes and dtypes; metric and config items with their values). With the variable unset it does nothing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from flwr.app import Context, Message

__all__ = ["audit_mod", "describe"]


def describe(message: Message) -> dict:
    """A JSON-able description of a message's content."""
    out: dict = {"type": message.metadata.message_type, "records": {}}
    if message.has_error():
        out["error"] = message.error.reason
        return out
    content = message.content
    for name, record in content.array_records.items():
        out["records"][name] = {"kind": "arrays", "tensors": {k: [list(v.shape), str(v.dtype)] for k, v in record.items()}}
    for name, record in content.metric_records.items():
        out["records"][name] = {"kind": "metrics", "items": {k: v for k, v in record.items()}}
    for name, record in content.config_records.items():
        out["records"][name] = {"kind": "config", "items": {k: (v if isinstance(v, (int, float, str, bool)) else str(v))
                                                              for k, v in record.items()}}
    return out


def audit_mod(msg: Message, ctx: Context, call_next) -> Message:
    reply = call_next(msg, ctx)
    folder = os.environ.get("FEDHYDRA_AUDIT_DIR")
    if folder:
        path = Path(folder)
        path.mkdir(parents=True, exist_ok=True)
        with open(path / f"{os.getpid()}.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(describe(reply), default=str) + "\n")
    return reply
