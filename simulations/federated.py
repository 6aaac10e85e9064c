"""The main job: ``fedhydra simulate``, a Flower simulation of federated HYDRA over LaMP-format users.

One SuperNode per user (training users first, then new users), the embedded LLM (or any endpoint) called
from each client, a local SuperLink owned by this process. Afterwards the test clients' predictions, kept in
their node-local stores, are gathered here (the server never sees them) into the same files as the
centralized run (``<method>_outputs.json``, ``metrics.{md,json,png}``), plus the per-round figures
(``rounds.md``, ``rounds.png``: quality on test users, bytes up and down per client, time).
"""

from __future__ import annotations

import shutil
import sqlite3
import time
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from shared.config import RunConfig
from shared.data import Dataset
from shared.errors import FedHydraError
from shared.evaluation import Predictions
from shared.hydra.variants import FEDERATED_PREFIX, is_hydra_method
from shared.io import atomic_write_text, read_jsonl
from shared.ledger import Cost, Ledger
from shared.llm.client import LLMConfig
from shared.metrics import primary_metric
from shared.paths import llm_cache_path
from shared.users import node_count, node_users, split_users
from simulations.failures import UserFailures
from simulations.hydra_run import finish_run
from simulations.report import plain
from simulations.run_inputs import checked_inputs
from simulations.superlink import LocalSuperLink, SimulationError

__all__ = [
    "simulate",
    "collect",
    "round_table",
    "cache_rows_since",
    "clear_results",
    "production_app",
    "app_copy",
    "FULL_MODEL_BYTES",
]

FULL_MODEL_BYTES = 22_713_216 * 4
"""all-MiniLM-L6-v2 in float32: what sending the whole encoder each round would cost."""

REPO = Path(__file__).resolve().parents[1]


class NoPredictions(FedHydraError):
    """A test client of a simulation left no predictions in its store."""


def cache_rows_since(path: Path, since: float) -> int:
    """LLM responses added to the cache since ``since`` (each one a network call made by some process)."""
    if not path.exists():
        return 0
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM responses WHERE created >= ?", (since,)).fetchone()[0])


def round_table(rounds: list[dict], task, out: Path) -> str:
    """``rounds.md`` and ``rounds.png`` from the server's ``rounds.jsonl``."""
    metric, _ = primary_metric(task)
    lines = [
        "| round | hydra " + metric + " | clients ok | rejected | failed | up B/client | down B/client | seconds "
        "| examples skipped | answers degraded | LLM calls failed |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rounds:
        up = max(r["bytes_up_per_client"], default=0)
        quality = r["eval_metrics"].get(f"hydra/{metric}")
        faults = r.get("faults") or {}
        lines.append(
            f"| {r['server_round']} | {'not evaluated' if quality is None else round(quality, 4)} | {r['accepted']} | "
            f"{len(r['rejected'])} | {r['failed']} | {up:,} | {r['bytes_down_per_client']:,} | {r['seconds']:.1f} | "
            f"{int(faults.get('skipped-examples', 0))} | {int(faults.get('degraded-answers', 0))} | "
            f"{int(faults.get('llm-failures', 0))} |"
        )
    table = "\n".join(lines) + "\n"
    atomic_write_text(out / "rounds.md", table)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
    xs = [r["server_round"] for r in rounds]
    a.plot(xs, [r["eval_metrics"].get(f"hydra/{metric}", float("nan")) for r in rounds], marker="o")
    a.set_xlabel("round")
    a.set_ylabel(f"{metric} on test users")
    a.set_title("quality per round", fontsize=10)
    b.bar(xs, [max(r["bytes_up_per_client"], default=0) / 1e3 for r in rounds], label="up")
    b.plot(xs, [r["bytes_down_per_client"] / 1e3 for r in rounds], color="#d62728", marker="x", label="down")
    b.set_xlabel("round")
    b.set_ylabel("kB per client")
    b.set_title(f"traffic (full encoder: {FULL_MODEL_BYTES / 1e6:.0f} MB)", fontsize=10)
    b.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "rounds.png", dpi=120)
    plt.close(fig)
    return table


