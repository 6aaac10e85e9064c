"""The client's side of secure aggregation: Flower's ``secaggplus_mod`` around the usual training handler.

SecAgg+ exists in Flower 1.41 only on the legacy path. Its four stages come to the client as TRAIN messages that
carry a ``secaggplus_configs`` record; the third carries the global base in the legacy ``fitins`` layout (tensors
without names, their names in the config under :data:`shared.protocol.SECAGG_KEYS`) and expects a ``fitres`` back.
:func:`secagg_mod` passes those messages to Flower's mod (which makes and shares the keys, and quantizes, weighs and
masks the update), and for the stage that trains translates the ``fitins`` into the Message API layout the rest of
the client reads (``arrays`` by name, ``config``), lets the rest of the app train as always (the fault mod of test runs,
DP clipping, :func:`client.client_app.train`), checks the update before it is masked
(:func:`client.guard.check_secure_update`: the server can no longer check it) and hands it back as a ``fitres``.
Messages without SecAgg+ records pass through untouched, so the same app serves plain and secure runs.

The update is weighted by ``dp-weight`` when the reply has it (DP runs), else by ``num-examples``; the clipping range
and the largest weight are the ones the server sent in the setup stage (kept in the mod's state).
"""

from __future__ import annotations

import copy
from typing import cast

from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.client.mod import secaggplus_mod
from flwr.common import Code, FitRes, Status, ndarrays_to_parameters
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, RECORD_KEY_STATE
from flwr.compat.common import recorddict_compat as compat

from client.guard import check_secure_update
from shared.errors import UnsafeBase, UnsafeUpdate
from shared.protocol import ARRAYS_RECORD, CONFIG_RECORD, DP_WEIGHT_KEY, METRICS_RECORD, SECAGG_KEYS, WEIGHT_KEY

__all__ = ["secagg_mod"]

FITINS_PARAMETERS, FITINS_CONFIG = "fitins.parameters", "fitins.config"


def secagg_mod(msg: Message, ctx: Context, call_next) -> Message:
    """SecAgg+ for the messages that carry its records (see the module docstring); the others pass through."""
    if not msg.has_content() or RECORD_KEY_CONFIGS not in msg.content.config_records:
        return call_next(msg, ctx)
    return secaggplus_mod(msg, ctx, lambda legacy, c: _train_legacy(legacy, c, call_next))


def _train_legacy(msg: Message, ctx: Context, call_next) -> Message:
    """``fitins`` in, the Message API layout to ``call_next``, its reply checked and back as a ``fitres``."""
    content = msg.content
    if FITINS_PARAMETERS not in content.array_records or FITINS_CONFIG not in content.config_records:
        raise UnsafeBase("a SecAgg+ training message without its fitins records")
    config = content.config_records[FITINS_CONFIG]
    keys = config.get(SECAGG_KEYS)
    tensors = [a.numpy() for a in content.array_records[FITINS_PARAMETERS].values()]
    if (
        not isinstance(keys, list)
        or not all(isinstance(k, str) for k in keys)
        or len(keys) != len(tensors)
        or len(set(keys)) != len(keys)
    ):
        raise UnsafeBase(
            f"a SecAgg+ training message whose {len(tensors)} tensors are not named one by one ({SECAGG_KEYS!r})"
        )
    names = cast(list[str], keys)  # checked above: a list of distinct strings, one per tensor
    received = dict(zip(names, tensors))
    inner = Message(
        content=RecordDict(
            {
                ARRAYS_RECORD: ArrayRecord({k: Array(v) for k, v in received.items()}),  # type: ignore[call-overload]
                CONFIG_RECORD: ConfigRecord({str(k): v for k, v in config.items() if k != SECAGG_KEYS}),
            }
        ),
        metadata=copy.copy(msg.metadata),
    )  # Flower's stubs omit the metadata form its own code uses
    reply = call_next(inner, ctx)
    if reply.has_error():
        raise UnsafeUpdate(f"training failed: {reply.error.reason}")
    arrays = {k: v.numpy() for k, v in reply.content[ARRAYS_RECORD].items()}
    metrics = dict(reply.content[METRICS_RECORD])
    state = ctx.state.config_records[RECORD_KEY_STATE]
    ordered, weight = check_secure_update(
        arrays,
        names,
        {k: v.shape for k, v in received.items()},
        metrics.get(DP_WEIGHT_KEY, metrics.get(WEIGHT_KEY)),
        clipping_range=float(cast(float, state["clipping_range"])),
        max_weight=float(cast(float, state["max_weight"])),
    )
    fitres = FitRes(
        status=Status(code=Code.OK, message=""),
        parameters=ndarrays_to_parameters(ordered),
        num_examples=weight,  # type: ignore[arg-type]  # the capped weight may be fractional
        metrics=metrics,
    )
    return Message(content=compat.fitres_to_recorddict(fitres, keep_input=True), reply_to=msg)
