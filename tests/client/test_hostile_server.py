"""A hostile or broken server cannot damage a device: bad global bases sent to a real client through the production
ClientApp (``client.client_app.app``: its mods, its handlers, a real :class:`client.node.ClientNode` with its store,
the real models) are refused, and the user's store is left byte for byte as it was.

The LLM is the deterministic stub of ``shared/llm/stub.py`` (not a language model): what is checked here needs none.
A refused message raises in the ClientApp; Flower's runtime turns that into the client's error reply
(``flwr/supernode/runtime/run_clientapp.py``, ``flwr/simulation/ray_transport/ray_actor.py``), which the server
logs and counts as a failed client while the round goes on (``tests/server/test_federation.py``).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict

from client.guard import LIMITS
from client.store import UserStore
from shared.config import default_mapping
from shared.errors import DivergedRound, UnsafeBase
from shared.hydra.model import ModelConfig, initial_shared_state
from shared.llm.stub import StubEndpoint
from shared.protocol import ASK_KEY, ASK_MARGIN
from shared.synthetic import write_synthetic

pytestmark = pytest.mark.usefixtures("flower_task_identity")

TASK = "LaMP-3"
SMALL = {"task": TASK, "train-users": 1, "test-users": 1, "pseudo-questions": 2, "free-questions": 2,
         "n-samples": 1, "label-records": 2, "local-epochs": 1, "local-head-epochs": 2, "seed": 0, "split": "synthetic",
         "llm-model": "stub"}


@pytest.fixture(scope="module")
def initial():
    return initial_shared_state(ModelConfig(), 0)


@pytest.fixture
def device(tmp_path):
    """A run config for two synthetic users (one training, one test) on the stub endpoint, each node's store under
    ``tmp_path/store``."""
    data = write_synthetic(tmp_path / "data", TASK, n_users=2, items_per_user=10, seed=0)
    with StubEndpoint(delay_s=0.0) as stub:
        yield {**default_mapping(), **SMALL, "data": str(data), "store-dir": str(tmp_path / "store"),
               "llm-url": stub.url}


def send(run_config: dict, partition: int, message_type: str, arrays: dict, **config) -> Message:
    """A message from the server through the production ClientApp, as a node of ``partition`` receives it."""
    from client.client_app import app

    content = RecordDict({"arrays": ArrayRecord({k: Array(np.asarray(v)) for k, v in arrays.items()}),
                          "config": ConfigRecord({"server-round": 1, **config})})
    msg = Message(content=content, dst_node_id=1, message_type=message_type)
    ctx = Context(run_id=1, node_id=1, node_config={"partition-id": partition}, state=RecordDict(),
                  run_config=run_config)
    return app(msg, ctx)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones too), by relative path, with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def hostile_bases(base: dict[str, np.ndarray]) -> dict[str, tuple[dict, str]]:
    """What a broken or hostile server might send instead of ``base``, each with the reason it must be refused for."""
    keys = sorted(base)
    lora, trunk = next(k for k in keys if ".lora_A." in k), next(k for k in keys if k.endswith("trunk.weight"))

    def edit(key, value):
        return {**base, key: value}

    nan = base[trunk].copy()
    nan[0, 0] = np.nan
    return {
        "nan": (edit(trunk, nan), "holds NaN or Inf"),
        "inf": (edit(lora, np.full_like(base[lora], np.inf)), "holds NaN or Inf"),
        "value out of range": (edit(trunk, np.full_like(base[trunk], 2 * LIMITS.max_abs)), "of magnitude 2e\\+04"),
        "scaled x1000": ({k: v * 1000 for k, v in base.items()}, "over the bound 1000"),
        "scaled x20": ({k: v * 20 for k, v in base.items()}, "over 10 x the norm 6.98 of the last base"),
        "missing key": ({k: v for k, v in base.items() if k != trunk}, "lacks 1 shared tensors"),
        "extra tensor": ({**base, "base.adapter.extra": np.zeros(3, np.float32)},
                         f"{len(base) + 1} tensors; this device's base has {len(base)}"),
        "unknown key": ({**{k: v for k, v in base.items() if k != trunk}, "base.adapter.backdoor": base[trunk]},
                        "unknown key 'base.adapter.backdoor'"),
        "personal key": ({**{k: v for k, v in base.items() if k != trunk}, "head.adapter.weight": base[trunk]},
                         "personal key 'head.adapter.weight'"),
        "wrong shape": (edit(trunk, base[trunk][:, :-1]), r"has shape \(24, 781\), expected \(24, 782\)"),
        "wrong dtype": (edit(trunk, base[trunk].astype(np.float16)), "dtype float16"),
        "integers": (edit(trunk, base[trunk].astype(np.int32)), "dtype int32"),
        "oversized": ({**{k: v for k, v in base.items() if k != trunk},
                       trunk: np.zeros((base[trunk].size * 50,), np.float32)}, "bytes of tensors"),
    }


def test_bad_bases_are_refused_and_the_store_is_unchanged_byte_for_byte(device, initial, caplog):
    reply = send(device, 0, MessageType.TRAIN, initial)  # a good first round: history, episodes, heads, reference
    assert not reply.has_error() and reply.content["metrics"]["num-examples"] > 0
    store = Path(device["store-dir"])
    user = next(p for p in store.iterdir() if (p / "meta.json").exists())
    assert {"history.json", "episodes.jsonl", "heads.safetensors", "accepted_base.json"} <= set(snapshot(user))
    before = snapshot(store)
    caplog.set_level(logging.WARNING, logger="client.guard")
    for name, (arrays, reason) in hostile_bases(initial).items():
        caplog.clear()
        with pytest.raises(UnsafeBase, match=reason) as refused:
            send(device, 0, MessageType.TRAIN, arrays)
        assert caplog.records and str(refused.value) in caplog.text, name  # the reason is logged
        assert snapshot(store) == before, name
    with pytest.raises(UnsafeBase, match="NaN or Inf"):  # the margin query carries a base too
        send(device, 0, MessageType.QUERY, hostile_bases(initial)["nan"][0], **{ASK_KEY: ASK_MARGIN})
    assert snapshot(store) == before
    # a plausible next base (the initial one moved a little) is still accepted, and becomes the reference
    moved = {k: v * np.float32(1.5) for k, v in initial.items()}
    assert not send(device, 0, MessageType.TRAIN, moved).has_error()
    assert UserStore(store, user.name, task=TASK).read_accepted_base()["norm"] == pytest.approx(
        math.sqrt(sum(float(np.sum(np.square(v, dtype=np.float64))) for v in moved.values())), rel=1e-6)


def test_a_test_user_refuses_a_bad_base_before_its_store_or_a_bundle_exists(device, initial):
    store = Path(device["store-dir"])
    for name, (arrays, reason) in hostile_bases(initial).items():
        if name == "scaled x20":  # plausible to a device that never accepted a base (norm 140 < 1e3)
            continue
        with pytest.raises(UnsafeBase, match=reason):
            send(device, 1, MessageType.EVALUATE, arrays)
        assert not store.exists() or snapshot(store) == {}, name  # no store opened, no bundle exported


@pytest.mark.slow
def test_a_round_that_diverges_keeps_the_last_good_heads(device, initial):
    """A server that asks for an infinite proximal term (or sets a learning rate that blows training up) makes the
    round's training diverge: the stored heads stay as they were and the client sends nothing."""
    assert not send(device, 0, MessageType.TRAIN, initial).has_error()
    store = Path(device["store-dir"])
    before = snapshot(store)
    with pytest.raises(DivergedRound, match="NaN or Inf"):
        send(device, 0, MessageType.TRAIN, initial, **{"proximal-mu": float("inf")})
    assert snapshot(store) == before
    with pytest.raises(DivergedRound):
        send({**device, "lr": 1e30, "lora-lr": 1e30}, 0, MessageType.TRAIN, initial)
    assert snapshot(store) == before