def collect(cfg: RunConfig, dataset: Dataset, out: Path, store_dir: Path, *, summary: dict) -> dict:
    """Gather the test clients' predictions and the server's figures into the run's result files."""
    from client.store import UserStore

    train, test = split_users(
        dataset,
        train_users=cfg.train_users,
        test_users=cfg.test_users,
        protocol=cfg.protocol,
        offset=cfg.user_offset,
        free_train_users=cfg.free_train_users,
    )
    paid, free = train[: len(train) - cfg.free_train_users], train[len(train) - cfg.free_train_users :]
    preds = Predictions()
    missing = []
    ledger = Ledger()
    failures = UserFailures()  # a client whose store cannot be read costs that client, not the run

    def first_contact(user) -> dict:
        if not UserStore.exists(store_dir, user.user_id):  # never reached (dropped out every round)
            return {}
        return UserStore(store_dir, user.user_id, task=dataset.task.name).read_meta() or {}

    def predictions(user) -> dict:
        saved = UserStore(store_dir, user.user_id, task=dataset.task.name).read_predictions()
        if not saved:
            missing.append(user.user_id)
            raise NoPredictions(
                "the test client stored no predictions (its evaluation failed or never ran; see flwr.log)"
            )
        return saved

    onboarding = node_users(train, test, cfg.protocol)[len(train) :]  # test users who are nodes of their own
    with ledger.stage("episodes (first contact)", timed=False):  # what each client's store says its first contact cost
        for users, unit in ((paid, "training user"), (free, "free training user"), (onboarding, "new user onboarding")):
            for user in users:
                meta = failures.guard(first_contact, "store")(user) or {}
                if "episode_llm_asked" in meta:
                    ledger.record(
                        unit,
                        Cost(
                            asked=meta["episode_llm_asked"],
                            sent=meta["episode_llm_calls"],
                            llm_seconds=meta["episode_llm_seconds"],
                        ),
                    )
    for user in test:
        saved = failures.guard(predictions, "answer")(user)
        if saved is None:
            continue
        for method, answers in saved["by_method"].items():
            preds.by_method.setdefault(method, {}).update(answers)
            for key in ("seconds", "calls", "failures", "asked", "llm_seconds"):
                totals = getattr(preds, key)
                totals[method] = totals.get(method, 0) + saved.get(key, {}).get(method, 0)
            preds.baselines.setdefault(method, {}).update(saved.get("baselines", {}).get(method, {}))
        preds.oracle.update(saved.get("oracle", {}))
    with ledger.stage("answer (last evaluation)", timed=False):
        for method, answers in preds.by_method.items():
            ledger.record(
                f"answer ({method})",
                Cost(asked=preds.asked[method], sent=preds.calls[method], llm_seconds=preds.llm_seconds[method]),
                n=len(answers),
            )
    rounds_file = out / "server" / "rounds.jsonl"
    rounds = read_jsonl(rounds_file)
    failures.check_some_left([u.user_id for u in test], "test users")
    scored = [u for u in test if not failures.failed(u.user_id)]
    summary = {
        **summary,
        "test_users_without_predictions": missing,
        "scored_test_users": len(scored),
        "failed_users": failures.as_dict(),
        "ledger": ledger.as_dict(),
        "margin": None,
    }
    if rounds:
        summary["round_table"] = round_table(rounds, dataset.task, out)
        ups = [b for r in rounds for b in r["bytes_up_per_client"]]
        summary["bytes_up_per_client_round"] = max(ups, default=0)
        summary["bytes_down_per_client_round"] = max(r["bytes_down_per_client"] for r in rounds)
        summary["full_model_bytes"] = FULL_MODEL_BYTES
        summary["rejected_replies"] = sum(len(r["rejected"]) for r in rounds)
        summary["failed_clients"] = sum(r["failed"] for r in rounds)
        summary["failed_evaluations"] = sum(r.get("eval_failed", 0) for r in rounds)
        summary["rounds_logged"] = [r["server_round"] for r in rounds]
        faults: dict[str, float] = {}
        for r in rounds:
            for key, value in (r.get("faults") or {}).items():
                faults[key] = faults.get(key, 0) + value
        summary["faults"] = faults
        if rounds[-1].get("privacy"):
            summary["privacy"] = rounds[-1]["privacy"]
        # the decision margin the training clients chose after the last round (as run_central's summary["margin"],
        # plus how many clients answered and which were dropped); None: no margin rule
        chosen = rounds[-1].get("margin")
        summary["margin"] = chosen if chosen and "margin" in chosen else None
        if chosen and "margin" not in chosen:
            summary["margin_failed"] = chosen
    # every method answered by every test client is compared exactly as in the centralized run
    complete = {m: p for m, p in preds.by_method.items() if len(p) == len(preds.by_method.get("hydra", p))}
    preds.by_method = {f"{FEDERATED_PREFIX}{m}" if is_hydra_method(m) else m: p for m, p in complete.items()}
    for key in ("seconds", "calls", "failures", "asked", "llm_seconds", "baselines"):
        getattr(preds, key).update(
            {f"{FEDERATED_PREFIX}{m}": v for m, v in getattr(preds, key).items() if is_hydra_method(m)}
        )
    free_note = f" (+{summary['free_train_users']} free)" if summary.get("free_train_users") else ""
    failed = f" ({len(test) - len(scored)} failed)" if len(scored) < len(test) else ""
    title = (
        f"{dataset.task.name}: federated HYDRA, {summary['train_users']}{free_note} training / "
        f"{len(scored)} test users{failed}"
    )
    groups = {m: ("federated" if is_hydra_method(m) else "baseline") for m in preds.by_method}
    return finish_run(
        dataset.task,
        preds,
        dataset.golds,
        out,
        title=title,
        summary=summary,
        groups=groups,
        users={q.id: u.user_id for u in test for q in u.questions},
        inputs={q.id: q.query for u in test for q in u.questions},
        ledger=ledger,
    )


