#!/usr/bin/env python
"""Inject faults into small FedHydra runs and report what each one cost: the figures of docs/reliability.md.

Every federated scenario is a real Flower simulation (``simulations.federated.simulate``) of synthetic LaMP-3
users (3 training clients and 1 new user by default) that train the real models, with the LLM replaced by a
local stub that misbehaves on purpose (``lab/faulty_llm_stub.py``) or by a port nobody listens on. Client
faults are given to the run explicitly (``simulate(..., app=fault_app(faults))``: ``lab/faults/app.py`` submits the
ClientApp that adds the mod of ``lab/faults/mod.py``). The other scenarios are direct: a store writer SIGKILLed at random
(``lab/faults/store.py``), the command line fed bad input, and (without ``--quick``) one poisoned client in
ten (``lab/faults/poison.py``). Nothing here comes from ``tests/``.

Usage::

    .venv/bin/python scripts/fault_injection.py --quick            # one run per scenario (about 25 minutes)
    .venv/bin/python scripts/fault_injection.py --runs 3           # three runs per federated scenario
    .venv/bin/python scripts/fault_injection.py --only llm-down --only dropout --keep runs/faults

It prints two markdown tables (federated and store scenarios; bad input) and, with ``--json FILE``, writes
every run's figures. Everything goes to a temporary folder unless ``--keep DIR`` is given.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from lab.small_runs import SMALL_FEDERATION, simulate_process  # noqa: E402 - after the repository is on sys.path
from shared.io import read_jsonl  # noqa: E402

SMALL = SMALL_FEDERATION


@dataclass
class Scenario:
    name: str
    fault: str
    kind: str = "federated"  # federated | resume | store | poison
    mix: dict[str, float] | None = None  # the stub's fault mix; None with llm_down False: a well-behaved stub
    llm_down: bool = False
    faults: dict[str, Any] | None = None  # the client faults (lab/faults/mod.py); None: the production app
    overrides: dict[str, Any] = field(default_factory=dict)
    note: str = ""


SCENARIOS = [
    Scenario("control", "none (control)"),
    Scenario("llm-bursts", "LLM: bursts of 429 and 5xx (30% of requests)", mix={"429": 0.12, "500": 0.12, "503": 0.06}),
    Scenario(
        "llm-slow",
        "LLM: slower than the timeout (25% of requests take 1.5 s, timeout 0.5 s)",
        mix={"slow": 0.25},
        overrides={"llm.timeout": 0.5},
    ),
    Scenario(
        "llm-malformed",
        "LLM: malformed or empty answers (bad JSON 10%, no choices 10%, empty 10%)",
        mix={"badjson": 0.1, "nochoices": 0.1, "empty": 0.1},
    ),
    Scenario("llm-offlabel", "LLM: answers outside the label set (50%)", mix={"offlabel": 0.5}),
    Scenario("llm-down", "LLM: endpoint down (connection refused)", llm_down=True),
    Scenario(
        "crash",
        "client raises before training (1 of 3) and crashes after training (1 of 3)",
        faults={"0": "raise", "1": "crash-after-train"},
    ),
    Scenario(
        "dropout",
        "a third of the clients drop out every round (2 rounds)",
        faults={"dropout": 1 / 3},
        overrides={"federation.num-rounds": 2},
    ),
    Scenario(
        "bad-updates",
        "bad updates: NaN, x1e3 scaled, wrong shape, extra metric (4 of 6 clients)",
        faults={"0": "nan", "1": "scale", "2": "wrong-shape", "3": "extra-metric"},
        overrides={"data.synthetic-users": 7, "data.train-users": 6},
    ),
    Scenario(
        "kill",
        "ClientApp process SIGKILLed mid-round (1 of 3, round 1 of 2)",
        faults={"0": "kill"},
        overrides={"federation.num-rounds": 2},
    ),
    Scenario(
        "server-kill",
        "server killed mid-run (whole process tree SIGKILLed as round 2 of 2 starts), then run.resume=true",
        kind="resume",
    ),
    Scenario("store-kill", "client store writer SIGKILLed at random / just before a rename", kind="store"),
    Scenario("poison", "1 client in 10 poisoned (sign flipped, x10), 3 rounds (direct, no simulation)", kind="poison"),
]


# -- helpers ---------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def environment(**values: str | None):
    saved = {k: os.environ.get(k) for k in values}
    for k, v in values.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_stores(out: Path, task: str) -> tuple[int, list[str]]:
    """(stores found, problems): every client store must load completely."""
    from client.store import UserStore
    from shared.hydra.spec import ModelConfig

    root = out / "clients"
    users = [p.name for p in root.iterdir() if (p / "meta.json").exists()] if root.is_dir() else []
    problems = []
    for user in users:
        try:
            store = UserStore(root, user, task=task)
            episodes = store.read_episodes()
            if episodes is not None and not store.read_history():  # episodes are written after the history
                problems.append(f"{user}: episodes without a history")
            store.read_heads(ModelConfig())
            store.read_predictions()
        except Exception as exc:  # noqa: BLE001 - any failure to load is what we count
            problems.append(f"{user}: {exc}")
    return len(users), problems


def checkpoint_round(out: Path) -> int | None:
    from server.checkpoint import latest_checkpoint
    from shared.hydra.spec import ModelConfig

    found = latest_checkpoint(out / "server" / "checkpoints", model=ModelConfig())
    return None if found is None else found[0]


def run_figures(out: Path, summary: dict | None, mapping: dict, error: str | None) -> dict:
    """One federated run's figures, read from what the run wrote (not from what it says about itself)."""
    rounds_file = out / "server" / "rounds.jsonl"
    rounds = read_jsonl(rounds_file)
    faults: dict[str, float] = {}
    for r in rounds:
        for k, v in (r.get("faults") or {}).items():
            faults[k] = faults.get(k, 0) + v
    n_stores, problems = check_stores(out, mapping["data.task"])
    server = out / "server" / "server_summary.json"
    return {
        "completed": bool(summary and summary.get("status") == "finished:completed"),
        "error": error,
        "rounds_total": int(mapping["federation.num-rounds"]),
        "rounds_done": len({r["server_round"] for r in rounds}),
        "failed": sum(r["failed"] for r in rounds),
        "rejected": sum(len(r["rejected"]) for r in rounds),
        "accepted": sum(r["accepted"] for r in rounds),
        "eval_failed": sum(r.get("eval_failed", 0) for r in rounds),
        "faults": faults,
        "failures": sorted({f.split(": ", 1)[-1][:120] for r in rounds for f in r.get("failures", [])}),
        "rejections": sorted({f.split(": ", 1)[-1][:120] for r in rounds for f in r.get("rejected", [])}),
        "stores": n_stores,
        "store_problems": problems,
        "checkpoint_round": checkpoint_round(out),
        "test_users_without_predictions": (summary or {}).get("test_users_without_predictions"),
        "resumed_after": json.loads(server.read_text()).get("resumed_after") if server.exists() else None,
    }


