"""Fault injection for reliability tests and the fault-injection script (a ClientApp mod).

``FEDHYDRA_FAULTS`` holds JSON mapping a node's ``partition-id`` (as a string) to a fault applied to its
training replies: ``raise`` (the client fails), ``nan`` (a NaN in one tensor), ``scale`` (the update times
1e3), ``poison`` (the update's sign flipped and scaled by 10), ``unknown-key``, ``personal-key``,
``wrong-shape``, ``wrong-dtype``. With the variable unset the mod does nothing.

Example:
    >>> import numpy as np
    >>> corrupt({"base.a": np.ones(2, np.float32)}, {"base.a": np.zeros(2, np.float32)}, "poison")["base.a"].tolist()
    [-10.0, -10.0]
"""

from __future__ import annotations

import json
import os
from typing import Mapping

import numpy as np
from flwr.app import Array, ArrayRecord, Context, Message, MessageType

__all__ = ["faults_mod", "corrupt", "FAULTS"]

FAULTS = ("raise", "nan", "scale", "poison", "unknown-key", "personal-key", "wrong-shape", "wrong-dtype")


class InjectedFault(RuntimeError):
    """Raised by a client told to fail."""


def corrupt(update: Mapping[str, np.ndarray], sent: Mapping[str, np.ndarray], fault: str) -> dict[str, np.ndarray]:
    """The update as a faulty client would send it."""
    out = {k: np.array(v, copy=True) for k, v in update.items()}
    first = sorted(out)[0]
    if fault == "nan":
        out[first].flat[0] = np.nan
    elif fault == "scale":
        out = {k: sent[k] + 1e3 * (v - sent[k]) for k, v in out.items()}
    elif fault == "poison":
        out = {k: sent[k] - 10.0 * (v - sent[k]) if np.any(v != sent[k]) else -10.0 * v for k, v in out.items()}
    elif fault == "unknown-key":
        out["base.adapter.extra"] = np.zeros(3, np.float32)
    elif fault == "personal-key":
        out["head.adapter.weight"] = np.zeros((1, 36), np.float32)
    elif fault == "wrong-shape":
        out[first] = np.zeros(out[first].size + 1, np.float32)
    elif fault == "wrong-dtype":
        out[first] = out[first].astype(np.float64)
    else:
        raise ValueError(f"unknown fault {fault!r}; known: {FAULTS}")
    return out


def faults_mod(msg: Message, ctx: Context, call_next) -> Message:
    spec = os.environ.get("FEDHYDRA_FAULTS")
    if not spec or msg.metadata.message_type != MessageType.TRAIN:
        return call_next(msg, ctx)
    fault = json.loads(spec).get(str(ctx.node_config.get("partition-id", "")))
    if fault is None:
        return call_next(msg, ctx)
    if fault == "raise":
        raise InjectedFault(f"injected failure on partition {ctx.node_config.get('partition-id')}")
    reply = call_next(msg, ctx)
    if reply.has_error():
        return reply
    sent = {k: v.numpy() for k, v in msg.content["arrays"].items()}
    update = {k: v.numpy() for k, v in reply.content["arrays"].items()}
    reply.content["arrays"] = ArrayRecord({k: Array(v) for k, v in corrupt(update, sent, fault).items()})
    return reply
