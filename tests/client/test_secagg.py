"""The client's side of secure aggregation (client/secagg.py, client/guard.py's check_secure_update): the checks the
server can no longer make move to the client, and the legacy fitins / fitres layout is translated both ways.

The whole protocol, server and clients, runs in tests/server/test_secure_aggregation.py and, in a real simulation,
tests/simulations/test_secure_federated.py."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_STATE
from flwr.compat.common import recorddict_compat as compat

from client.guard import check_secure_update
from client.secagg import _train_legacy, secagg_mod
from shared.errors import UnsafeBase, UnsafeUpdate
from shared.protocol import DP_WEIGHT_KEY, SECAGG_KEYS

pytestmark = pytest.mark.usefixtures("flower_task_identity")

KEYS = ["base.b", "base.a"]  # the order the server sends, not sorted
SHAPES = {"base.a": (2, 3), "base.b": (4,)}


def update(**changes) -> dict[str, np.ndarray]:
    out = {"base.a": np.full((2, 3), 0.5, np.float32), "base.b": np.arange(4, dtype=np.float32)}
    out.update(changes)
    return out


def check(arrays, weight=10, **kw):
    return check_secure_update(
        arrays,
        KEYS,
        SHAPES,
        weight,
        clipping_range=kw.pop("clipping_range", 16.0),
        max_weight=kw.pop("max_weight", 200.0),
    )


@pytest.mark.parametrize(
    "arrays,weight,reason",
    [
        (update(**{"base.c": np.zeros(1, np.float32)}), 10, "keys differ from the base received"),
        ({"base.a": np.zeros((2, 3), np.float32)}, 10, "keys differ from the base received"),
        (update(**{"base.a": np.zeros((3, 2), np.float32)}), 10, "'base.a' has shape (3, 2), the base's is (2, 3)"),
        (update(**{"base.b": np.array([0, np.nan, 0, 0], np.float32)}), 10, "'base.b' holds NaN or Inf"),
        (update(**{"base.b": np.array([0, 2e4, 0, 0], np.float32)}), 10, "magnitude 2e+04 > 10000"),
        (update(), 0, "weight must be a positive number, got 0"),
        (update(), float("nan"), "weight must be a positive number"),
        (update(), True, "weight must be a positive number, got True"),
        (
            update(**{"base.b": np.array([0, 20.0, 0, 0], np.float32)}),
            200,
            "largest value 20 times its weight 200 / 200 is beyond SecAgg+'s clipping range 16",
        ),
    ],
)
def test_a_client_refuses_to_mask_an_update_the_server_would_have_refused(arrays, weight, reason, caplog):
    with caplog.at_level(logging.WARNING, logger="client.guard"), pytest.raises(UnsafeUpdate) as caught:
        check(arrays, weight)
    assert reason in str(caught.value)
    assert "update not sent" in caplog.text


def test_an_update_passes_in_the_servers_order_as_float32_and_a_large_weight_is_capped(caplog):
    tensors, weight = check(update(**{"base.a": np.full((2, 3), 0.5, np.float64)}), 12)
    assert [t.shape for t in tensors] == [(4,), (2, 3)] and all(t.dtype == np.float32 for t in tensors)
    assert weight == 12
    # a value that fits only once its weight is scaled down: 20 * 100 / 200 = 10 <= 16
    assert check(update(**{"base.b": np.full(4, 20.0, np.float32)}), 100)[1] == 100
    with caplog.at_level(logging.WARNING, logger="client.guard"):
        assert check(update(), 5000)[1] == 200.0
    assert "capped" in caplog.text


def test_messages_without_secagg_records_pass_through_untouched():
    msg = Message(
        RecordDict(
            {
                "arrays": ArrayRecord({"base.a": Array(np.ones(2, np.float32))}),
                "config": ConfigRecord({"server-round": 1}),
            }
        ),
        dst_node_id=3,
        message_type="train",
    )
    ctx = Context(run_id=1, node_id=3, node_config={}, state=RecordDict(), run_config={})
    seen = []
    reply = secagg_mod(msg, ctx, lambda m, c: seen.append(m) or Message(RecordDict(), reply_to=m))
    assert seen == [msg] and not reply.has_error()


def _fitins(arrays: dict[str, np.ndarray], keys) -> Message:
    from flwr.common import FitIns

    content = compat.fitins_to_recorddict(
        FitIns(
            ndarrays_to_parameters([arrays[k] for k in arrays]),
            {"server-round": 2, "proximal-mu": 0.1, SECAGG_KEYS: keys},
        ),
        True,
    )
    return Message(content, dst_node_id=3, message_type="train")


def _context() -> Context:
    state = RecordDict({RECORD_KEY_STATE: ConfigRecord({"clipping_range": 16.0, "max_weight": 1.0})})
    return Context(run_id=1, node_id=3, node_config={}, state=state, run_config={})


def test_the_stage_that_trains_sees_named_arrays_and_its_reply_goes_back_as_a_fitres():
    sent = {"base.b": np.zeros(4, np.float32), "base.a": np.zeros((2, 3), np.float32)}
    seen = {}

    def train(msg, ctx):
        seen["arrays"] = {k: v.numpy() for k, v in msg.content["arrays"].items()}
        seen["config"] = dict(msg.content["config"])
        out = {k: v + 0.25 for k, v in reversed(list(seen["arrays"].items()))}  # any order back
        return Message(
            RecordDict(
                {
                    "arrays": ArrayRecord({k: Array(v) for k, v in out.items()}),
                    "metrics": MetricRecord({"num-examples": 30, DP_WEIGHT_KEY: 1}),
                }
            ),
            reply_to=msg,
        )

    reply = _train_legacy(_fitins(sent, KEYS), _context(), train)
    assert {k: v.shape for k, v in seen["arrays"].items()} == SHAPES
    assert seen["config"] == {"server-round": 2, "proximal-mu": 0.1}  # the names are the transport's, not the app's
    fitres = compat.recorddict_to_fitres(reply.content, keep_input=True)
    assert [a.shape for a in parameters_to_ndarrays(fitres.parameters)] == [(4,), (2, 3)]  # the server's order
    assert fitres.num_examples == 1  # dp-weight when present (DP runs), else num-examples
    assert fitres.metrics["num-examples"] == 30


def test_a_secagg_message_whose_tensors_are_not_named_one_by_one_is_refused_before_training():
    sent = {"base.b": np.zeros(4, np.float32), "base.a": np.zeros((2, 3), np.float32)}
    trained = []
    for keys in (["base.b"], ["base.b", "base.b"], "base.b,base.a"):
        with pytest.raises(UnsafeBase, match="not named one by one"):
            _train_legacy(_fitins(sent, keys), _context(), lambda m, c: trained.append(m))
    assert trained == []
