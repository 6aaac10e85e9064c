#!/usr/bin/env python
"""A deployment of many SuperNodes as separate processes on this machine, through training rounds (issue 16, part 4).

One SuperLink (deployment mode, its ServerApp in a subprocess) and ``--supernodes`` SuperNodes, each a
``flower-supernode`` process with its own ``FLWR_HOME``, ``FEDHYDRA_HOME``, Runtime API port and node-local store,
one LaMP-7 user each (``partition-id``; synthetic, or the first of ``--data``), as ``docs/deployment.md`` runs them
but without TLS (``--insecure`` everywhere: this measures processes and bytes, not the certificates the deployment
test covers). The app submitted is the production ClientApp plus the probe (:mod:`lab.scale.client_app`);
the LLM is the deterministic stub (:class:`lab.llm_stub.StubEndpoint`, not a language model). Each round samples
``--sampled`` of the nodes (default: all).

Every SuperNode reaches the SuperLink through its own byte-counting TCP relay in this process, so the bytes each
node sent and received on the wire (HTTP payload over TCP, without TLS) are counted exactly, and snapshotted when
the server knows every node's role and when each round ends. Memory: every process of the SuperLink's tree and of
each SuperNode's tree (SuperNode, its SuperExec, the ``flwr-clientapp`` process it starts for each message) is
sampled (:class:`lab.scale.memory.TreeMemory`); the probe adds each ClientApp process's own peak.

Usage (from the repository root)::

    .venv/bin/python scripts/supernodes.py --supernodes 4 --out runs/supernodes-small      # a check, minutes
    .venv/bin/python scripts/supernodes.py --supernodes 20 --out runs/supernodes-20          # heavy: both cores
    .venv/bin/python scripts/supernodes.py --supernodes 4 --data ../shared/data/lamp/lamp7 --full \
        --out runs/supernodes-real                                                           # real users, full clients

The SuperLink keeps Flower's in-memory state unless ``--database FILE`` (its SQLite state, as a deployment that must
survive a restart runs it). Writes ``OUT/supernodes.json`` and prints the tables. Everything it starts is stopped by pid.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from shared.io import read_jsonl  # noqa: E402 - after the repository is on sys.path

BIN = Path(sys.executable).parent
LINK = "fedhydra-scale"
STUB_NOTE = "LLM: lab.llm_stub.StubEndpoint (deterministic stub, not a language model)"
BASE = {
    "data.task": "LaMP-7",
    "pool.margin-folds": 0,
    "eval.every": 0,
    "run.seed": 0,
    "llm.model": "stub",
    "data.test-users": 0,
}
"""The run's settings besides the defaults of ``[tool.flwr.app.config]``: training rounds only."""
SMALL = {
    **BASE,
    "pool.pseudo-questions": 1,
    "pool.free-questions": 2,
    "pool.n-samples": 1,
    "pool.label-records": 2,
    "train.epochs": 1,
    "federation.local-epochs": 1,
    "train.head-epochs": 4,
}
"""... and a small client's work (the default; ``--full`` keeps the defaults' training settings)."""


