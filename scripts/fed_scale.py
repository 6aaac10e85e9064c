#!/usr/bin/env python
"""How a federated round's cost grows with the federation and with the clients sampled per round (issue 16).

For every federation size N (``--users``) and clients sampled per round K (``--sampled``, K <= N) it runs a real
Flower simulation (:func:`lab.scale.bench.run_federation`: local SuperLink, Ray, the production server and
client code plus a probe) of ``--rounds`` training rounds of N LaMP-7 training users, K sampled each round
(``federation.fraction-train = K/N``, ``federation.min-train-nodes = K``), no test users and no evaluation (``eval.every
= 0``), and no margin query unless ``--margin``. The LLM is :class:`lab.llm_stub.StubEndpoint` (``--stub-delay``
seconds per request, default 0): a deterministic stub, **not a language model**, so the figures measure the federation,
not the LLM; every table says so. ``--llm-url URL --llm-model NAME`` uses that endpoint instead (e.g. the embedded
server of ``fedhydra llm serve``, for the issue's one run at 300 real users with the real LLM); the tables then name it.

Users: the real LaMP-7 users of ``--data`` (default ``../shared/data/lamp/lamp7`` beside the repository: 1,000
users, read in place, never copied) or, with ``--synthetic``, that many synthetic LaMP-7 users written into the
output folder. All runs share one client store (``OUT/clients``), so a user's episodes are built on first contact
once and read from the store afterwards; ``--warm`` first builds the episodes of all max(N) users outside Flower
(the first-contact cost, per user, without the federation), so that the measured rounds have their episodes cached.

Per round it reports the time split (client training, first contacts with their LLM request-seconds, aggregation,
checkpoint, Flower overhead), bytes per client (tensors, and the serialized size Flower ships), the peak memory of
every process of the run (SuperLink, SuperExec, the simulation process with the ServerApp, Ray's processes and its
ClientApp workers, this process with the stub), and the disk per client store. It writes ``OUT/scale.json``,
``OUT/scale.md`` and, with ``--plot PNG``, round time against sampled clients and against federation size.

Usage (from the repository root)::

    # small, to check the script (a few minutes on 2 cores)
    .venv/bin/python scripts/fed_scale.py --users 30 --sampled 10 --rounds 1 --out runs/scale-small
    # the issue's grid (heavy: needs both cores for hours): warm first, then 100/300/1000 x 25/50/100
    .venv/bin/python scripts/fed_scale.py --warm --users 100 300 1000 --sampled 25 50 100 --rounds 3 \\
        --out runs/scale --plot docs/img/fed-scale.png
    # redraw the table and plot of an earlier run
    .venv/bin/python scripts/fed_scale.py --report runs/scale/scale.json --plot docs/img/fed-scale.png
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import cast

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

STUB_NOTE = (
    "LLM: lab.llm_stub.StubEndpoint (deterministic stub, {delay:g} s per request; not a language model: "
    "figures measure the federation, not the LLM)"
)

# the run's settings besides the defaults of [tool.flwr.app.config]: training rounds only
# (federation.max-in-flight 4: a few more messages in flight than the ClientApps at work; Flower's engine scans every
# pending message for every node ten times a second, server/window.py)
BENCH = {
    "data.task": "LaMP-7",
    "data.test-users": 0,
    "eval.every": 0,
    "pool.margin-folds": 0,
    "data.protocol": "disjoint",
    "llm.model": "stub",
    "llm.concurrency": 4,
    "federation.max-in-flight": 4,
}


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or "unknown"


def machine() -> dict:
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
    }


def mapping_for(args, n_users: int, sampled: int, data: Path, store: Path, llm_url: str) -> dict:
    from shared.config import default_mapping, parse_overrides

    return {
        **default_mapping(),
        **BENCH,
        **parse_overrides(args.run_config or ""),
        "data.dir": str(data),
        "data.train-users": n_users,
        "federation.num-rounds": args.rounds,
        "federation.fraction-train": sampled / n_users,
        "federation.min-train-nodes": sampled,
        "device.store-dir": str(store),
        "llm.url": llm_url,
        "pool.margin-folds": 3 if args.margin else 0,
        "run.seed": args.seed,
        **({"llm.model": args.llm_model} if args.llm_url else {}),
    }


def warm(args, n_users: int, data: Path, store: Path, llm_url: str) -> dict:
    """Build the episodes of the first ``n_users`` users (a client's first contact) outside Flower; per-user seconds."""
    from client.node import ClientNode
    from shared.config import RunConfig
    from shared.llm.client import LLMClient, LLMConfig
    from shared.protocol import NodeRole
    from shared.run_data import load_run_data
    from shared.users import split_users

    cfg = RunConfig.from_mapping(mapping_for(args, n_users, 1, data, store, llm_url))
    dataset = load_run_data(cfg)[0]
    train, _ = split_users(dataset, train_users=n_users, test_users=0, protocol="disjoint")
    llm = LLMClient(
        LLMConfig(
            base_url=llm_url,
            model=cfg.llm_model,
            concurrency=cfg.llm_concurrency,
            cache_path=str(Path(args.out).resolve() / "llm-cache.sqlite"),
        )
    )
    seconds, built = [], 0
    started = time.perf_counter()
    for i, user in enumerate(train):
        node = ClientNode(cfg, user, NodeRole.TRAIN, llm)
        fresh = not node.store.has_episodes()
        t = time.perf_counter()
        node.episodes()
        if fresh:  # built now, not read from the store
            seconds.append(time.perf_counter() - t)
            built += 1
        if (i + 1) % 50 == 0:
            print(
                f"  warm: {i + 1}/{len(train)} users, {time.perf_counter() - started:.0f} s",
                file=sys.stderr,
                flush=True,
            )
    return {
        "users": len(train),
        "built": built,
        "wall_s": round(time.perf_counter() - started, 1),
        "mean_s": round(statistics.mean(seconds), 3) if seconds else None,
        "p90_s": round(sorted(seconds)[int(0.9 * (len(seconds) - 1))], 3) if seconds else None,
        "llm_calls": llm.stats.calls,
    }


def summarize(run: dict) -> dict:
    """Means over a run's rounds (the median round time too)."""
    rows = run["rounds"]

    def mean(key):
        values = [r[key] for r in rows if r.get(key) is not None]
        return round(statistics.mean(values), 2) if values else None

    return {
        "users": run["users"],
        "sampled": run["sampled"],
        "rounds": len(rows),
        "round_s_median": round(statistics.median(r["round_s"] for r in rows), 1),
        **{
            k: mean(k)
            for k in (
                "round_s",
                "train_client_s",
                "episodes_client_s",
                "llm_request_s",
                "aggregate_s",
                "checkpoint_s",
                "flower_overhead_s",
                "tensor_bytes_up",
                "wire_bytes_up",
                "wire_bytes_down",
                "first_contacts",
            )
        },
        "peak_rss_mb": run["memory"]["peak_total_rss_mb"],
        "peak_pss_mb": run["memory"]["peak_total_pss_mb"],
        "until_roles_known_s": run["until_roles_known_s"],
        "role_queries_busy_s": run["role_queries"]["busy_s"],
        "disk_mean_bytes": run["disk"]["mean_bytes"],
    }


def tables(report: dict) -> str:
    note = report.get("llm_note") or STUB_NOTE.format(delay=report["stub_delay_s"])
    m = report["machine"]
    lines = [
        f"Measured on {m['cpu']} ({m['cores']} cores, {m['memory_gib']} GiB; load average at start "
        f"{', '.join(f'{x:.2f}' for x in m['load_average_at_start'])}). {note}. Users: {report['users_source']}. "
        f"Rounds of training only (no test users, no evaluation{'' if report.get('margin') else ', no margin query'}); "
        f"client-resources-num-cpus = {report['client_cpus']}.",
        "",
    ]
    short = "stub LLM" if not report.get("llm_note", "").startswith("LLM: http") else "real LLM"
    if report.get("warm"):
        w = report["warm"]
        lines += [
            f"First contact (episodes built outside Flower, {short}): {w['built']} of {w['users']} users built, "
            f"mean {w['mean_s']} s per user (p90 {w['p90_s']} s), {w['llm_calls']} LLM requests, "
            f"{w['wall_s']} s in all.",
            "",
        ]
    lines += [
        "| users N | sampled K | rounds | round s (mean / median) | client training s | first contacts (episodes s) | "
        "LLM request-s | aggregation s | checkpoint s | Flower overhead s | tensor B up/client | "
        "serialized B up / down per client | peak memory, all processes (RSS / PSS MB) | "
        "start-up until roles known s | disk per client store B |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in sorted(report["summary"], key=lambda s: (s["users"], s["sampled"], s["rounds"])):
        lines.append(
            f"| {s['users']} | {s['sampled']} | {s['rounds']} | {s['round_s']} / {s['round_s_median']} | {s['train_client_s']} | "
            f"{s['first_contacts']} ({s['episodes_client_s']}) | {s['llm_request_s']} | {s['aggregate_s']} | "
            f"{s['checkpoint_s']} | {s['flower_overhead_s']} | {_int(s['tensor_bytes_up'])} | "
            f"{_int(s['wire_bytes_up'])} / {_int(s['wire_bytes_down'])} | {s['peak_rss_mb']:,.0f} / "
            f"{s['peak_pss_mb']:,.0f} | {s['until_roles_known_s']} | {_int(s['disk_mean_bytes'])} |"
        )
    lines += [
        "",
        f"Per round ({short}):",
        "",
        "| N | K | round | round s | clients busy s | client training s | first contacts | episodes s | "
        "aggregation s | checkpoint s | Flower overhead s | tensor B up | serialized B up | ClientApp processes | "
        "ClientApp peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in report["runs"]:
        for r in run["rounds"]:
            lines.append(
                f"| {run['users']} | {run['sampled']} | {r['round']} | {r['round_s']} | {r['clients_busy_s']} | "
                f"{r['train_client_s']} | {r['first_contacts']} | {r['episodes_client_s']} | {r['aggregate_s']} | "
                f"{r['checkpoint_s']} | {r['flower_overhead_s']} | {_int(r['tensor_bytes_up'])} | "
                f"{_int(r['wire_bytes_up'])} | {r['client_processes']} | {r['client_peak_rss_mb']} |"
            )
    lines += [
        "",
        f"Peak memory per process (largest run; {short}):",
        "",
        "| process | count | peak RSS MB | peak PSS MB |",
        "|---|---|---|---|",
    ]
    biggest = max(report["runs"], key=lambda r: r["memory"]["peak_total_rss_mb"])
    for p in biggest["memory"]["by_name"]:
        lines.append(f"| {p['name']} | {p['count']} | {p['peak_rss_mb']:,.0f} | {p['peak_pss_mb']:,.0f} |")
    lines.append(
        f"\n(N = {biggest['users']}, K = {biggest['sampled']}: whole run peak {biggest['memory']['peak_total_rss_mb']:,.0f} MB "
        f"RSS summed over processes, {biggest['memory']['peak_total_pss_mb']:,.0f} MB PSS.)"
    )
    lines += [
        "",
        "ClientApp processes (each serves many clients one after the other): resident memory after each "
        "training message it handled:",
        "",
        "| N | K | pid | training messages | after the first MB | "
        "after the last MB | lowest / highest MB | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in report["runs"]:
        for c in run.get("client_processes", []):
            if c["train_messages"]:
                lines.append(
                    f"| {run['users']} | {run['sampled']} | {c['pid']} | {c['train_messages']} | "
                    f"{c.get('first_train_rss_mb', '-')} | {c.get('last_train_rss_mb', '-')} | "
                    f"{c.get('min_train_rss_mb', '-')} / {c.get('max_train_rss_mb', '-')} | {c['peak_rss_mb']} |"
                )
    return "\n".join(lines) + "\n"


def _int(value) -> str:
    return "-" if value is None else f"{int(value):,}"


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = report["summary"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9.5, 3.6))

    def panel(ax, curve: str, x: str, marker: str, label: str, xlabel: str, title: str) -> None:
        """One curve per value of ``curve``: median round time against ``x``."""
        for value in sorted({s[curve] for s in summary}):
            pts = sorted((s[x], s["round_s_median"]) for s in summary if s[curve] == value)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=marker, label=label.format(value))
        ax.set_xlabel(xlabel)
        ax.set_ylabel("round time, s (median)")
        ax.set_title(title, fontsize=10)
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=8)

    panel(a, "users", "sampled", "o", "N = {} users", "clients sampled per round (K)", "against sampled clients")
    panel(b, "sampled", "users", "s", "K = {} sampled", "federation size (N users)", "against federation size")
    kind = "synthetic" if "synthetic" in report["users_source"] else "real"
    load = report["machine"]["load_average_at_start"][0]
    llm = "stub LLM (not a language model)" if not report.get("llm_note", "").startswith("LLM: http") else "real LLM"
    fig.suptitle(
        f"FedHydra round time: {kind} LaMP-7 users, {llm}, "
        f"{report['machine']['cores']} cores (load average {load:.1f} at start), "
        f"{'-'.join(map(str, sorted({s['rounds'] for s in summary})))} round(s)",
        fontsize=9,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, nargs="+", default=[30], help="federation sizes N")
    p.add_argument("--sampled", type=int, nargs="+", default=[10], help="clients sampled per round K")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument(
        "--data",
        default=str(REPO.parent / "shared" / "data" / "lamp" / "lamp7"),
        help="LaMP-7-format folder (read in place)",
    )
    p.add_argument("--synthetic", action="store_true", help="synthetic LaMP-7 users instead of --data")
    p.add_argument("--synthetic-items", type=int, default=24)
    p.add_argument("--warm", action="store_true", help="build every user's episodes first, outside Flower")
    p.add_argument("--margin", action="store_true", help="end each run with the margin query")
    p.add_argument("--stub-delay", type=float, default=0.0, help="seconds the stub holds each request")
    p.add_argument("--llm-url", help="an OpenAI-compatible endpoint to use instead of the stub")
    p.add_argument("--llm-model", default="smollm2-135m-instruct", help="its model name (with --llm-url)")
    p.add_argument("--client-cpus", type=int, default=2, help="client-resources-num-cpus (whole CPUs per ClientApp)")
    p.add_argument("--ray-address", help="run on this Ray cluster (RAY_ADDRESS) instead of a Ray of its own")
    p.add_argument("--run-config", default="", help="more overrides (key=value ...) for every run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/scale")
    p.add_argument(
        "--append",
        action="store_true",
        help="add these runs to OUT/scale.json (same store, so episodes stay cached) instead of a new report",
    )
    p.add_argument("--report", help="only redraw the table (and --plot) of this scale.json")
    p.add_argument("--plot", help="PNG of round time against K and against N")
    args = p.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the SuperLink and everything under it are stopped by pid
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))

    report = json.loads(Path(args.report).read_text()) if args.report else measure(args)
    text = tables(report)
    print(text)
    if not args.report:
        (Path(args.out) / "scale.md").write_text(text)
    if args.plot:
        plot(report, Path(args.plot))
        print(f"plot written to {args.plot}")
    return 0


