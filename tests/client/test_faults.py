"""The fault-injection mod (:mod:`lab.faults.mod`): which clients fail, when, and how, and that only the
fault-injection ClientApp carries it (the federated runs are in tests/simulations)."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MessageType, MetricRecord, RecordDict

from client.node import offlabel_answers
from lab.faults.mod import FaultsMod, InjectedFault, dropped_partitions
from shared.hydra.episodes import Episode
from shared.tasks import get_task

pytestmark = pytest.mark.usefixtures("flower_task_identity")


def test_dropout_takes_the_same_exact_fraction_each_round_and_varies_who():
    for n, f in ((10, 0.3), (3, 1 / 3), (8, 0.5), (5, 0.0), (4, 1.0)):
        rounds = [dropped_partitions(n, f, server_round=r, seed=0) for r in range(1, 21)]
        assert all(len(d) == round(f * n) and d <= set(range(n)) for d in rounds)
        assert rounds == [dropped_partitions(n, f, r, 0) for r in range(1, 21)]  # everyone agrees
    assert len({frozenset(dropped_partitions(10, 0.3, r, 0)) for r in range(1, 21)}) > 5  # not always the same
    with pytest.raises(ValueError, match="dropout fraction"):
        dropped_partitions(10, 1.5, 1)


def train_message(server_round: int) -> Message:
    arrays = ArrayRecord({"base.a": Array(np.zeros(2, np.float32))})
    return Message(
        content=RecordDict({"arrays": arrays, "config": ConfigRecord({"server-round": server_round})}),
        dst_node_id=1,
        message_type=MessageType.TRAIN,
    )


def context(partition: int) -> Context:
    return Context(
        run_id=1,
        node_id=1,
        node_config={"partition-id": partition},
        state=RecordDict(),
        run_config={"data.train-users": 3, "run.seed": 0},
    )


def trained(msg: Message, ctx: Context) -> Message:
    trained.calls += 1
    content = RecordDict(
        {"arrays": ArrayRecord({"base.a": Array(np.ones(2, np.float32))}), "metrics": MetricRecord({"num-examples": 4})}
    )
    return Message(content=content, reply_to=msg)


def test_the_mod_drops_exactly_the_chosen_partitions():
    faults_mod = FaultsMod({"dropout": 1 / 3})
    for rnd in (1, 2, 3):
        dropped = dropped_partitions(3, 1 / 3, rnd, 0)
        for p in range(3):
            trained.calls = 0
            if p in dropped:
                with pytest.raises(InjectedFault, match=f"dropped out of round {rnd}"):
                    faults_mod(train_message(rnd), context(p), trained)
                assert trained.calls == 0
            else:
                assert faults_mod(train_message(rnd), context(p), trained).content["arrays"]["base.a"].numpy()[0] == 1


def test_crash_after_train_does_the_work_and_loses_the_reply():
    faults_mod = FaultsMod({"1": "crash-after-train", "2": "scale"})
    trained.calls = 0
    with pytest.raises(InjectedFault, match="after training"):
        faults_mod(train_message(1), context(1), trained)
    assert trained.calls == 1
    reply = faults_mod(train_message(1), context(2), trained)
    assert reply.content["arrays"]["base.a"].numpy().tolist() == [1000.0, 1000.0]
    assert faults_mod(train_message(1), context(0), trained).content["arrays"]["base.a"].numpy()[0] == 1.0


def test_offlabel_answers_are_counted_for_label_tasks_only():
    ep = Episode(
        qid="q",
        input="x",
        query="x",
        gold="3",
        corpus=(),
        top=[],
        bm25=[],
        rerank_answers=["3", "Sorry, I cannot tell.", None],
        greedy="",
        samples=["5", "banana"],
    )
    assert offlabel_answers(get_task("LaMP-3"), [ep]) == 3  # the sorry, the empty greedy answer, the banana
    assert offlabel_answers(get_task("LaMP-7"), [ep]) == 0


def test_only_the_fault_injection_client_app_carries_the_mod():
    import ast
    import inspect

    from client import client_app
    from lab.faults import client_app as fault_app

    assert not [m for m in client_app.app._mods if isinstance(m, FaultsMod)]  # the production ClientApp
    # the order it always had, SecAgg+ and the packing outside it (a fault is what the client masks, packs and sends)
    # the error replies' mod right inside the audit: an injected fault leaves as a fixed error reply too
    assert fault_app.app._mods == [
        client_app.audit_mod,
        client_app.error_mod,
        client_app.packing_mod,
        client_app.secagg_mod,
        fault_app.faults_mod,
        client_app._dp_mod,
    ]
    assert isinstance(fault_app.faults_mod, FaultsMod)
    assert fault_app.faults_mod.faults == {}  # imported from the repository: no app copy's faults, so it does nothing
    assert set(fault_app.app._registered_funcs) == set(client_app.app._registered_funcs)
    imported = {n.module for n in ast.walk(ast.parse(inspect.getsource(client_app))) if isinstance(n, ast.ImportFrom)}
    assert not [m for m in imported if m.startswith(("simulations", "lab", "tests"))]