class Processes:
    """Processes this script started, each in its own session, stopped with their descendants by pid."""

    def __init__(self, logs: Path):
        self.logs = logs
        self.started: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, cmd: list[str], env: dict[str, str]) -> subprocess.Popen:
        with open(self.logs / f"{name}.log", "wb") as log:
            proc = subprocess.Popen(
                cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        self.started.append((name, proc))
        return proc

    def stop_all(self, grace: float = 15.0) -> None:
        from shared.procs import stop_process_tree

        # every SuperNode at once (each stops its SuperExec), then the SuperLink
        nodes = [(n, p) for n, p in self.started if n != "superlink"]
        for _, proc in nodes:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except (ProcessLookupError, PermissionError):
                    pass
        for _, proc in reversed(self.started):
            stop_process_tree(proc, grace)


def free_port() -> int:
    from shared.procs import free_port as free

    return free()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--supernodes", type=int, default=20)
    p.add_argument("--sampled", type=int, help="training clients per round (default: every node)")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--out", default="runs/supernodes")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for the run")
    p.add_argument(
        "--idle-window",
        type=float,
        default=20.0,
        help="seconds of idle traffic measured before the run (polling, heartbeats)",
    )
    p.add_argument("--run-config", default="", help="more overrides (key=value ...)")
    p.add_argument("--database", help="the SuperLink's SQLite state file (default: Flower's in-memory state)")
    p.add_argument(
        "--data",
        help="a LaMP-7-format folder, read in place: its first N users, one per SuperNode "
        "(default: N synthetic LaMP-7 users)",
    )
    p.add_argument(
        "--full",
        action="store_true",
        help="a client trains with the defaults' settings (default: a small client's work)",
    )
    args = p.parse_args(argv)
    if args.data and not list(Path(args.data).glob("*_questions.json")):
        p.error(f"--data {args.data}: no LaMP-format folder there (no <split>_questions.json)")
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))

    import tomli_w

    from lab.llm_stub import StubEndpoint
    from lab.scale.app import scale_app
    from lab.scale.memory import TreeMemory
    from lab.scale.probe import read_probes
    from lab.scale.relay import Relay
    from shared.config import parse_overrides
    from shared.synthetic import write_synthetic

    n = args.supernodes
    k = args.sampled or n
    out = Path(args.out).resolve()
    if out.exists():
        import shutil

        shutil.rmtree(out)
    (out / "logs").mkdir(parents=True)
    data = (
        Path(args.data).resolve()
        if args.data
        else write_synthetic(out / "data", "LaMP-7", n_users=n, items_per_user=12, seed=0)
    )
    users = f"the first {n} real LaMP-7 users of {data.name}" if args.data else f"{n} synthetic LaMP-7 users"
    settings = BASE if args.full else SMALL
    probe_dir = out / "probe"
    app = scale_app(out, probe_dir)
    procs = Processes(out / "logs")
    relays: list[Relay] = []
    marks: dict[str, float] = {}
    snapshots: dict[str, list[tuple[int, int]]] = {}
    report: dict = {
        "llm": STUB_NOTE,
        "supernodes": n,
        "sampled": k,
        "rounds": args.rounds,
        "users": users,
        "client_settings": "defaults" if args.full else "small",
    }
    started = time.time()

    def env_for(name: str) -> dict[str, str]:
        env = {key: v for key, v in os.environ.items() if not key.startswith(("FEDHYDRA_", "FLWR_", "RAY_"))}
        home = out / "homes" / name
        (home / "flwr-home").mkdir(parents=True, exist_ok=True)
        env.update(
            {
                "FLWR_HOME": str(home / "flwr-home"),
                "FEDHYDRA_HOME": str(home / "fedhydra-home"),
                "PATH": str(BIN) + os.pathsep + os.environ.get("PATH", ""),
                "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
                "FLWR_DISABLE_UPDATE_CHECK": "1",
            }
        )
        return env

    def flwr(env, *cli, timeout=180.0):
        return subprocess.run([str(BIN / "flwr"), *cli], env=env, capture_output=True, text=True, timeout=timeout)

    with StubEndpoint(delay_s=0.0) as stub:
        memory = None
        try:
            port = free_port()
            # Flower's default state is in memory; its SQLite state (--database) answered 20 SuperNodes replying at
            # once on 2 cores with "database is locked" and lost a reply (docs/lab-notebook.md)
            database = ["--database", str(Path(args.database).resolve())] if args.database else []
            link = procs.start(
                "superlink",
                [str(BIN / "flower-superlink"), "--insecure", "--host", "127.0.0.1", "--port", str(port), *database],
                env_for("superlink"),
            )
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", port)) == 0:
                        break
                if link.poll() is not None:
                    raise SystemExit(f"the SuperLink exited; see {out / 'logs' / 'superlink.log'}")
                time.sleep(0.5)
            memory = TreeMemory([link.pid], interval_s=2.0)
            memory.__enter__()
            for i in range(n):
                relay = Relay(("127.0.0.1", port))
                relays.append(relay)
                node_config = (
                    f"partition-id={i} data.dir='{data}' device.store-dir='{out / 'homes' / f'n{i}' / 'store'}' "
                    f"llm.url='{stub.url}'"
                )
                proc = procs.start(
                    f"n{i}",
                    [
                        str(BIN / "flower-supernode"),
                        "--insecure",
                        "--superlink",
                        f"127.0.0.1:{relay.port}",
                        "--port",
                        str(free_port()),
                        "--node-config",
                        node_config,
                    ],
                    env_for(f"n{i}"),
                )
                memory.add_root(proc.pid)
            report["start_nodes_s"] = round(time.time() - started, 1)
            # what an idle, connected SuperNode costs on the wire (polling, heartbeats): before the run is submitted
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline and not all(r.connections for r in relays):
                time.sleep(1.0)
            time.sleep(10.0)
            before, t0 = [r.counts() for r in relays], time.monotonic()
            time.sleep(args.idle_window)
            idle_after, elapsed = [r.counts() for r in relays], time.monotonic() - t0
            report["idle_wire_bytes_per_node_per_s"] = {
                "up": round(statistics.mean(a[0] - b[0] for a, b in zip(idle_after, before)) / elapsed, 1),
                "down": round(statistics.mean(a[1] - b[1] for a, b in zip(idle_after, before)) / elapsed, 1),
            }
            cli = env_for("operator")
            (Path(cli["FLWR_HOME"]) / "config.toml").write_text(
                f'[superlink]\ndefault = "{LINK}"\n\n[superlink.{LINK}]\naddress = "127.0.0.1:{port}"\ninsecure = true\n'
            )
            run_config = out / "run_config.toml"
            run_config.write_text(
                tomli_w.dumps(
                    {
                        **settings,
                        **parse_overrides(args.run_config),
                        "data": str(data),
                        "data.train-users": n,
                        "federation.num-rounds": args.rounds,
                        "federation.fraction-train": k / n,
                        "federation.min-train-nodes": k,
                        "run.out-dir": str(out / "server"),
                        "llm.url": stub.url,
                    }
                )
            )
            done = flwr(cli, "run", str(app), LINK, "--run-config", str(run_config), "--format", "json", timeout=600)
            match = re.search(r'"run-id"\s*:\s*"?(\d+)', done.stdout)
            if done.returncode != 0 or not match:
                raise SystemExit(f"flwr run failed ({done.returncode}): {done.stdout[-2000:]} {done.stderr[-2000:]}")
            run_id = match.group(1)
            submitted = time.time()
            follower = subprocess.Popen(
                [str(BIN / "flwr"), "log", run_id, LINK, "--stream"],
                env=cli,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )

            def follow() -> None:
                assert follower.stdout is not None
                with open(out / "run.log", "w", encoding="utf-8") as log:
                    for line in follower.stdout:
                        log.write(f"{time.time() - submitted:9.2f} {line}")
                        log.flush()
                        if "FedHydra:" in line and "roles" not in marks:
                            marks["roles"] = time.time() - submitted
                            snapshots["roles"] = [r.counts() for r in relays]
                        found = re.search(r"\[ROUND (\d+)/\d+\] accepted", line)
                        if found:
                            marks[f"round{found.group(1)}"] = time.time() - submitted
                            snapshots[f"round{found.group(1)}"] = [r.counts() for r in relays]
                        if "[ROUND" in line or "ERROR" in line:
                            print("  " + line.split("INFO :", 1)[-1].strip()[:160], file=sys.stderr, flush=True)

            reader = threading.Thread(target=follow, daemon=True)
            reader.start()
            status = "unknown"
            deadline = time.monotonic() + args.timeout
            while time.monotonic() < deadline:
                time.sleep(5.0)
                if link.poll() is not None:
                    status = "superlink-died"
                    break
                if f"round{args.rounds}" in marks or follower.poll() is not None:
                    ls = flwr(cli, "ls", "--run-id", run_id, LINK, "--format", "json")
                    found = re.search(r'"status"\s*:\s*"([^"]+)"', ls.stdout)
                    status = found.group(1) if found else "unknown"
                    if status.startswith("finished"):
                        break
            follower.terminate()
            report["status"] = status
            report["seconds"] = {
                "until_roles_known": round(marks.get("roles", float("nan")), 1),
                **{key: round(v, 1) for key, v in marks.items() if key.startswith("round")},
            }
        finally:
            if memory is not None:
                memory.__exit__(None, None, None)
            procs.stop_all()
            for relay in relays:
                relay.close()
    alive = [name for name, proc in procs.started if proc.poll() is None]
    report["left_running"] = alive
    report["memory"] = memory.report() if memory is not None else {}
    totals = [r.counts() for r in relays]
    report["wire"] = {
        "total_up": sum(u for u, _ in totals),
        "total_down": sum(d for _, d in totals),
        "connections": sum(r.connections for r in relays),
    }
    rounds = []
    server_rounds = out / "server" / "rounds.jsonl"
    lines = read_jsonl(server_rounds)
    probes = read_probes(probe_dir)
    previous: list[tuple[int, int]] | None = snapshots.get("roles")
    for r in lines:
        rnd = r["server_round"]
        after = snapshots.get(f"round{rnd}")
        trained = [p for p in probes if p["type"].startswith("train") and p.get("round") == rnd]
        row = {
            "round": rnd,
            "accepted": r["accepted"],
            "failed": r["failed"],
            "round_s": round(r["seconds"], 1),
            "timing": r.get("timing"),
            "tensor_bytes_up": max(r["bytes_up_per_client"], default=0),
            "serialized_bytes_up": round(statistics.mean(p["wire_bytes_out"] for p in trained)) if trained else None,
            "serialized_bytes_down": round(statistics.mean(p["wire_bytes_in"] for p in trained)) if trained else None,
            "clientapp_seconds_mean": round(statistics.mean(p["seconds"] for p in trained), 1) if trained else None,
            "clientapp_peak_rss_mb": [p["hwm_mb"] for p in trained],
        }
        if previous and after:
            ups = [a[0] - b[0] for a, b in zip(after, previous)]
            downs = [a[1] - b[1] for a, b in zip(after, previous)]
            busy = [i for i, u in enumerate(ups) if u > 100_000]  # the nodes that sent an update this round
            row.update(
                {
                    "wire_up_per_trained_node": round(statistics.mean(ups[i] for i in busy)) if busy else None,
                    "wire_down_per_trained_node": round(statistics.mean(downs[i] for i in busy)) if busy else None,
                    "wire_up_per_idle_node": round(statistics.mean(u for i, u in enumerate(ups) if i not in busy))
                    if len(busy) < len(ups)
                    else None,
                }
            )
        previous = after
        rounds.append(row)
    report["rounds"] = rounds
    queries = [p for p in probes if p["type"] == "query"]
    report["role_query"] = {
        "messages": len(queries),
        "clientapp_seconds_mean": round(statistics.mean(p["seconds"] for p in queries), 2) if queries else None,
        "clientapp_peak_rss_mb_max": max((p["hwm_mb"] for p in queries), default=None),
    }
    report["wall_s"] = round(time.time() - started, 1)
    (out / "supernodes.json").write_text(json.dumps(report, indent=1, default=str))
    print(tables(report))
    ok = report.get("status") == "finished:completed" and not alive and all(r["accepted"] == k for r in rounds)
    return 0 if ok else 1