def clear_results(out: Path) -> list[Path]:
    """Remove the result files of an earlier run in ``out`` (they are written only once a run completes).

    A run that fails then leaves nothing that looks complete: no ``summary.json``, ``metrics.*``, ``rounds.*``,
    predictions (``<method>_outputs.json``) or ``server/server_summary.json`` of another run. The clients'
    stores and the server's checkpoints and ``rounds.jsonl`` stay (a resumed run continues from them).
    """
    from shared.baselines import METHODS

    names = [
        "summary.json",
        "metrics.md",
        "metrics.json",
        "metrics.png",
        "rounds.md",
        "rounds.png",
        "server/server_summary.json",
    ]
    removed = []
    for name in names:
        path = out / name
        if path.is_file():
            path.unlink()
            removed.append(path)
    for path in out.glob("*_outputs.json"):
        method = path.name[: -len("_outputs.json")]
        if method in METHODS or method.startswith(("rag-k", "fed-hydra", "hydra")):
            path.unlink()
            removed.append(path)
    return removed


def production_app(out: Path) -> Path:
    """The Flower app a plain simulation submits: the repository itself, whose ClientApp is the production one
    (:mod:`client.client_app`), as deployed (``out`` is not used)."""
    return REPO


def app_copy(out: Path, client_app: str, include: Sequence[str] = ()) -> Path:
    """A copy of the app's code (``fab-include``, plus the ``include`` patterns) in ``out/flwr-app`` whose pyproject
    names ``client_app`` (a ``module:attribute``) as its ClientApp and bundles the ``include`` patterns too, made
    afresh: how a run submits another ClientApp (the lab's fault injection or scale probe, whose code ``include``
    names) without the production app carrying it. Flower reads the ClientApp from the app's pyproject only."""
    import tomli_w

    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    app_config = config["tool"]["flwr"]["app"]
    app_config["components"]["clientapp"] = client_app
    app_config["fab-include"] = list(dict.fromkeys([*app_config["fab-include"], *include]))
    app = Path(out) / "flwr-app"
    shutil.rmtree(app, ignore_errors=True)
    app.mkdir(parents=True)
    for pattern in app_config["fab-include"]:
        for path in sorted(REPO.glob(pattern)):
            if path.is_file() and "__pycache__" not in path.parts:
                target = app / path.relative_to(REPO)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
    atomic_write_text(app / "pyproject.toml", tomli_w.dumps(config))
    return app