# -- federated scenarios ----------------------------------------------------------------------------------------
def federated_run(sc: Scenario, work: Path, seed: int, say: Callable[[str], None]) -> dict:
    from lab.faults.app import fault_app
    from lab.faulty_llm_stub import StubLLM
    from shared.config import RunConfig, default_mapping
    from shared.llm.client import LLMConfig
    from simulations.federated import production_app, simulate

    mapping = {**default_mapping(), **SMALL, **sc.overrides, "run.seed": seed}
    out = work / "out"
    summary, error, served = None, None, {}
    stub = None if sc.llm_down else StubLLM(mix=sc.mix, slow_s=1.5, seed=seed)
    url = f"http://127.0.0.1:{dead_port()}/v1" if stub is None else stub.url
    app = fault_app(sc.faults) if sc.faults else production_app
    with environment(FEDHYDRA_HOME=str(work / "home")), stub if stub is not None else contextlib.nullcontext():
        try:
            summary = simulate(
                RunConfig.from_mapping(mapping),
                out,
                llm_config=LLMConfig(base_url=url, model="stub"),
                progress=say,
                app=app,
            )
        except Exception as exc:  # noqa: BLE001 - a run that fails is a figure, not a crash of this script
            error = f"{type(exc).__name__}: {exc}"[:300]
        if stub is not None:
            served = dict(stub.counts)
    figures = run_figures(out, summary, mapping, error)
    figures["llm_requests"] = served
    return figures


