#!/usr/bin/env python
"""A FedHydra simulation on a multi-node Ray cluster (issue 16, part 3): a Ray head and a Ray worker as separate Ray
nodes on this machine, Flower's simulation engine attached to that cluster, and proof that clients ran on both nodes.

1. Starts the cluster (:class:`lab.scale.ray_cluster.LocalRayCluster`): ``ray start --head`` and
   ``ray start --address=<head>`` as separate processes, each with its own CPUs (``--head-cpus``, ``--worker-cpus``),
   object store, ports and temporary folder, and ``FEDHYDRA_RAY_NODE_NAME`` = ``head`` / ``worker`` in the
   environment its Ray workers inherit. The loopback stands in for the network between two machines.
2. Runs a small federation of training rounds on it (:func:`lab.scale.bench.run_federation` with
   ``RAY_ADDRESS`` = the head, each ClientApp holding ``--client-cpus`` CPUs, so one ClientApp per node runs at once
   with the defaults): synthetic LaMP-7 users, the deterministic stub LLM (not a language model). Every message a
   ClientApp handles is recorded by the probe with the Ray node id, the node's name and the worker's pid; the
   script prints where the messages ran and fails unless training messages ran on every node.
3. With ``--simulate``, also runs the main job the way a user would, ``fedhydra simulate --ray-address <head>
   --client-cpus 1`` (training and test users, evaluation included; production ClientApp, no probe), and reports
   the ClientApp actor processes seen in each node's process tree while it ran.
4. Stops everything it started by pid (never ``ray stop``, which would stop every Ray on the machine) and checks
   that no process of the cluster is left.

Usage (from the repository root; a few minutes on 2 idle cores)::

    .venv/bin/python scripts/ray_cluster_sim.py --out runs/ray-cluster [--users 4 --rounds 1] [--simulate]

Writes ``OUT/ray_cluster.json`` (placement, per-round figures, memory of every process of both nodes).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

STUB_NOTE = "LLM: lab.llm_stub.StubEndpoint (deterministic stub, not a language model)"


def watch_actors(cluster, stop: threading.Event, seen: dict[str, set]) -> None:
    """Record, per Ray node, the pids of ClientApp actor processes in that node's process tree."""
    from lab.scale.memory import process_name
    from shared.procs import descendants

    while not stop.is_set():
        for name, proc in list(cluster.procs):
            for pid in descendants(proc.pid):
                if process_name(pid).startswith("ray::ClientAppActor"):
                    seen.setdefault(name, set()).add(pid)
        stop.wait(1.0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/ray-cluster")
    p.add_argument("--users", type=int, default=4, help="training users (synthetic LaMP-7)")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--head-cpus", type=int, default=1)
    p.add_argument("--worker-cpus", type=int, default=1)
    p.add_argument("--client-cpus", type=int, default=1)
    p.add_argument("--simulate", action="store_true", help="also run `fedhydra simulate --ray-address` on the cluster")
    p.add_argument("--run-config", default="", help="more overrides (key=value ...)")
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))

    from lab.llm_stub import StubEndpoint
    from lab.scale.bench import run_federation
    from lab.scale.ray_cluster import LocalRayCluster
    from shared.config import default_mapping, parse_overrides
    from shared.synthetic import write_synthetic

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    data = write_synthetic(out / "data", "LaMP-7", n_users=args.users + 1, items_per_user=12, seed=0)
    small = {
        "data.task": "LaMP-7",
        "pool.pseudo-questions": 1,
        "pool.free-questions": 2,
        "pool.n-samples": 1,
        "pool.label-records": 2,
        "train.epochs": 1,
        "federation.local-epochs": 1,
        "train.head-epochs": 4,
        "pool.margin-folds": 0,
        "eval.every": 0,
        "run.seed": 0,
        "llm.model": "stub",
        **parse_overrides(args.run_config),
    }
    env = {"FEDHYDRA_LLM_CACHE": str(out / "llm-cache.sqlite"), "FEDHYDRA_HOME": str(out / "home")}
    report: dict = {"llm": STUB_NOTE}
    started = time.time()
    # a Ray worker inherits the environment of its node's `ray start`, not the simulation's: what the ClientApps read
    # from the environment (the LLM cache, FEDHYDRA_HOME) is set where each node starts; the probe's folder comes with
    # the staged app (lab.scale.app.scale_app)
    cluster = LocalRayCluster(out / "ray", nodes=[("head", args.head_cpus), ("worker", args.worker_cpus)], env=env)
    try:
        cluster.start()
        nodes = cluster.alive_nodes()
        report["cluster"] = {
            "address": cluster.address,
            "nodes": nodes,
            "pids": dict(zip(("head", "worker"), cluster.pids)),
        }
        described = ", ".join(f"{n['id'][:8]} {n['cpus']:g} CPU" for n in nodes)
        print(
            f"Ray cluster at {cluster.address}: {len(nodes)} nodes ({described}); start-up "
            f"{time.time() - started:.0f} s",
            file=sys.stderr,
            flush=True,
        )
        with StubEndpoint(delay_s=0.0) as stub:
            mapping = {
                **default_mapping(),
                **small,
                "data.dir": str(data),
                "data.train-users": args.users,
                "data.test-users": 0,
                "federation.num-rounds": args.rounds,
                "device.store-dir": str(out / "clients"),
                "llm.url": stub.url,
                "federation.min-train-nodes": args.users,
            }
            run = run_federation(
                mapping,
                out / "federation",
                ray_address=cluster.address,
                client_cpus=args.client_cpus,
                env=env,
                extra_roots=cluster.pids,
                progress=lambda s: print(s, file=sys.stderr, flush=True),
            )
            report["federation"] = run
            placement = run["placement"]
            print("\nWhere the ClientApps ran (" + STUB_NOTE + "):\n")
            print("| Ray node (name) | Ray node id | host | worker pids | messages | training messages |")
            print("|---|---|---|---|---|---|")
            for entry in placement:
                print(
                    f"| {entry['ray_node_name']} | {str(entry['ray_node'])[:12]} | {entry['host']} | "
                    f"{', '.join(map(str, entry['pids']))} | {entry['messages']} | {entry['train']} |"
                )
            trained_on = {e["ray_node"] for e in placement if e["train"]}
            report["trained_on_nodes"] = len(trained_on)
            if args.simulate:
                seen: dict[str, set] = {}
                stop = threading.Event()
                watcher = threading.Thread(target=watch_actors, args=(cluster, stop, seen), daemon=True)
                watcher.start()
                cmd = [
                    sys.executable,
                    "-m",
                    "simulations.cli",
                    "simulate",
                    "--data",
                    str(data),
                    "--task",
                    "LaMP-7",
                    "--train-users",
                    "2",
                    "--test-users",
                    "1",
                    "--num-rounds",
                    "1",
                    "--out",
                    str(out / "simulate"),
                    "--llm-url",
                    stub.url,
                    "--llm-model",
                    "stub",
                    "--llm-cache",
                    str(out / "llm-cache.sqlite"),
                    "--ray-address",
                    cluster.address,
                    "--client-cpus",
                    str(args.client_cpus),
                    "--run-config",
                    " ".join(f"{k}={v}" for k, v in small.items() if k not in ("data.task", "llm.model", "eval.every")),
                ]
                t0 = time.time()
                done = subprocess.run(cmd, cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True)
                stop.set()
                watcher.join(5)
                report["simulate"] = {
                    "returncode": done.returncode,
                    "seconds": round(time.time() - t0, 1),
                    "actor_pids_per_node": {k: sorted(v) for k, v in seen.items()},
                    "tail": (done.stdout + done.stderr)[-3000:],
                }
                print(
                    f"\nfedhydra simulate --ray-address {cluster.address}: exit {done.returncode} in "
                    f"{report['simulate']['seconds']} s; ClientApp actor processes per Ray node: "
                    f"{ {k: len(v) for k, v in seen.items()} }"
                )
    finally:
        cluster.stop()
        report["leftover_processes"] = cluster.leftovers()
        report["wall_s"] = round(time.time() - started, 1)
        (out / "ray_cluster.json").write_text(json.dumps(report, indent=1, default=str))
    ok = report.get("trained_on_nodes", 0) >= 2 and not report["leftover_processes"]
    if args.simulate:
        ok = ok and report["simulate"]["returncode"] == 0 and len(report["simulate"]["actor_pids_per_node"]) >= 2
    print(
        f"\nclients trained on {report.get('trained_on_nodes', 0)} Ray nodes; processes left after stop: "
        f"{report['leftover_processes'] or 'none'}; {report['wall_s']} s in all; written to {out / 'ray_cluster.json'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