def simulate(
    cfg: RunConfig,
    out_dir: str | Path,
    *,
    llm_config: LLMConfig | None = None,
    llm_cache: str | Path | None = None,
    progress: Callable[[str], None] = print,
    ray_address: str | None = None,
    client_cpus: int = 2,
    app: Callable[[Path], Path] = production_app,
) -> dict:
    """Run the whole federated simulation of the run config ``cfg`` (validated at the entry point) and gather its
    results (see the module docstring).

    The LLM is ``llm_config``, else the run config's ``llm.url`` (and ``llm.model``), else what
    :func:`shared.llm.resolver.resolve_llm` finds (an embedded server started here stops when the run ends).
    ``llm_cache`` is the response cache every client uses (default: ``FEDHYDRA_LLM_CACHE``, else
    ``$FEDHYDRA_HOME/llm-cache.sqlite``). ``ray_address`` (``HOST:PORT`` of a running Ray cluster's head) runs the
    ClientApps on that cluster instead of on a Ray instance of the simulation's own (docs/deployment.md, "A simulation
    on a Ray cluster"); ``client_cpus`` is each ClientApp's CPU share (``client-resources-num-cpus``), so
    ``cluster CPUs / client_cpus`` ClientApps run at once. ``app`` makes the Flower app folder the run submits, given
    the run's output folder: the repository and its production ClientApp by default; a lab run passes its own (the
    fault-injection app of :func:`lab.faults.app.fault_app`).
    """
    from shared.llm.resolver import resolve_llm

    out = Path(out_dir).resolve()
    with checked_inputs(cfg) as inputs:  # a refused config or data leaves ``out`` as it was
        out.mkdir(parents=True, exist_ok=True)
        clear_results(out)
        folder = inputs.place(out)
    dataset = inputs.dataset
    store_dir = Path(cfg.store_dir).resolve() if cfg.store_dir else out / "clients"
    cfg = replace(
        cfg,
        data=str(folder.resolve()),
        store_dir=str(store_dir),
        federation=replace(cfg.federation, out_dir=str(out / "server")),
    )
    train, test = split_users(
        dataset,
        train_users=cfg.train_users,
        test_users=cfg.test_users,
        protocol=cfg.protocol,
        offset=cfg.user_offset,
        free_train_users=cfg.free_train_users,
    )
    n_nodes = node_count(cfg.protocol, train_users=len(train), test_users=len(test))  # len(train) counts the free
    cache = Path(llm_cache).resolve() if llm_cache else llm_cache_path()
    link_env = {"FEDHYDRA_LLM_CACHE": str(cache)} if llm_cache else {}  # the clients' processes inherit it
    if ray_address:  # Flower's simulation process attaches to this cluster (ray.init reads RAY_ADDRESS)
        link_env["RAY_ADDRESS"] = ray_address
    started = time.time()
    with resolve_llm(
        llm_config,
        url=cfg.llm_url or None,
        model=cfg.llm_model or None,
        timeout_s=cfg.llm_timeout,
        concurrency=cfg.llm_concurrency,
        cache_path=str(cache) if llm_cache else None,
    ) as endpoint:
        llm = endpoint.config
        config_file = out / "run_config.toml"
        import tomli_w

        sent = replace(cfg, llm_url=llm.base_url, llm_model=llm.model)  # the clients' LLM, as this process resolved it
        atomic_write_text(config_file, tomli_w.dumps(sent.to_mapping()))
        progress(
            f"federation: {len(train)} training + {len(test)} test clients, {cfg.federation.num_rounds} rounds, "
            f"strategy {cfg.federation.strategy}; LLM {llm.base_url}"
        )
        with LocalSuperLink(
            out / "flwr-home", num_supernodes=n_nodes, num_cpus_per_client=client_cpus, env=link_env
        ) as link:
            run_id = link.submit(app(out), config_file)
            progress(f"Flower run {run_id} submitted; following its log (also in {out / 'flwr.log'})")
            with open(out / "flwr.log", "w", encoding="utf-8") as log:

                def on_line(line: str) -> None:
                    line = plain(line)  # Flower's and Ray's colours and progress bars: neither file nor pipe wants them
                    log.write(line + "\n")
                    log.flush()
                    if (
                        "[ROUND" in line
                        or "ERROR" in line
                        or "rejected" in line
                        or "failed" in line.lower()
                        or "margin" in line
                    ):
                        progress("  " + line.split("INFO :", 1)[-1].strip())

                status = link.wait(run_id, on_line=on_line)
        if status != "finished:completed":
            raise SimulationError(f"Flower run {run_id} ended as {status!r}; see {out / 'flwr.log'}")
    wall = time.time() - started
    summary = {
        "task": cfg.task,
        "protocol": cfg.protocol,
        "train_users": len(train) - cfg.free_train_users,
        "free_train_users": cfg.free_train_users,
        "test_users": len(test),
        "test_questions": sum(len(u.questions) for u in test),
        "rounds": cfg.federation.num_rounds,
        "strategy": cfg.federation.strategy,
        "dp_noise": cfg.federation.dp_noise,
        "run_id": run_id,
        "status": status,
        "wall_seconds": round(wall, 1),
        "llm_calls": cache_rows_since(cache, started),
    }
    return collect(cfg, dataset, out, store_dir, summary=summary)
