"""Secure aggregation (server/secure.py with client/secagg.py): Flower's real SecAgg+ workflow and client mod, driven
in this process with synthetic updates through an in-memory grid that records what the server receives.

The end-to-end run (real simulation, real clients) is tests/simulations/test_secure_federated.py."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Error, Message, MetricRecord, RecordDict
from flwr.client.mod.utils import make_ffn
from flwr.common import bytes_to_ndarray
from flwr.common.secure_aggregation.quantization import quantize
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key
from flwr.supercore.differential_privacy import KEY_CLIPPING_NORM

from client.client_app import _dp_mod
from client.secagg import secagg_mod
from server.aggregation import build_aggregation
from server.central_dp import CentralDP
from server.federation import RoleGrid, RoundLog, run_rounds
from server.secure import SecureAggregation, build_secure, quantization_error_bound
from shared.config import RunConfig, default_mapping
from shared.protocol import DP_WEIGHT_KEY

pytestmark = pytest.mark.usefixtures("flower_task_identity")

BASE = {
    "base.adapter.trunk.weight": np.zeros((6, 8), np.float32),
    "base.reranker.lora.A": np.zeros(4000, np.float32),
    "base.adapter.shared_head.bias": np.zeros(1, np.float32),
}
SECURE = {"secagg.enabled": True, "federation.outlier-norm-factor": 0.0, "federation.min-train-nodes": 2}


def config(**overrides) -> RunConfig:
    return RunConfig.from_mapping({**default_mapping(), **SECURE, **overrides})


def initial() -> ArrayRecord:
    return ArrayRecord({k: Array(v) for k, v in BASE.items()})


def updates(n: int, seed: int = 0, scale: float = 0.5) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{k: (v + rng.normal(0, scale, v.shape)).astype(np.float32) for k, v in BASE.items()} for _ in range(n)]


class Client:
    """A synthetic client: returns its fixed update and weight (or fails when it trains)."""

    def __init__(self, update: dict[str, np.ndarray], weight: int, *, fail: bool = False):
        self.update, self.weight, self.fail = update, weight, fail
        self.trained = 0

    def __call__(self, msg: Message, ctx: Context) -> Message:
        self.trained += 1
        if self.fail:
            raise RuntimeError("the device went offline after sharing its keys")
        metrics = {"num-examples": self.weight, "train-loss": 0.5, "llm-failures": 1}
        if KEY_CLIPPING_NORM in msg.content["config"]:
            metrics[DP_WEIGHT_KEY] = 1
        return Message(
            RecordDict(
                {
                    "arrays": ArrayRecord({k: Array(v.copy()) for k, v in self.update.items()}),
                    "metrics": MetricRecord(metrics),
                }
            ),
            reply_to=msg,
        )


class InMemoryGrid:
    """Delivers every message to its node's client through the production mods (SecAgg+, then DP clipping), as the
    SuperLink would, and keeps every reply the server receives."""

    def __init__(self, clients: dict[int, Client]):
        self.clients = clients
        self.apps = {n: make_ffn(c, [secagg_mod, _dp_mod]) for n, c in clients.items()}
        self.contexts = {
            n: Context(run_id=1, node_id=n, node_config={}, state=RecordDict(), run_config={}) for n in clients
        }
        self.received: list[Message] = []

    def get_node_ids(self) -> list[int]:
        return list(self.clients)

    def send_and_receive(self, messages, *, timeout=None):
        replies = []
        for msg in messages:
            node = msg.metadata.dst_node_id
            msg = Message(content=copy.deepcopy(msg.content), metadata=copy.copy(msg.metadata))  # as if sent
            try:
                reply = self.apps[node](msg, self.contexts[node])
            except Exception as exc:  # noqa: BLE001 - what Flower does with a ClientApp that raised
                reply = Message(Error(code=0, reason=f"{type(exc).__name__}: {exc}"), reply_to=msg)
            replies.append(reply)
        self.received.extend(replies)
        return replies


def one_round(cfg: RunConfig, clients: dict[int, Client], server_round: int = 1):
    grid = InMemoryGrid(clients)
    aggregation, accountant = build_secure(cfg, n_train=len(clients), initial=initial())
    aggregation.current = record = RoundLog(server_round=server_round)
    messages = aggregation.configure_train(
        server_round, initial(), ConfigRecord({"final": False}), RoleGrid(grid, list(clients))
    )
    replies = aggregation.send_train(grid, messages, timeout=None)
    arrays, metrics = aggregation.aggregate_train(server_round, replies)
    return (None if arrays is None else {k: v.numpy() for k, v in arrays.items()}), metrics, record, grid, accountant


def weighted_mean(ups: list[dict[str, np.ndarray]], weights: list[float]) -> dict[str, np.ndarray]:
    total = float(sum(weights))
    return {k: sum(w * u[k].astype(np.float64) for u, w in zip(ups, weights)) / total for k in BASE}


def largest_gap(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    return max(float(np.max(np.abs(a[k] - b[k]))) for k in BASE)


def masked_vectors(grid: InMemoryGrid) -> dict[int, np.ndarray]:
    """What the server received from each client in the stage that trains: its masked vector, flattened (the
    weight factor first)."""
    out = {}
    for reply in grid.received:
        if reply.has_error():
            continue
        items = reply.content.config_records[RECORD_KEY_CONFIGS]
        if Key.MASKED_PARAMETERS in items:
            out[reply.metadata.src_node_id] = np.concatenate(
                [bytes_to_ndarray(b).ravel() for b in items[Key.MASKED_PARAMETERS]]
            )
    return out


@pytest.mark.parametrize("weights", [[10, 20, 30, 40], [1, 1, 1], [5, 300, 999, 7, 60]])
def test_the_secure_aggregate_equals_the_plain_weighted_mean_within_the_stated_bound(weights):
    ups = updates(len(weights), seed=len(weights))
    clients = {11 + i: Client(u, w) for i, (u, w) in enumerate(zip(ups, weights))}
    got, metrics, record, _, _ = one_round(config(), clients)
    cap = config().federation.secagg.max_weight  # 200: a client caps a larger weight before masking
    want = weighted_mean(ups, [min(w, cap) for w in weights])
    largest = max(float(np.max(np.abs(v))) for u in ups for v in u.values())
    bound = quantization_error_bound(weights, largest=largest, secagg=config().federation.secagg)
    assert all(got[k].dtype == np.float32 and got[k].shape == BASE[k].shape for k in BASE)
    assert largest_gap(got, want) <= bound + 1e-6  # float32 rounding of the result on top of the bound
    assert bound < 1e-3  # the most: 8e-4, three clients of weight 1 under a largest weight of 200
    assert record.accepted == len(weights) and record.failed == 0
    assert metrics["train-loss"] == pytest.approx(0.5) and "num-examples" not in metrics
    assert record.faults["llm-failures"] == len(weights)  # the counters still go up in clear


def test_a_client_that_drops_out_after_sharing_its_keys_does_not_stop_the_round():
    weights = [10, 20, 30, 40]
    ups = updates(4, seed=7)
    clients = {11 + i: Client(u, w, fail=(i == 1)) for i, (u, w) in enumerate(zip(ups, weights))}
    got, _, record, grid, _ = one_round(config(), clients)
    rest = [0, 2, 3]
    want = weighted_mean([ups[i] for i in rest], [weights[i] for i in rest])
    largest = max(float(np.max(np.abs(v))) for u in ups for v in u.values())
    bound = quantization_error_bound([weights[i] for i in rest], largest=largest, secagg=config().federation.secagg)
    assert clients[12].trained == 1  # it took part in setup and key sharing, then failed when asked to train
    assert largest_gap(got, want) <= bound + 1e-6
    assert record.accepted == 3 and record.failed == 1
    assert record.failures == [
        "node 12: collect_masked_vectors: RuntimeError: the device went offline after sharing its keys"
    ]
    assert set(masked_vectors(grid)) == {11, 13, 14}


def test_below_the_threshold_the_round_is_dropped_and_the_base_stays():
    ups = updates(4, seed=3)
    clients = {11 + i: Client(u, 10, fail=(i > 0)) for i, u in enumerate(ups)}  # 1 of 4 left: under 2/3 of shares
    got, metrics, record, _, _ = one_round(config(), clients)
    assert got is None and metrics is None
    assert record.accepted == 0 and record.failed == 3


def test_what_the_server_receives_from_a_client_is_uncorrelated_with_its_update():
    ups = updates(4, seed=11, scale=1.0)
    weights = [50, 50, 50, 50]
    clients = {11 + i: Client(u, w) for i, (u, w) in enumerate(zip(ups, weights))}
    _, _, _, grid, _ = one_round(config(), clients)
    received = masked_vectors(grid)
    secagg = config().federation.secagg
    for i, node in enumerate(clients):
        update = np.concatenate([ups[i][k].ravel() for k in BASE])
        masked = received[node][1:].astype(np.float64)  # the weight factor first, then the values
        assert masked.size == update.size
        assert abs(np.corrcoef(masked, update)[0, 1]) < 0.1  # 4,049 values: about 6 standard deviations
        # the same statistic sees an update sent in clear, even quantized: the test can tell the difference
        plain = np.concatenate(
            [q.ravel() for q in quantize([update * 0.05], secagg.clipping_range, secagg.quantization_range)]
        ).astype(np.float64)
        assert np.corrcoef(plain, update)[0, 1] > 0.99
    # nor does any reply of any stage carry the update's values as tensors
    assert all(
        not r.content.array_records or all(len(rec) == 0 for rec in r.content.array_records.values())
        for r in grid.received
        if not r.has_error()
    )


def test_central_dp_clips_on_the_clients_adds_noise_to_the_sum_and_accounts_each_round():
    cfg = config(**{"dp.noise": 0.8, "dp.clip": 0.5})
    big = [{k: (v + 10.0).astype(np.float32) for k, v in BASE.items()} for _ in range(3)]  # norm far above dp.clip
    clients = {11 + i: Client(u, 50) for i, u in enumerate(big)}
    got, _, record, grid, accountant = one_round(cfg, clients)
    aggregation, _ = build_secure(cfg, n_train=3, initial=initial())
    assert isinstance(aggregation.dp, CentralDP) and aggregation.max_weight == 1.0  # under DP every weight is 1
    # each client clipped its update to 0.5 before masking; the sum of 3 is 3 * 0.5 * direction, over 3 expected
    direction = {k: np.full(v.shape, 1.0) / np.sqrt(sum(x.size for x in BASE.values())) for k, v in BASE.items()}
    noiseless = {k: 0.5 * direction[k] for k in BASE}
    residual = np.concatenate([(got[k] - noiseless[k]).ravel() for k in BASE])
    assert residual.std() == pytest.approx(0.8 * 0.5 / 3, rel=0.15)  # z * clip / expected clients
    assert abs(residual.mean()) < 0.02
    spent = accountant.get_privacy_spent()
    assert spent.num_releases == 1 and 0 < spent.epsilon < float("inf")
    assert record.accepted == 3


def test_poisson_sampling_is_accounted_and_lowers_epsilon():
    def epsilon(fraction: float) -> float:
        cfg = config(**{"dp.noise": 1.0, "federation.fraction-train": fraction, "federation.min-train-nodes": 2})
        aggregation, accountant = build_secure(cfg, n_train=20, initial=initial())
        for _ in range(5):
            aggregation.dp.account()
        assert accountant.config.sampling_method.value == "poisson"
        return accountant.get_privacy_spent().epsilon

    sampled, everyone = epsilon(0.2), epsilon(1.0)
    assert sampled < everyone / 2
    dp = build_secure(config(**{"dp.noise": 1.0, "federation.fraction-train": 0.2}), n_train=20, initial=initial())[
        0
    ].dp
    assert dp.q == pytest.approx(0.2) and dp.expected == 4
    sizes = [len(dp.sample(list(range(20)))) for _ in range(400)]
    assert np.mean(sizes) == pytest.approx(4, abs=0.4) and len(set(sizes)) > 3  # Poisson, not a fixed size


def test_a_secure_run_goes_through_run_rounds_with_checkpoints_and_the_privacy_ledger(tmp_path):
    cfg = config(**{"dp.noise": 0.5, "dp.clip": 1.0, "run.out-dir": str(tmp_path)})
    ups = updates(3, seed=5, scale=0.01)
    grid = InMemoryGrid({11 + i: Client(u, 10) for i, u in enumerate(ups)})
    aggregation, accountant = build_aggregation(cfg, n_train=3, initial=initial())
    assert isinstance(aggregation, SecureAggregation)
    run_rounds(
        grid,
        aggregation,
        initial(),
        num_rounds=2,
        start_round=0,
        roles={11: "train", 12: "train", 13: "train"},
        out_dir=tmp_path / "out",
        checkpoint_dir=tmp_path / "ck",
        model=cfg.model,
        task=cfg.task,
        accountant=accountant,
    )
    rows = [json.loads(line) for line in (tmp_path / "out" / "rounds.jsonl").read_text().splitlines()]
    assert [r["accepted"] for r in rows] == [3, 3]
    assert rows[1]["privacy"]["releases"] == 2 and rows[1]["privacy"]["epsilon"] > rows[0]["privacy"]["epsilon"]
    # bytes per client over the four stages, both ways: keys, shares and the masked vector (int64 per value)
    values = sum(v.size for v in BASE.values())
    assert all(b > 8 * values for r in rows for b in r["bytes_up_per_client"])
    assert rows[0]["bytes_down_per_client"] > 4 * values
    assert sorted(p.name for p in (tmp_path / "ck").glob("round-*.safetensors")) == [
        "round-0001.safetensors",
        "round-0002.safetensors",
    ]


def test_fedadam_steps_toward_the_secure_mean():
    ups = updates(3, seed=9, scale=0.1)
    got, _, _, _, _ = one_round(
        config(**{"federation.strategy": "fedadam"}), {11 + i: Client(u, 10) for i, u in enumerate(ups)}
    )
    mean = weighted_mean(ups, [10, 10, 10])
    for k in BASE:  # Adam's first step moves each value by about the server learning rate, toward the mean
        moved = got[k] - BASE[k]
        assert np.all(np.sign(moved[np.abs(mean[k]) > 1e-3]) == np.sign(mean[k][np.abs(mean[k]) > 1e-3]))
        assert float(np.max(np.abs(moved))) <= 0.011
