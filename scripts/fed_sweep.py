#!/usr/bin/env python
"""Sweep federated training schedules without Flower's runtime: the server's aggregation over the real client code.

Each variant runs, for ``federation.num-rounds`` rounds, :meth:`client.node.ClientNode.train` for every training user the
server's strategy samples (their episodes come through the LLM cache, their heads stay in the variant's stores), and
aggregates the returned shared tensors with the server's own code: the run config's strategy from the registry
(:func:`server.aggregation.build_plain`: every reply validated, the outlier filter, then FedAvg, FedProx, FedAdam,
FedMedian or FedTrimmedAvg; FedProx's proximal term comes in the strategy's training config, as a client gets it).
The nodes and their roles are those of a simulation (:func:`client.node.resolve_user`). Then every test user answers
with every method through :meth:`client.node.ClientNode.evaluate`, exactly as the final evaluation of ``fedhydra
simulate`` does. There is no SuperLink, no Ray, no ClientApp mods (so no DP clipping or secure aggregation, which
need ``fedhydra simulate``) and no checkpoint, so it is a research tool for choosing a schedule quickly; results worth
reporting come from ``fedhydra simulate`` (on LaMP-3 the two agreed: see docs/lab-notebook.md).

Usage::

    .venv/bin/python scripts/fed_sweep.py --data ../shared/data/lamp/lamp3 --task LaMP-3 --protocol history \\
        --test-users 6 --out runs/fed-sweep \\
        --run-config "pool.pseudo-questions=12 pool.free-questions=60 llm.calls-per-user=120 federation.num-rounds=2" \\
        --variant "federation.local-head-epochs=40" --variant "federation.local-head-epochs=20" \\
        --variant "federation.strategy=fedprox federation.proximal-mu=1.0 federation.local-head-epochs=40"

It prints one markdown row per variant (each method's primary metric) and writes ``sweep.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, cast

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


class SweepGrid:
    """What the server's code asks of Flower's ``Grid``, served in this process by the training nodes (node id ->
    :class:`client.node.ClientNode`, all present): their ids (a strategy configuring a round) and their answers to the
    margin query (:func:`server.federation.gather_margin`), as the ClientApp gives them (:func:`client.client_app.query`).

    >>> SweepGrid({1: None, 2: None}).get_node_ids()
    [1, 2]
    """

    def __init__(self, nodes):
        self.nodes = dict(nodes)

    def get_node_ids(self) -> list[int]:
        return list(self.nodes)

    def send_and_receive(self, messages, *, timeout=None):
        from flwr.app import Message, MetricRecord, RecordDict

        from server.federation import to_numpy
        from shared.protocol import ASK_KEY, ASK_MARGIN, MARGIN_RECORD

        replies = []
        for msg in messages:
            if msg.content["config"].get(ASK_KEY) != ASK_MARGIN:
                raise ValueError(f"the sweep answers the margin query only, not {dict(msg.content['config'])}")
            sums = self.nodes[msg.metadata.dst_node_id].margin_sums(to_numpy(msg.content["arrays"]))
            replies.append(Message(content=RecordDict({MARGIN_RECORD: MetricRecord(sums)}), reply_to=msg))
        return replies


def reply(msg, state: dict, metrics: dict):
    """A training node's reply to ``msg``: its shared tensors (in the order the server sent them) and its metrics, as
    the ClientApp sends them (:func:`client.client_app.train`)."""
    from flwr.app import Array, ArrayRecord, Message, MetricRecord, RecordDict

    sent = list(msg.content["arrays"].keys())
    order = [k for k in sent if k in state] + [k for k in state if k not in sent]
    return Message(
        content=RecordDict(
            {"arrays": ArrayRecord({k: Array(state[k]) for k in order}), "metrics": MetricRecord(metrics)}
        ),
        reply_to=msg,
    )


def run_variant(name: str, mapping: dict, dataset, llm, out: Path) -> dict:
    """Train one schedule federatedly over the real client code, aggregated by the server's, then evaluate the test
    users."""
    from flwr.app import Array, ArrayRecord, ConfigRecord
    from flwr.supercore.task_identity import TaskIdentity

    from client.node import ClientNode, is_free_node, resolve_user
    from server.aggregation import aggregation_name, build_plain
    from server.federation import gather_margin, to_numpy, weighted_metrics
    from shared.config import RunConfig
    from shared.hydra.candidates import decision_keys
    from shared.protocol import TESTING_ROLES, TRAINING_ROLES
    from shared.tasks import get_task
    from shared.training.model import initial_shared_state
    from shared.users import node_count

    cfg = RunConfig.from_mapping({**mapping, "device.store-dir": str(out / name / "clients")})
    fed = cfg.federation
    if aggregation_name(fed) != "plain" or fed.dp_noise > 0:
        raise SystemExit(f"{name}: secure aggregation and DP need the ClientApp's mods; run `fedhydra simulate`")
    n_nodes = node_count(
        cfg.protocol, train_users=cfg.train_users, test_users=cfg.test_users, free_train_users=cfg.free_train_users
    )
    nodes = []
    for partition in range(n_nodes):  # the nodes of a simulation, in partition order, each with its role
        node_config = {"partition-id": partition}
        user, role = resolve_user(cfg, node_config)
        nodes.append(ClientNode(cfg, user, role, llm, free=is_free_node(cfg, node_config)))
    trainers = {i + 1: n for i, n in enumerate(nodes) if n.role.value in TRAINING_ROLES}  # node id = partition + 1
    testers = [n for n in nodes if n.role.value in TESTING_ROLES]
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1  # messages outside a Flower process
    arrays = initial_shared_state(cfg.model, cfg.seed)
    strategy, _ = build_plain(cfg, n_train=len(trainers), initial=ArrayRecord({k: Array(v) for k, v in arrays.items()}))
    grid = SweepGrid(trainers)
    mu = 0.0
    started = time.perf_counter()
    for rnd in range(1, fed.num_rounds + 1):
        record = ArrayRecord({k: Array(v) for k, v in arrays.items()})
        messages = sorted(
            strategy.configure_train(rnd, record, ConfigRecord({"final": False}), grid),
            key=lambda m: m.metadata.dst_node_id,
        )
        replies = []
        for msg in messages:
            mu = float(msg.content["config"].get("proximal-mu", 0.0))  # FedProx's term, as the strategy sends it
            state, metrics = trainers[msg.metadata.dst_node_id].train(arrays, proximal_mu=mu, server_round=rnd)
            if metrics["num-examples"] > 0:
                replies.append(reply(msg, state, metrics))
        aggregated, _ = strategy.aggregate_train(rnd, replies)
        if aggregated is not None:  # no valid reply: the global base stays, as on the server
            arrays = to_numpy(aggregated)
        print(
            f"  {name}: round {rnd}/{fed.num_rounds} done, {time.perf_counter() - started:.0f} s",
            file=sys.stderr,
            flush=True,
        )
    chosen = None
    if cfg.margin_folds:  # as the server does after the last round: the training clients' margin sums, added up
        record = ArrayRecord({k: Array(v) for k, v in arrays.items()})
        chosen, _ = gather_margin(
            cast(Any, grid),
            list(trainers),
            record,
            server_round=fed.num_rounds,
            anchors=decision_keys(get_task(cfg.task), cfg.pool),
        )
    margin = float(chosen.margin) if chosen is not None else None
    anchor = chosen.anchor if chosen is not None else None
    llm_calls = int(chosen.llm_calls) if chosen is not None and chosen.llm_calls is not None else None
    records = [
        node.evaluate(arrays, methods=None, golds=dataset.golds, margin=margin, anchor=anchor, llm_calls=llm_calls)
        for node in testers
    ]
    pooled = dict(weighted_metrics(records))
    return {
        "variant": name,
        "local_epochs": fed.local_epochs,
        "local_head_epochs": fed.local_head_epochs,
        "rounds": fed.num_rounds,
        "strategy": fed.strategy,
        "proximal_mu": mu,
        "margin": margin if margin is None or margin < float("inf") else "inf",
        "anchor": anchor,
        "seconds": round(time.perf_counter() - started, 1),
        "metrics": pooled,
    }


def main(argv: list[str] | None = None) -> int:
    from shared.config import default_mapping, parse_overrides
    from shared.data import load_split
    from shared.llm.client import LLMClient
    from shared.llm.resolver import resolve_llm
    from shared.metrics import primary_metric
    from shared.tasks import get_task

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="LaMP-format directory")
    p.add_argument("--task", required=True)
    p.add_argument("--protocol", default="disjoint", choices=["disjoint", "history"])
    p.add_argument("--train-users", type=int)
    p.add_argument("--test-users", type=int)
    p.add_argument("--run-config", default="", help="overrides common to every variant (key=value ...)")
    p.add_argument("--variant", action="append", default=[], help="one schedule's overrides; repeat")
    p.add_argument("--out", required=True, help="folder for the variants' stores and sweep.json")
    args = p.parse_args(argv)

    base = {
        **default_mapping(),
        **parse_overrides(args.run_config),
        "data.dir": args.data,
        "data.task": args.task,
        "protocol": args.protocol,
    }
    for flag, key in (("train_users", "data.train-users"), ("test_users", "data.test-users")):
        if getattr(args, flag) is not None:
            base[key] = getattr(args, flag)
    task = get_task(args.task)
    dataset = load_split(args.data, task.name)
    metric, _ = primary_metric(task)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    with resolve_llm(concurrency=base["llm.concurrency"]) as endpoint:
        llm = LLMClient(endpoint.config)
        for i, variant in enumerate(args.variant or [""]):
            name = f"v{i + 1}"
            print(f"{name}: {variant or '(the run config as is)'}", file=sys.stderr, flush=True)
            result = run_variant(name, {**base, **parse_overrides(variant)}, dataset, llm, out)
            result["overrides"] = variant
            results.append(result)
        calls = llm.stats.calls
    methods = [k.split("/")[0] for k in results[0]["metrics"] if k.endswith(f"/{metric}")]
    print(f"| variant | overrides | {' | '.join(methods)} | seconds |")
    print("|---|---|" + "---|" * len(methods) + "---|")
    for r in results:
        cells = " | ".join(f"{r['metrics'][f'{m}/{metric}']:.4f}" for m in methods)
        print(f"| {r['variant']} | {r['overrides'] or '-'} | {cells} | {r['seconds']} |")
    print(f"{metric} per method; LLM requests that reached the server: {calls}")
    (out / "sweep.json").write_text(json.dumps({"metric": metric, "llm_calls": calls, "variants": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
