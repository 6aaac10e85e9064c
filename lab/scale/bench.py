"""One measured federation (issue 16): a real Flower simulation of training rounds, probed, and what it cost.

:func:`run_federation` runs ``federation.num-rounds`` rounds of the real server and client code on a local SuperLink (or on
an existing Ray cluster, ``ray_address``) with the probed ClientApp (:mod:`lab.scale.client_app`), samples
the memory of every process of the run (:class:`lab.scale.memory.TreeMemory`) and returns what
:func:`analyze` makes of the server's ``rounds.jsonl`` and the clients' probe lines:

- per round: the round's seconds and their split: ``clients_busy_s`` (wall seconds during which at least one
  ClientApp was handling a training message), of which the client-seconds went to training (``train_client_s``)
  and to first contacts (``episodes_client_s``: building episodes, LLM calls included; ``llm_request_s`` is the LLM
  request-seconds among them), the server's ``aggregate_s`` (validation and aggregation) and ``checkpoint_s``, and
  ``flower_overhead_s`` = the training phase's wall seconds (the base sent until the last reply) minus
  ``clients_busy_s``: the time no client was working, spent scheduling, (de)serializing and passing messages;
- bytes per client per round: tensors up and down (what ``rounds.jsonl`` reports) and the serialized size
  Flower ships (its deflated objects, as the probe measures them);
- the run's start-up until the first round (Flower, Ray and the discovery of every node's role), the node-role
  discovery messages, the peak memory of every process and of the whole run, and the disk of the clients' stores.

The LLM is whatever ``llm.url`` says; the scale scripts point it at :class:`lab.llm_stub.StubEndpoint` (a
deterministic stub, not a language model), and every table they print says so.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lab.scale.app import scale_app
from lab.scale.memory import TreeMemory
from lab.scale.probe import read_probes
from shared.io import atomic_write_text, read_jsonl
from simulations.superlink import LocalSuperLink, SimulationError

__all__ = ["run_federation", "analyze", "store_disk", "busy_seconds"]


def busy_seconds(intervals: list[tuple[float, float]]) -> float:
    """Seconds covered by the union of ``(start, end)`` intervals.

    >>> busy_seconds([(0, 2), (1, 3), (5, 6)])
    4
    """
    total: float = 0
    end = float("-inf")
    for a, b in sorted(intervals):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def store_disk(store_dir: Path, users: list[str] | None = None) -> dict[str, float]:
    """Bytes on disk of each user's store folder under ``store_dir`` (the device bundles' folder excluded):
    how many stores, their mean, max and total, and the bundles' bytes."""

    def size(path: Path) -> int:
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())

    sizes = []
    bundles = 0
    if store_dir.is_dir():
        for folder in store_dir.iterdir():
            if not folder.is_dir():
                continue
            if folder.name == "bundles":
                bundles = size(folder)
            elif users is None or folder.name in users:
                sizes.append(size(folder))
    return {
        "stores": len(sizes),
        "mean_bytes": round(statistics.mean(sizes)) if sizes else 0,
        "max_bytes": max(sizes, default=0),
        "total_bytes": sum(sizes),
        "bundles_bytes": bundles,
    }


def analyze(out: Path) -> dict[str, Any]:
    """The per-round figures of a finished run in ``out`` (``server/rounds.jsonl`` and ``probe/``)."""
    rounds_file = out / "server" / "rounds.jsonl"
    if not rounds_file.exists():
        raise FileNotFoundError(rounds_file)
    rounds = read_jsonl(rounds_file)
    probes = read_probes(out / "probe")
    rows = []
    for r in rounds:
        rnd = r["server_round"]
        mine = [p for p in probes if p["type"].startswith("train") and p.get("round") == rnd]
        busy = busy_seconds([(p["start"], p["start"] + p["seconds"]) for p in mine])
        client_s = sum(p["seconds"] for p in mine)
        episodes_s = sum(p["episodes_seconds"] for p in mine if p["episodes_built"])
        timing = r.get("timing", {})
        up = r["bytes_up_per_client"]
        rows.append(
            {
                "round": rnd,
                "sampled": r.get("sampled", len(mine)),
                "accepted": r["accepted"],
                "failed": r["failed"],
                "rejected": len(r["rejected"]),
                "round_s": round(r["seconds"], 2),
                "train_phase_s": timing.get("train"),
                "clients_busy_s": round(busy, 2),
                "client_s": round(client_s, 2),
                "train_client_s": round(client_s - episodes_s, 2),
                "episodes_client_s": round(episodes_s, 2),
                "first_contacts": sum(bool(p["episodes_built"]) for p in mine),
                "llm_request_s": round(sum(p["llm_seconds"] for p in mine), 2),
                "llm_calls": sum(p["llm_calls"] for p in mine),
                "aggregate_s": timing.get("aggregate"),
                "checkpoint_s": timing.get("checkpoint"),
                "margin_s": timing.get("margin"),
                "evaluate_s": timing.get("evaluate"),
                "flower_overhead_s": round(timing["train"] - busy, 2) if "train" in timing else None,
                "tensor_bytes_up": max(up, default=0),
                "tensor_bytes_down": r["bytes_down_per_client"],
                "wire_bytes_up": round(statistics.mean(p["wire_bytes_out"] for p in mine)) if mine else None,
                "wire_bytes_down": round(statistics.mean(p["wire_bytes_in"] for p in mine)) if mine else None,
                "objects_up": max((p["objects_out"] for p in mine), default=None),
                "client_processes": len({(p["host"], p["pid"]) for p in mine}),
                "client_peak_rss_mb": max((p["hwm_mb"] for p in mine), default=None),
            }
        )
    first = [p for p in probes if p["episodes_built"]]
    queries = [p for p in probes if p["type"] == "query" and p.get("round") is None]
    return {
        "rounds": rows,
        "first_contact": {
            "clients": len(first),
            "mean_s": round(statistics.mean(p["episodes_seconds"] for p in first), 3) if first else None,
            "mean_llm_calls": round(statistics.mean(p["llm_calls"] for p in first), 1) if first else None,
        },
        "role_queries": {
            "messages": len(queries),
            "client_s": round(sum(p["seconds"] for p in queries), 2),
            "busy_s": round(busy_seconds([(p["start"], p["start"] + p["seconds"]) for p in queries]), 2),
        },
        "placement": _placement(probes),
        "client_processes": _process_memory(probes),
    }