def measure(args) -> dict:
    from lab.llm_stub import StubEndpoint
    from lab.scale.bench import run_federation, store_disk

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    store = out / "clients"
    grid = [(n, k) for n in args.users for k in args.sampled if k <= n]
    if not grid:
        raise SystemExit("no (N, K) with K <= N")
    if args.synthetic:
        from shared.synthetic import write_synthetic

        data = write_synthetic(
            out / "data", "LaMP-7", n_users=max(args.users), items_per_user=args.synthetic_items, seed=args.seed
        )
        source = f"{max(args.users)} synthetic LaMP-7 users ({args.synthetic_items} history items each)"
    else:
        data = Path(args.data).resolve()
        source = f"the first N real LaMP-7 users of {data.name} (dev split)"
    env = {"FEDHYDRA_LLM_CACHE": str(out / "llm-cache.sqlite"), "FEDHYDRA_HOME": str(out / "home")}
    report = {
        "machine": machine(),
        "stub_delay_s": args.stub_delay,
        "users_source": source,
        "rounds": args.rounds,
        "client_cpus": args.client_cpus,
        "margin": args.margin,
        "ray_address": args.ray_address,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "runs": [],
        "summary": [],
    }
    if args.append and (out / "scale.json").exists():  # more (N, K) points, or more rounds at one, in the same table
        earlier = json.loads((out / "scale.json").read_text())
        report.update(
            runs=earlier["runs"],
            summary=earlier["summary"],
            started=earlier["started"],
            machine=earlier["machine"],
            warm=earlier.get("warm"),
            appended=earlier.get("appended", [])
            + [{"started": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine(), "rounds": args.rounds}],
        )
    with contextlib.nullcontext() if args.llm_url else StubEndpoint(delay_s=args.stub_delay) as stub:
        llm_url = args.llm_url or cast(StubEndpoint, stub).url  # a stub whenever there is no --llm-url
        report["llm_note"] = (
            f"LLM: {args.llm_url} (model {args.llm_model!r})"
            if args.llm_url
            else STUB_NOTE.format(delay=args.stub_delay)
        )
        print(report["llm_note"] + f"; at {llm_url}", file=sys.stderr, flush=True)
        if args.warm:
            report["warm"] = warm(args, max(args.users), data, store, llm_url)
            print(f"warm: {report['warm']}", file=sys.stderr, flush=True)
        for n, k in grid:
            print(f"N = {n} users, K = {k} sampled, {args.rounds} rounds", file=sys.stderr, flush=True)
            run_dir = out / f"n{n}-k{k}-r{args.rounds}"
            mapping = mapping_for(args, n, k, data, store, llm_url)
            run = run_federation(
                mapping,
                run_dir,
                ray_address=args.ray_address,
                client_cpus=args.client_cpus,
                env=env,
                progress=lambda s: print(s, file=sys.stderr, flush=True),
            )
            from shared.config import RunConfig
            from shared.run_data import load_run_data
            from shared.users import split_users

            cfg = RunConfig.from_mapping(mapping)
            train, _ = split_users(load_run_data(cfg)[0], train_users=n, test_users=0)
            from client.store import UserStore

            names = [
                UserStore(store, u.user_id, task="LaMP-7").path.name
                for u in train
                if UserStore.exists(store, u.user_id)
            ]
            run.update({"users": n, "sampled": k, "disk": store_disk(store, names)})
            report["runs"].append(run)
            report["summary"].append(summarize(run))
            (out / "scale.json").write_text(json.dumps(report, indent=1))
        report["stub_served"] = stub.served if stub is not None else None
    (out / "scale.json").write_text(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    raise SystemExit(main())