def resume_run(sc: Scenario, work: Path, seed: int, say: Callable[[str], None]) -> dict:
    """Kill the whole simulation (driver, SuperLink, ServerApp, clients) in round 2, then run it again with resume."""
    from lab.faulty_llm_stub import StubLLM
    from shared.procs import pid_alive
    from simulations.superlink import kill_tree

    out, home = work / "out", work / "home"
    log = out / "server" / "rounds.jsonl"
    mapping = {**SMALL, "federation.num-rounds": 2}
    with StubLLM(seed=seed) as stub:
        first = simulate_process(out, stub.url, {**mapping, "run.resume": False}, home=home)
        deadline = time.monotonic() + 900
        while not (log.exists() and log.read_text().strip()) and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.2)
        killed_in = checkpoint_round(out)  # round 1 is checkpointed and logged: round 2 is starting
        killed = kill_tree(first.pid)
        first.wait(30)
        survivors = [p for p in killed if pid_alive(p)]
        say(f"killed {len(killed)} processes after the checkpoint of round {killed_in}; {len(survivors)} survived")
        again = simulate_process(out, stub.url, {**mapping, "run.resume": True}, home=home)
        _, err = again.communicate(timeout=1800)
    error = None if again.returncode == 0 else err.decode(errors="replace")[-300:]
    summary_file = out / "summary.json"
    summary = json.loads(summary_file.read_text()) if summary_file.exists() else None
    figures = run_figures(out, summary, mapping, error)
    figures.update({"killed_processes": len(killed), "survivors": len(survivors), "killed_after_round": killed_in})
    return figures