def _process_memory(probes: list[dict]) -> list[dict]:
    """Per ClientApp process (a Ray actor serves many clients): messages handled, and its resident memory after each
    training message: first, last, lowest and highest (memory kept per client would make it climb with every client;
    the allocator returning memory makes it fall back)."""
    out = []
    for host, pid in dict.fromkeys((p["host"], p["pid"]) for p in probes):
        mine = [p for p in probes if (p["host"], p["pid"]) == (host, pid)]
        trains = [p for p in mine if p["type"].startswith("train")]
        row = {
            "host": host,
            "pid": pid,
            "messages": len(mine),
            "train_messages": len(trains),
            "peak_rss_mb": max(p["hwm_mb"] for p in mine),
        }
        if trains:
            after = [p["rss_mb"] for p in trains]
            row.update(
                first_train_rss_mb=after[0],
                last_train_rss_mb=after[-1],
                min_train_rss_mb=min(after),
                max_train_rss_mb=max(after),
            )
        out.append(row)
    return out


def _placement(probes: list[dict]) -> list[dict]:
    """Where the messages ran: per (host, Ray node, Ray node name), the processes and messages."""
    places: dict[tuple, dict] = {}
    for p in probes:
        key = (p["host"], p.get("ray_node"), p.get("ray_node_name"))
        entry = places.setdefault(
            key, {"host": key[0], "ray_node": key[1], "ray_node_name": key[2], "pids": set(), "messages": 0, "train": 0}
        )
        entry["pids"].add(p["pid"])
        entry["messages"] += 1
        entry["train"] += p["type"].startswith("train")
    return [{**e, "pids": sorted(e["pids"])} for e in places.values()]


def run_federation(
    mapping: Mapping[str, Any],
    out: Path,
    *,
    ray_address: str | None = None,
    client_cpus: int = 2,
    env: Mapping[str, str] | None = None,
    progress=print,
    timeout: float = 24 * 3600,
    extra_roots: list[int] | None = None,
) -> dict[str, Any]:
    """Run the federation of ``mapping`` (a complete run config) in ``out`` and measure it (module docstring).

    ``mapping`` must name ``device.store-dir`` and ``llm.url``; ``out/server`` gets the server's files, ``out/probe``
    the probe lines. ``ray_address`` attaches Flower's simulation engine to that Ray cluster (``RAY_ADDRESS`` in the
    environment of the simulation process) instead of a Ray instance of its own; ``client_cpus`` is each ClientApp's CPU
    share (``client-resources-num-cpus``), so ``cluster CPUs / client_cpus`` ClientApps run at once. ``extra_roots``:
    more process trees whose memory counts (a Ray cluster started outside the run).
    """
    import tomli_w

    from shared.users import node_count

    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    values = {**mapping, "run.out-dir": str(out / "server")}
    for stale in ("probe",):
        for f in (out / stale).glob("*.jsonl") if (out / stale).is_dir() else []:
            f.unlink()
    config_file = out / "run_config.toml"
    atomic_write_text(config_file, tomli_w.dumps(values))
    n_nodes = node_count(
        values["data.protocol"],
        train_users=int(values["data.train-users"]),
        test_users=int(values["data.test-users"]),
        free_train_users=int(values.get("data.free-train-users", 0)),
    )
    link_env = dict(env or {})
    if ray_address:
        link_env["RAY_ADDRESS"] = ray_address
    app = scale_app(out, out / "probe")
    marks: dict[str, float] = {}
    log_path = out / "flwr.log"
    started = time.time()
    with LocalSuperLink(
        out / "flwr-home", num_supernodes=n_nodes, num_cpus_per_client=client_cpus, env=link_env
    ) as link:
        assert link.process is not None
        with TreeMemory([link.process.pid, os.getpid(), *(extra_roots or [])], interval_s=1.0) as memory:
            submitted = time.time()
            run_id = link.submit(app, config_file)
            with open(log_path, "w", encoding="utf-8") as log:

                def on_line(line: str) -> None:
                    log.write(f"{time.time() - submitted:9.2f} {line}\n")
                    log.flush()
                    if "FedHydra:" in line and "discovered" not in marks:
                        marks["discovered"] = time.time() - submitted
                    if "[ROUND 1/" in line and "first_round" not in marks:
                        marks["first_round"] = time.time() - submitted
                    if "[ROUND" in line or "ERROR" in line or "rejected" in line:
                        progress("  " + line.split("INFO :", 1)[-1].strip()[:200])

                status = link.wait(run_id, on_line=on_line, timeout=timeout)
        if status != "finished:completed":
            raise SimulationError(f"Flower run {run_id} ended as {status!r}; see {log_path}")
    result = analyze(out)
    result.update(
        {
            "status": status,
            "wall_s": round(time.time() - started, 1),
            "nodes": n_nodes,
            "until_roles_known_s": round(marks.get("discovered", float("nan")), 1),
            "until_first_round_s": round(marks.get("first_round", float("nan")), 1),
            "memory": memory.report(),
            "client_cpus": client_cpus,
            "ray_address": ray_address,
        }
    )
    return result
