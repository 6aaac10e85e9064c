"""What the server does per round grows with the clients it samples, not with the federation (issue 16, part 2).

A grid of fake nodes answers every message at once; the rounds of a federation of 12 and of 1,200 training nodes,
4 sampled per round, send the same number of messages, write round lines and checkpoints of the same size, and ask
only the sampled nodes for the margin.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, Message, MetricRecord, RecordDict
from flwr.serverapp.strategy import FedAvg

from server.federation import ValidatingStrategy, expected_from, run_rounds
from shared.hydra.candidates import anchors_for
from shared.hydra.decision import CalibrationPoint, anchor_margin_sums
from shared.tasks import get_task
from shared.training.model import ModelConfig

pytestmark = pytest.mark.usefixtures("flower_task_identity")

SENT = {"base.adapter.trunk.weight": np.zeros((3, 4), np.float32), "base.adapter.trunk.bias": np.zeros(3, np.float32)}
MARGIN = anchor_margin_sums(
    {a: [CalibrationPoint(0.5, 0.1), CalibrationPoint(0.2, -0.1)] for a in anchors_for(get_task("LaMP-7"))}
).to_record()


class _Grid:
    """Training nodes that answer training messages with a valid update and the margin query with sums; records
    every message sent."""

    def __init__(self, node_ids: list[int]):
        self.node_ids = node_ids
        self.sent: list[tuple[str, int]] = []  # (message type, destination)

    def get_node_ids(self) -> list[int]:
        return list(self.node_ids)

    def send_and_receive(self, messages, timeout=None):
        out = []
        for m in messages:
            kind, node = m.metadata.message_type, m.metadata.dst_node_id
            self.sent.append((kind, node))
            if kind == "query":
                out.append(Message(RecordDict({"margin": MetricRecord(MARGIN)}), reply_to=m))
            else:
                arrays = ArrayRecord({k: Array(v + 0.01 * (node % 5)) for k, v in SENT.items()})
                out.append(
                    Message(RecordDict({"arrays": arrays, "metrics": MetricRecord({"num-examples": 3})}), reply_to=m)
                )
        return out


def _run(tmp_path, n_nodes: int, *, sampled: int = 4, rounds: int = 3) -> tuple[_Grid, list[dict]]:
    grid = _Grid(list(range(1, n_nodes + 1)))
    initial = ArrayRecord({k: Array(v) for k, v in SENT.items()})
    inner = FedAvg(fraction_train=1e-9, min_train_nodes=sampled, min_evaluate_nodes=1, min_available_nodes=1)
    strategy = ValidatingStrategy(inner, expected_from(initial))
    run_rounds(
        grid,
        strategy,
        initial,
        num_rounds=rounds,
        start_round=0,
        roles={n: "train" for n in grid.node_ids},
        out_dir=tmp_path / "out",
        checkpoint_dir=tmp_path / "ck",
        model=ModelConfig(),
        task="LaMP-7",
        margin=True,
    )
    lines = [json.loads(line) for line in (tmp_path / "out" / "rounds.jsonl").read_text().splitlines()]
    return grid, lines


def test_a_round_costs_the_same_in_a_federation_a_hundred_times_larger(tmp_path):
    small, small_rounds = _run(tmp_path / "small", 12)
    large, large_rounds = _run(tmp_path / "large", 1200)
    for grid in (small, large):
        trains = [node for kind, node in grid.sent if kind == "train"]
        assert len(trains) == 3 * 4  # K messages a round, whatever N
        queried = {node for kind, node in grid.sent if kind == "query"}
        assert queried == set(trains)  # the margin asks the nodes that trained, not the federation
    for grid, rows in ((small, small_rounds), (large, large_rounds)):
        assert [r["sampled"] for r in rows] == [4, 4, 4] and all(r["accepted"] == 4 for r in rows)
        assert all({"train", "aggregate", "checkpoint"} <= set(r["timing"]) for r in rows)
        assert "margin" in rows[-1]["timing"]
        assert rows[-1]["margin"]["clients"] == len({n for kind, n in grid.sent if kind == "query"})
    # the round lines and checkpoints hold nothing per federation member
    for a, b in zip(small_rounds, large_rounds):
        assert len(a["bytes_up_per_client"]) == len(b["bytes_up_per_client"]) == 4
        assert set(a) == set(b)
    for rnd in (1, 2, 3):
        name = f"round-{rnd:04d}.safetensors"
        assert (tmp_path / "small" / "ck" / name).stat().st_size == (tmp_path / "large" / "ck" / name).stat().st_size


def test_with_every_node_sampled_the_margin_still_asks_every_training_node(tmp_path):
    grid, rows = _run(tmp_path, 5, sampled=5, rounds=1)
    assert sorted(node for kind, node in grid.sent if kind == "query") == [1, 2, 3, 4, 5]
    assert rows[-1]["margin"]["clients"] == 5 and rows[-1]["sampled"] == 5