# -- direct scenarios ---------------------------------------------------------------------------------------------
def store_run(sc: Scenario, work: Path, seed: int, say: Callable[[str], None], kills: int) -> dict:
    from client.store import UserStore
    from lab.faults.store import kill_writer, temporaries, versions

    rng = random.Random(seed)
    before = {"history": 0, "episodes": 0, "heads": 0, "meta": 0}
    damaged, went_back, torn, leftover = [], 0, 0, 0
    seen: set[str] = set()
    for trial in range(kills):
        mode = "atomic" if trial % 2 == 0 else f"before-rename:{trial % 8}"
        kill_writer(work, max(before.values()), rng, mode)
        folder = work / "alice"  # temporaries the kill left, counted before the open that sweeps them
        new = (
            {p.name for p in folder.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp")} - seen
            if folder.exists()
            else set()
        )
        torn += len(new)
        seen |= new
        try:
            store = UserStore(work, "alice", task="LaMP-7")
            now = versions(store)
        except Exception as exc:  # noqa: BLE001 - a damaged store is the figure
            damaged.append(f"kill {trial}: {exc}")
            continue
        went_back += any(now[k] < before[k] for k in now)
        before = now
        leftover += len(temporaries(store))  # none: opening with no writer alive sweeps them all
    return {
        "kills": kills,
        "damaged": damaged,
        "went_back": went_back,
        "writes_cut": torn,
        "left_after_open": leftover,
        "versions": before,
        "completed": not damaged and not went_back and not leftover,
    }


def poison_run(sc: Scenario, work: Path, seed: int, say: Callable[[str], None]) -> dict:
    """The quality of the global model with 1 poisoned client in 10 (:mod:`lab.faults.poison`, as
    tests/server/test_robust_aggregation.py)."""
    import torch
    from flwr.serverapp.strategy import FedAvg, FedMedian, FedTrimmedAvg
    from flwr.supercore.task_identity import TaskIdentity

    from lab.faults.poison import federate
    from shared.hydra.settings import TrainConfig
    from shared.training.model import HydraBase, ModelConfig
    from shared.training.train import Trainer

    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 1, 1
    torch.manual_seed(seed)
    trainer = Trainer(HydraBase(ModelConfig()), TrainConfig(epochs=1, batch_size=8, lr=1e-2, train_lora=False))
    results = {"clean FedAvg + outlier filter": federate(trainer, FedAvg(), poisoned=False)}
    results["poisoned, FedAvg + outlier filter"] = federate(trainer, FedAvg(), poisoned=True)
    results["poisoned, FedTrimmedAvg(0.2), no filter"] = federate(
        trainer, FedTrimmedAvg(beta=0.2), poisoned=True, norm_factor=0
    )
    results["poisoned, FedMedian, no filter"] = federate(trainer, FedMedian(), poisoned=True, norm_factor=0)
    results["poisoned, FedAvg, no filter"] = federate(trainer, FedAvg(), poisoned=True, norm_factor=0)
    clean = results["clean FedAvg + outlier filter"]
    defended = [v for k, v in results.items() if k.startswith("poisoned") and k != "poisoned, FedAvg, no filter"]
    return {"accuracy": results, "completed": all(v >= clean - 0.05 for v in defended)}


# -- bad input ------------------------------------------------------------------------------------------------------
def bad_input_rows(work: Path) -> list[dict]:
    """Each bad input through ``fedhydra baseline`` (and ``eval``): exit status, the error line, what is left."""
    from shared.tasks import get_task
    from simulations.cli import main

    instruction = get_task("LaMP-3").instruction

    def split(folder: Path, items: list | bytes) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        raw = items if isinstance(items, bytes) else json.dumps(items).encode()
        (folder / "dev_questions.json").write_bytes(raw)
        ids = [str(i["id"]) for i in items] if isinstance(items, list) else ["0", "1"]
        golds = [{"id": i, "output": "4"} for i in dict.fromkeys(ids)]
        (folder / "dev_outputs.json").write_text(json.dumps({"task": "LaMP_3", "golds": golds}))
        return folder

    def good(i: int, **over) -> dict:
        return {
            "id": str(i),
            "input": instruction + f"review {i}",
            "profile": [{"id": f"p{i}", "text": "fine", "score": "4"}, {"id": f"q{i}", "text": "meh", "score": "3"}],
            **over,
        }

    cases = [
        ("malformed JSON", lambda d: split(d, b'[{"id": "0", "input": "x", "prof'), "LaMP-3"),
        ("missing field (no 'input' in item 1)", lambda d: split(d, [good(0), {"id": "1", "profile": []}]), "LaMP-3"),
        (
            "wrong type ('input' is a list in item 1)",
            lambda d: split(d, [good(0), good(1, input=["a", "b"])]),
            "LaMP-3",
        ),
        ("bytes that are not UTF-8", lambda d: split(d, b'[{"id": "0", "input": "caf\xe9", "profile": []}]'), "LaMP-3"),
        ("unknown task name", lambda d: split(d, [good(0), good(1)]), "LaMP-42"),
        ("duplicate ids", lambda d: split(d, [good(0), good(0)]), "LaMP-3"),
        ("empty profile (not an error: answered)", lambda d: split(d, [good(0, profile=[]), good(1)]), "LaMP-3"),
        (
            "huge input (100,000 characters: truncated to 20,000)",
            lambda d: split(d, [good(0, input=instruction + "word " * 20_000), good(1)]),
            "LaMP-3",
        ),
    ]
    rows = []
    for i, (name, make, task) in enumerate(cases):
        data = make(work / f"data{i}")
        out = work / f"out{i}"
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            status = main(
                [
                    "baseline",
                    "--data",
                    str(data),
                    "--task",
                    task,
                    "--method",
                    "majority",
                    "--method",
                    "user-mean",
                    "--out",
                    str(out),
                ]
            )
        lines = [ln for ln in err.getvalue().splitlines() if ln.strip() and "it/s]" not in ln and "%|" not in ln]
        left = sorted(p.name for p in out.iterdir()) if out.exists() else []
        truncated = None
        if "huge" in name and status == 0:
            from shared.data import load_questions

            truncated = len(load_questions(data / "dev_questions.json", "LaMP-3")[0].input)
        rows.append(
            {
                "input": name,
                "status": status,
                "error": lines[-1] if status else "",
                "names_the_place": status == 0 or any(w in (lines[-1] if lines else "") for w in (str(data), task)),
                "left": left,
                "looks_complete": "metrics.json" in left,
                "truncated_to": truncated,
            }
        )

    # a failed rerun in the folder of a finished run: does the old result stay behind, looking complete?
    bad = work / "data0"
    for command in ("baseline", "simulate"):
        out = work / f"rerun-{command}"
        good_data = split(work / f"good-{command}", [good(0), good(1)])
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            main(["baseline", "--data", str(good_data), "--task", "LaMP-3", "--method", "majority", "--out", str(out)])
        if command == "simulate":  # what a finished simulate leaves besides metrics.* and predictions
            (out / "summary.json").write_text("{}")
        err = io.StringIO()
        extra = ["--method", "majority"] if command == "baseline" else ["--llm-url", "http://127.0.0.1:9/v1"]
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            status = main([command, "--data", str(bad), "--task", "LaMP-3", *extra, "--out", str(out)])
        left = sorted(p.name for p in out.iterdir())
        lines = [ln for ln in err.getvalue().splitlines() if ln.strip()]
        rows.append(
            {
                "input": f"malformed JSON, `{command}` rerun into the folder of a finished run",
                "status": status,
                "error": lines[-1] if lines else "",
                "left": [f"{p} (stale)" for p in left],
                "looks_complete": "metrics.json" in left,
                "truncated_to": None,
                "names_the_place": True,
            }
        )
    return rows


# -- tables ----------------------------------------------------------------------------------------------------------
def fmt_counts(d: dict[str, float], keys: list[str]) -> str:
    return ", ".join(f"{int(d.get(k, 0))} {k}" for k in keys if d.get(k))


def federated_row(sc: Scenario, runs: list[dict]) -> list[str]:
    n = len(runs)
    completed = sum(r["completed"] for r in runs)
    rounds = f"{sum(r['rounds_done'] for r in runs)}/{sum(r['rounds_total'] for r in runs)}"
    lost = f"{sum(r['failed'] for r in runs)} failed, {sum(r['rejected'] for r in runs)} rejected"
    if any(r["eval_failed"] for r in runs):
        lost += f", {sum(r['eval_failed'] for r in runs)} evaluations failed"
    faults: dict[str, float] = {}
    for r in runs:
        for k, v in r["faults"].items():
            faults[k] = faults.get(k, 0) + v
    f = {k: int(v) for k, v in faults.items()}
    cost = f"{f.get('skipped-examples', 0)} skipped / {f.get('degraded-answers', 0)} degraded"
    if f.get("failed-answers"):
        cost += f" (+{f['failed-answers']} LLM-baseline answers empty)"
    if f.get("offlabel-answers"):
        cost += f"; {f['offlabel-answers']} off-label answers kept as such"
    llm = fmt_counts(
        {"retries": f.get("llm-retries", 0), "failed": f.get("llm-failures", 0), "refused": f.get("llm-refused", 0)},
        ["retries", "failed", "refused"],
    )
    cost += f"; LLM calls: {llm}" if llm else ""
    problems = [p for r in runs for p in r["store_problems"]]
    unanswered = sum(len(r["test_users_without_predictions"] or []) for r in runs)
    data = "none: " if not problems else f"{len(problems)} damaged stores: "
    data += f"{sum(r['stores'] for r in runs)} stores load"
    if unanswered:
        data += f"; {unanswered} test users without predictions"
    ckpt = ", ".join(str(r["checkpoint_round"]) for r in runs)
    if sc.kind == "resume":
        resumed = "; ".join(
            f"killed after round {r['killed_after_round']} ({r['killed_processes']} processes, "
            f"{r['survivors']} survived), resumed after round {r['resumed_after']}"
            for r in runs
        )
    else:
        resumed = f"n/a (last checkpoint: round {ckpt})"
    served: dict[str, int] = {}
    for r in runs:
        for k, v in (r.get("llm_requests") or {}).items():
            served[k] = served.get(k, 0) + v
    fault = sc.fault
    if served and set(served) != {"ok"}:
        fault += " (stub served " + ", ".join(f"{v} {k}" for k, v in sorted(served.items(), key=lambda x: -x[1])) + ")"
    return [fault, str(n), f"{completed}/{n}", rounds, lost, cost, data, resumed]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="one run per scenario, 20 store kills, no poison scenario")
    parser.add_argument(
        "--runs", type=int, default=None, help="runs per federated scenario (default 3; 1 with --quick)"
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=[s.name for s in SCENARIOS] + ["bad-input"],
        help="run only these scenarios (repeatable)",
    )
    parser.add_argument("--keep", help="keep every run's files in this folder (default: a temporary folder)")
    parser.add_argument("--json", help="write every run's figures to this file")
    parser.add_argument("--verbose", action="store_true", help="show the runs' progress")
    args = parser.parse_args(argv)
    runs = args.runs or (1 if args.quick else 3)
    wanted = set(args.only or [s.name for s in SCENARIOS if not (args.quick and s.kind == "poison")] + ["bad-input"])
    say = (lambda s: print("    " + s, file=sys.stderr, flush=True)) if args.verbose else (lambda s: None)

    with contextlib.ExitStack() as stack:
        root = (
            Path(args.keep) if args.keep else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="faults-")))
        )
        root.mkdir(parents=True, exist_ok=True)
        results: dict[str, Any] = {}
        rows, store_rows, poison_rows = [], [], []
        started = time.time()
        for sc in SCENARIOS:
            if sc.name not in wanted:
                continue
            print(f"[{time.time() - started:6.0f} s] {sc.name}: {sc.fault}", file=sys.stderr, flush=True)
            reps = runs if sc.kind in ("federated", "resume") else 1
            out = []
            for i in range(reps):
                work = root / sc.name / f"run{i}"
                work.mkdir(parents=True, exist_ok=True)
                t = time.time()
                if sc.kind == "federated":
                    fig = federated_run(sc, work, seed=i, say=say)
                elif sc.kind == "resume":
                    fig = resume_run(sc, work, seed=i, say=say)
                elif sc.kind == "store":
                    fig = store_run(sc, work, seed=i, say=say, kills=20 if args.quick else 60)
                else:
                    fig = poison_run(sc, work, seed=i, say=say)
                fig["seconds"] = round(time.time() - t, 1)
                out.append(fig)
                print(
                    f"           run {i + 1}/{reps}: completed={fig['completed']} ({fig['seconds']} s)",
                    file=sys.stderr,
                    flush=True,
                )
            results[sc.name] = out
            if sc.kind in ("federated", "resume"):
                rows.append(federated_row(sc, out))
            elif sc.kind == "store":
                f = out[0]
                reopened = f"{f['kills'] - len(f['damaged'])}/{f['kills']} reopened"
                lost = (
                    f"{'none' if f['completed'] else 'DAMAGED'}: {len(f['damaged'])} damaged, "
                    f"{f['went_back']} went back a version; {f['left_after_open']} temporaries left after an open"
                )
                store_rows.append(
                    [
                        sc.fault,
                        f"{f['kills']} kills",
                        reopened,
                        "n/a",
                        "n/a",
                        f"{f['writes_cut']} writes cut before their rename",
                        lost,
                        "n/a",
                    ]
                )
            else:
                acc = out[0]["accuracy"]
                poison_rows = [[k, f"{v:.2f}"] for k, v in acc.items()]
        if "bad-input" in wanted:
            print(f"[{time.time() - started:6.0f} s] bad-input", file=sys.stderr, flush=True)
            bad = bad_input_rows(root / "bad-input")
            results["bad-input"] = bad

        header = [
            "fault",
            "runs",
            "completed runs",
            "rounds completed",
            "clients lost (replies)",
            "examples skipped / answers degraded (and LLM calls)",
            "data lost (stores intact?)",
            "checkpoint resumed",
        ]
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for row in rows + store_rows:
            print("| " + " | ".join(row) + " |")
        if poison_rows:
            print("\n| 1 poisoned client in 10 | accuracy of the global model |\n|---|---|")
            for row in poison_rows:
                print("| " + " | ".join(row) + " |")
        if "bad-input" in wanted:
            print(
                "\n| bad input (fedhydra baseline) | exit status | error (one line) | output left |\n|---|---|---|---|"
            )
            for b in bad:
                err = b["error"].replace(str(root), "…").replace("|", "\\|")
                if b["truncated_to"]:
                    err = f"(ran; the input was truncated to {b['truncated_to']:,} characters)"
                elif not err:
                    err = "(ran)"
                left = ", ".join(b["left"]) or "nothing"
                print(f"| {b['input']} | {b['status']} | {err} | {left} |")
        print(
            f"\n{sum(len(v) for v in results.values() if isinstance(v, list))} runs in "
            f"{time.time() - started:.0f} s (`{' '.join(['scripts/fault_injection.py', *(argv or sys.argv[1:])])}`)"
        )
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