def _cpu() -> str:
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown CPU"


def tables(report: dict) -> str:
    mem = report.get("memory") or {}
    users = report.get("users", f"{report['supernodes']} synthetic LaMP-7 users")
    lines = [
        f"{report['supernodes']} SuperNodes (separate processes, insecure, one user each: {users}; "
        f"{report.get('client_settings', 'small')} client settings), "
        f"{report['sampled']} trained per round; {STUB_NOTE}. {_cpu()}, {os.cpu_count()} cores. "
        f"Status {report.get('status')}; {report['wall_s']} s in all; processes left: "
        f"{report['left_running'] or 'none'}.",
        "",
        "| round | accepted | round s | tensor B up/client | serialized B up / down per client | "
        "on the wire B up / down per trained node | wire B up per idle node | ClientApp s (mean) | "
        "ClientApp peak RSS MB (max) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report.get("rounds", []):
        lines.append(
            f"| {r['round']} | {r['accepted']} | {r['round_s']} | {r['tensor_bytes_up']:,} | "
            f"{_n(r['serialized_bytes_up'])} / {_n(r['serialized_bytes_down'])} | "
            f"{_n(r.get('wire_up_per_trained_node'))} / {_n(r.get('wire_down_per_trained_node'))} | "
            f"{_n(r.get('wire_up_per_idle_node'))} | {r['clientapp_seconds_mean']} | "
            f"{max(r['clientapp_peak_rss_mb'], default=0):,.0f} |"
        )
    idle = report.get("idle_wire_bytes_per_node_per_s")
    if idle:
        lines += [
            "",
            f"An idle connected SuperNode (before the run): {idle['up']} B/s up, {idle['down']} B/s down on the "
            f"wire (polling and heartbeats).",
        ]
    q = report.get("role_query", {})
    lines += [
        "",
        f"Role discovery: {q.get('messages')} ClientApp processes (one per node), "
        f"{q.get('clientapp_seconds_mean')} s each on average, peak RSS up to {q.get('clientapp_peak_rss_mb_max')} MB; "
        f"roles known {report.get('seconds', {}).get('until_roles_known')} s after submission.",
        "",
        "| process | count | peak RSS MB (largest) | peak PSS MB (largest) |",
        "|---|---|---|---|",
    ]
    for entry in mem.get("by_name", []):
        lines.append(
            f"| {entry['name']} | {entry['count']} | {entry['peak_rss_mb']:,.0f} | {entry['peak_pss_mb']:,.0f} |"
        )
    if mem:
        lines.append(
            f"\nWhole deployment: peak {mem['peak_total_rss_mb']:,.0f} MB RSS summed over processes, "
            f"{mem['peak_total_pss_mb']:,.0f} MB PSS (SuperLink tree and every SuperNode tree)."
        )
    return "\n".join(lines) + "\n"


def _n(value) -> str:
    return "-" if value is None else f"{int(value):,}"


if __name__ == "__main__":
    raise SystemExit(main())
