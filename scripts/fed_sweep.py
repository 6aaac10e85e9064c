#!/usr/bin/env python
"""Sweep federated training schedules without Flower: FedAvg (or FedProx) over the real client code.

Each variant runs, for ``num-rounds`` rounds, :meth:`client.node.ClientNode.train` for every training user
(their episodes come through the LLM cache, their heads stay in the variant's stores) and averages the
returned shared tensors weighted by example count, as FedAvg does; ``strategy=fedprox`` adds the proximal
term. Then every test user answers with every method through :meth:`client.node.ClientNode.evaluate`,
exactly as the final evaluation of ``fedhydra simulate`` does. There is no SuperLink, no Ray, no reply
validation and no checkpoint, so it is a research tool for choosing a schedule quickly; results worth
reporting come from ``fedhydra simulate`` (on LaMP-3 the two agreed: see docs/results.md).

Usage::

    .venv/bin/python scripts/fed_sweep.py --data ../shared/data/lamp/lamp3 --task LaMP-3 --protocol history \\
        --test-users 6 --run-config "pseudo-questions=12 free-questions=60 llm-calls-per-user=120 num-rounds=2" \\
        --variant "local-head-epochs=40" --variant "local-head-epochs=20" \\
        --variant "strategy=fedprox proximal-mu=1.0 local-head-epochs=40" --out runs/fed-sweep

It prints one markdown row per variant (each method's primary metric) and writes ``sweep.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def fedavg(states: list[dict], weights: list[float]) -> dict:
    """The example-weighted mean of clients' shared tensors (FedAvg's aggregate).

    >>> import numpy as np
    >>> fedavg([{"base.a": np.zeros(2)}, {"base.a": np.ones(2)}], [1, 3])["base.a"].tolist()
    [0.75, 0.75]
    """
    import numpy as np

    total = float(sum(weights))
    return {k: (sum(w * s[k] for s, w in zip(states, weights)) / total).astype(np.float32) for k in states[0]}


def run_variant(name: str, mapping: dict, dataset, llm, out: Path) -> dict:
    """Train one schedule federatedly over the real client code, then evaluate the test users."""
    from client.node import ClientNode
    from shared.protocol import NodeRole
    from server.federation import weighted_metrics
    from shared.config import RunConfig
    from shared.training.model import initial_shared_state
    from shared.users import split_users

    cfg = RunConfig.from_mapping({**mapping, "store-dir": str(out / name / "clients")})
    fed = cfg.federation
    if fed.strategy not in ("fedavg", "fedprox"):
        raise SystemExit(f"{name}: this sweep averages like FedAvg/FedProx only, not {fed.strategy!r}")
    train, test = split_users(dataset, train_users=cfg.train_users, test_users=cfg.test_users,
                              protocol=cfg.protocol, offset=cfg.user_offset)
    history = cfg.protocol == "history"
    role = NodeRole.BOTH if history else NodeRole.TRAIN
    trainers = [ClientNode(cfg, u, role, llm) for u in train]
    testers = trainers if history else [ClientNode(cfg, u, NodeRole.TEST, llm) for u in test]
    mu = fed.proximal_mu if fed.strategy == "fedprox" else 0.0
    arrays = initial_shared_state(cfg.model, cfg.seed)
    started = time.perf_counter()
    for rnd in range(1, fed.num_rounds + 1):
        states, weights = [], []
        for node in trainers:
            state, metrics = node.train(arrays, proximal_mu=mu)
            if metrics["num-examples"] > 0:
                states.append(state)
                weights.append(metrics["num-examples"])
        arrays = fedavg(states, weights)
        print(f"  {name}: round {rnd}/{fed.num_rounds} done, {time.perf_counter() - started:.0f} s", file=sys.stderr,
              flush=True)
    margin, anchor = None, None
    if cfg.margin_folds:  # as the server does after the last round: the training clients' margin sums, added up
        from shared.hydra.candidates import anchors_for
        from shared.hydra.decision import MarginSums
        from shared.tasks import get_task

        anchors = anchors_for(get_task(cfg.task))
        total = MarginSums.zero(anchors=anchors)
        for node in trainers:
            total = total + MarginSums.from_record(node.margin_sums(arrays), anchors=anchors)
        choice = total.choose()
        margin, anchor = choice.margin, choice.anchor
    records = [node.evaluate(arrays, methods=None, golds=dataset.golds, margin=margin, anchor=anchor)
               for node in testers]
    pooled = dict(weighted_metrics(records))
    return {"variant": name, "local_epochs": fed.local_epochs, "local_head_epochs": fed.local_head_epochs,
            "rounds": fed.num_rounds, "strategy": fed.strategy, "proximal_mu": mu,
            "margin": margin if margin is None or margin < float("inf") else "inf", "anchor": anchor,
            "seconds": round(time.perf_counter() - started, 1), "metrics": pooled}


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

    base = {**default_mapping(), **parse_overrides(args.run_config), "data": args.data, "task": args.task,
            "protocol": args.protocol}
    for flag, key in (("train_users", "train-users"), ("test_users", "test-users")):
        if getattr(args, flag) is not None:
            base[key] = getattr(args, flag)
    task = get_task(args.task)
    dataset = load_split(args.data, task.name)
    metric, _ = primary_metric(task)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    with resolve_llm(concurrency=base["llm-concurrency"]) as endpoint:
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
