"""The centralized HYDRA reference run: ``fedhydra run``.

One run, same LLM, same users, fixed seeds: build each user's episodes through the LLM (cached), train the
shared base with the training users' heads, fit every new user's heads on their history only (base
frozen), then answer each test question with the methods of ``eval.methods`` and score them (by default input or the
user's mean, RAG, ``hydra`` and ``hydra-shared-head``; ``eval.methods=all``: every one below):

| method | what |
|---|---|
| ``input`` / ``majority`` / ``user-mean`` | the non-LLM baselines that apply to the task |
| ``zero-shot``, ``rag-k{k}`` | the LLM alone; with the BM25 top-k records |
| ``hydra-reranker`` | the reranker's top-k records in the prompt, the LLM's greedy answer |
| ``hydra-adapter`` | BM25 top-k in the prompt, the adapter picks among the candidates |
| ``hydra-shared-head`` | reranker and adapter with the shared heads (no personal fit) |
| ``hydra`` | reranker and adapter with the user's personal heads |
| ``hydra-no-margin`` | ``hydra`` without the margin rule (the adapter's plain choice) |

Writes ``<method>_outputs.json`` (official layout), ``metrics.{md,json}``, ``metrics.png`` and
``summary.json`` (stage times, LLM calls, the candidate pool's oracle, relative gains).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import TypeVar

from shared.config import RunConfig
from shared.data import Dataset, write_outputs
from shared.evaluation import Predictions, merge_predictions
from shared.hydra.candidates import call_choices, decision_keys
from shared.hydra.context import UserContext
from shared.hydra.decision import MarginChoice, heads_needed
from shared.hydra.episodes import Episode, build_user_episodes, free_user_config
from shared.hydra.variants import COST_METHODS, FEDERATED_PREFIX, HYDRA_METHODS, is_hydra_method
from shared.io import atomic_write_text
from shared.ledger import Cost, Ledger
from shared.llm.client import LLMClient
from shared.metrics import evaluate, example_score, primary_metric
from shared.readability import broken_share, is_broken
from shared.tasks import TaskSpec
from shared.training.model import HydraBase, PersonalHeads
from shared.training.stages import StageReport, train_stage
from shared.training.train import Trainer
from shared.users import User, get_protocol, split_users
from simulations.failures import UserFailures
from simulations.report import MethodResult, plot_methods, relative_gain, write_table
from simulations.trained import load_trained, save_margin, save_trained, training_fingerprint

__all__ = [
    "run_central",
    "HYDRA_METHODS",
    "build_episodes",
    "finish_run",
    "map_users",
    "left_baseline",
    "comparison_tables",
]

T = TypeVar("T")

LEDGER_TITLE = "LLM cost (answers used = sent + cached, i.e. the cost on a cold cache):"
"""The heading of the cost ledger in ``metrics.md``."""


def _say(progress: Callable[[str], None] | None, text: str) -> None:
    if progress:
        progress(text)


def map_users(
    fn: Callable[[User], T], users: Sequence[User], *, workers: int, desc: str, progress: bool = True
) -> list[T]:
    """``[fn(u) for u in users]`` with up to ``workers`` users at once (their LLM requests overlap), in order.

    While several users run at once, numpy's BLAS is held to one thread: OpenBLAS's own threads, times the users'
    threads, oversubscribe the cores (4 threads each taking an SVD of a 900 x 384 matrix, 5 times: 148 s with
    OpenBLAS's default threads, 3.9 s with one, on the 2 busy cores of the development machine).
    """
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_limits
    from tqdm import tqdm

    # a bar only on a terminal: in a file or a pipe its redrawn lines would be debris
    bar = tqdm(total=len(users), desc=desc, unit="user", disable=None if progress else True, leave=False)
    try:
        if workers <= 1 or len(users) <= 1:
            out = []
            for u in users:
                out.append(fn(u))
                bar.update()
            return out
        with (
            threadpool_limits(limits=1, user_api="blas"),
            ThreadPoolExecutor(max_workers=min(workers, len(users)), thread_name_prefix="user") as pool,
        ):
            futures = [pool.submit(fn, u) for u in users]
            for f in futures:
                f.add_done_callback(lambda _: bar.update())
            return [f.result() for f in futures]
    finally:
        bar.close()


def build_episodes(
    task: TaskSpec,
    users: Sequence[User],
    llm: LLMClient | None,
    cfg: RunConfig,
    *,
    with_golds: bool,
    progress: bool = True,
    ledger: Ledger | None = None,
    unit: str = "training user",
    failures: UserFailures | None = None,
) -> tuple[dict[str, list[Episode]], dict[str, int]]:
    """Every user's episodes (their golds only if ``with_golds``), several users at once, with a progress bar;
    returns stats too. Each user's cost goes into ``ledger`` as one ``unit``. With ``failures``, a user whose
    episodes fail is recorded there (stage ``episodes``) and left out of the result; else the error propagates."""

    def one(user: User):
        questions = user.training_questions() if with_golds else []
        started = time.perf_counter()
        eps, report = build_user_episodes(task, user.user_id, user.history, questions, llm, cfg.episodes)
        if ledger is not None:
            ledger.record(
                unit,
                Cost(
                    asked=report.llm_asked,
                    sent=report.llm_calls,
                    llm_seconds=report.llm_seconds,
                    wall_seconds=time.perf_counter() - started,
                ),
            )
        return eps, report

    work = failures.guard(one, "episodes") if failures is not None else one
    built = map_users(work, users, workers=cfg.llm_concurrency, desc="episodes", progress=progress)
    out: dict[str, list[Episode]] = {}
    stats = {"episodes": 0, "skipped": 0, "llm_calls": 0}
    for user, done in zip(users, built):
        if done is None:  # this user failed (recorded in failures)
            continue
        eps, report = done
        out[user.user_id] = eps
        stats["episodes"] += report.episodes
        stats["skipped"] += report.skipped
        stats["llm_calls"] += report.llm_calls
    return out, stats


def left_baseline(task: TaskSpec, preds: Predictions, golds: Mapping[str, str]) -> dict[str, dict[str, int]]:
    """Per HYDRA method: on how many questions it answered other than the strongest non-LLM answer, and how often
    that scored higher (helped) or lower (hurt) than the baseline would have, by the gold."""
    out = {}
    for method, kept in preds.baselines.items():
        if method not in preds.by_method:
            continue
        answers = preds.by_method[method]
        row = {"questions": 0, "left": 0, "helped": 0, "hurt": 0}
        for qid, base in kept.items():
            if qid not in answers or qid not in golds:
                continue
            row["questions"] += 1
            if answers[qid] != base:
                row["left"] += 1
                delta = example_score(task, answers[qid], golds[qid]) - example_score(task, base, golds[qid])
                row["helped"] += delta > 0
                row["hurt"] += delta < 0
        out[method] = row
    return out


def comparison_tables(paired: Mapping[str, dict], left: Mapping[str, Mapping[str, int]]) -> str:
    """Markdown: the paired comparisons (per-question score difference, 95% bootstrap interval) and how often each
    HYDRA method left its anchor (the strongest non-LLM answer, or the edit of the input chosen with the margin).

    >>> print(comparison_tables({"hydra vs input": {"n": 3, "mean_difference": 0.1, "interval": [-0.2, 0.3],
    ...                                             "wins": 2, "losses": 1}}, {}).strip().splitlines()[-1])
    | hydra vs input | 3 | +0.1000 | [-0.2000, +0.3000] | 2 / 1 |
    """
    by_user = any("user_interval" in c for c in paired.values())  # users resampled too (several questions each)
    extra = (" users | 95% interval over users |", "---|---|") if by_user else ("", "")
    lines = [
        "",
        "Paired comparisons (per-question score, B minus A: > 0 means B is better; 95% paired bootstrap):",
        "",
        "| B vs A | questions | mean difference | 95% interval | B better / worse |" + extra[0],
        "|---|---|---|---|---|" + extra[1],
    ]
    for name, c in paired.items():
        low, high = c["interval"]
        tail = ""
        if by_user:
            u_low, u_high = c.get("user_interval", [float("nan"), float("nan")])
            tail = f" {c.get('users', '')} | [{u_low:+.4f}, {u_high:+.4f}] |"
        lines.append(
            f"| {name} | {c['n']} | {c['mean_difference']:+.4f} | [{low:+.4f}, {high:+.4f}] | "
            f"{c['wins']} / {c['losses']} |" + tail
        )
    if left:
        lines += [
            "",
            "How often each method left its anchor (the strongest non-LLM answer, or the edit of the input chosen "
            "with the margin), and whether that helped (by the gold):",
            "",
            "| method | questions | left it | helped | hurt |",
            "|---|---|---|---|---|",
        ]
        lines += [f"| {m} | {r['questions']} | {r['left']} | {r['helped']} | {r['hurt']} |" for m, r in left.items()]
    return "\n".join(lines) + "\n"


def finish_run(
    task: TaskSpec,
    preds: Predictions,
    golds: Mapping[str, str],
    out: Path,
    *,
    title: str,
    summary: dict,
    groups: Mapping[str, str] | None = None,
    users: Mapping[str, str] | None = None,
    inputs: Mapping[str, str] | None = None,
    ledger: Ledger | None = None,
) -> dict:
    """Write predictions, the metrics table, the plot and the summary; return the summary, with ``table`` (what
    ``metrics.md`` holds), ``method_table`` (its table of the methods alone) and ``ledger_table`` added.

    ``metrics.md`` holds the table, the paired comparisons, how often each method left its anchor, and the cost ledger
    of ``ledger`` (the LLM answers each stage, user and method used).

    ``users`` (question id -> user): where some user asks several questions (LaMP-3's timeline split), the paired
    comparisons also give the user-level interval (users resampled, :mod:`shared.stats`). ``inputs`` (question id ->
    the input a rewrite task rewrites): every method's table row gets ``broken``, the share of its answers that
    :func:`shared.readability.is_broken` judges broken, and each HYDRA method's comparison with the strongest
    baseline is repeated with its broken answers replaced by the input (``(readable)``): what its readable answers
    earn."""
    if users is not None and len(set(users.values())) == len(users):
        users = None  # one question per user: the question-level interval is the user-level one
    results = []
    for label, predictions in preds.by_method.items():
        write_outputs(out / f"{label}_outputs.json", task, predictions)
        metrics = evaluate(task, predictions, {k: golds[k] for k in predictions})
        if task.rewrite and inputs is not None:
            ids = [k for k in predictions if k in inputs]
            metrics["broken"] = broken_share([predictions[k] for k in ids], [inputs[k] for k in ids])
        results.append(
            MethodResult(
                label,
                predictions,
                metrics,
                preds.seconds[label],
                preds.calls[label],
                preds.asked.get(label, 0) - preds.calls[label],
                preds.failures[label],
                llm_seconds=preds.llm_seconds.get(label, 0.0),
            )
        )
    metric, higher = primary_metric(task)
    rows = [r.row() for r in results]
    oracle = evaluate(task, preds.oracle, {k: golds[k] for k in preds.oracle})[metric] if preds.oracle else None
    baselines = [r for r in rows if not is_hydra_method(str(r["method"]))]
    strongest = (max if higher else min)(baselines, key=lambda r: r[metric]) if baselines else None
    rag = next((r for r in rows if str(r["method"]).startswith("rag")), None)
    gains = {}
    for r in rows:
        if is_hydra_method(str(r["method"])):
            gains[str(r["method"])] = {
                "vs_rag": round(relative_gain(float(r[metric]), float(rag[metric]), higher), 4) if rag else None,
                "vs_strongest_baseline": round(relative_gain(float(r[metric]), float(strongest[metric]), higher), 4)
                if strongest
                else None,
            }
    # paired 95% bootstrap intervals (shared.stats) of per-question scores: method minus reference, so > 0 is better
    from shared.stats import compare_predictions

    paired: dict[str, dict] = {}
    by_method = preds.by_method
    for r in rows:
        name = str(r["method"])
        if is_hydra_method(name) and strongest is not None:
            paired[f"{name} vs {strongest['method']}"] = compare_predictions(
                task, by_method[str(strongest["method"])], by_method[name], golds, users=users
            ).as_dict()
            if task.rewrite and inputs is not None:
                readable = {
                    k: inputs[k] if k in inputs and is_broken(v, inputs[k]) else v for k, v in by_method[name].items()
                }
                paired[f"{name} (readable) vs {strongest['method']}"] = compare_predictions(
                    task, by_method[str(strongest["method"])], readable, golds, users=users
                ).as_dict()
    for pre in ("", FEDERATED_PREFIX):  # personal vs shared heads; each cost-aware mode against the full method
        full = f"{pre}hydra"
        if full not in by_method:
            continue
        for other in (f"{pre}hydra-shared-head", *(f"{pre}{v}" for v in COST_METHODS)):
            if other in by_method:
                first, second = (other, full) if other.endswith("shared-head") else (full, other)
                paired[f"{second} vs {first}"] = compare_predictions(
                    task, by_method[first], by_method[second], golds, users=users
                ).as_dict()
        if f"{pre}hydra-no-margin" in by_method:
            paired[f"{full} vs {pre}hydra-no-margin"] = compare_predictions(
                task, by_method[f"{pre}hydra-no-margin"], by_method[full], golds, users=users
            ).as_dict()
    summary = {
        **summary,
        "primary_metric": metric,
        "pool_oracle": oracle,
        "strongest_baseline": strongest["method"] if strongest else None,
        "relative_gain": gains,
        "paired_bootstrap": paired,
        "left_baseline": left_baseline(task, preds, golds),
    }
    method_table = write_table(results, task, out, title=title, extra=summary)
    table = method_table + comparison_tables(paired, summary["left_baseline"])
    ledger_table = ledger.table() if ledger is not None else None
    if ledger_table:
        table += f"\n{LEDGER_TITLE}\n\n{ledger_table}"
    atomic_write_text(out / "metrics.md", table)
    plot_methods(
        rows,
        task,
        out / "metrics.png",
        title=title,
        oracle=oracle,
        groups=groups
        or {str(r["method"]): ("hydra" if is_hydra_method(str(r["method"])) else "baseline") for r in rows},
    )
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1))
    summary["table"] = table
    summary["method_table"] = method_table
    if ledger_table:
        summary["ledger_table"] = ledger_table
    return summary


def _survivors(users: Sequence[User], failures: UserFailures) -> list[User]:
    """``users`` less those that failed."""
    return [u for u in users if not failures.failed(u.user_id)]


def run_central(
    dataset: Dataset,
    cfg: RunConfig,
    llm: LLMClient,
    out_dir: str | Path,
    *,
    progress: Callable[[str], None] | None = print,
    bars: bool = True,
) -> dict:
    """The whole centralized reference run; returns the summary (also written to ``out_dir``)."""
    task = dataset.task
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    train_users, test_users = split_users(
        dataset,
        train_users=cfg.train_users,
        test_users=cfg.test_users,
        protocol=cfg.protocol,
        offset=cfg.user_offset,
        free_train_users=cfg.free_train_users,
    )
    llm_users, free_users = train_users[: cfg.train_users], train_users[cfg.train_users :]
    history = get_protocol(cfg.protocol).same_users
    ledger = Ledger()
    calls0 = llm.stats.calls
    failures = UserFailures()  # one user's failure costs that user, not the run
    all_train_users, all_test_users = list(train_users), list(test_users)

    with ledger.stage("episodes"):
        _say(progress, f"[1/4] episodes of {len(llm_users)} training users through the LLM")
        train_eps, train_stats = build_episodes(
            task,
            llm_users,
            llm,
            cfg,
            with_golds=not history,
            progress=bars,
            ledger=ledger,
            unit="training user",
            failures=failures,
        )
        if free_users:
            _say(progress, f"      and of {len(free_users)} free training users (their questions, no LLM call)")
            free_cfg = replace(cfg, episodes=free_user_config(cfg.episodes))
            free_eps, free_stats = build_episodes(
                task,
                free_users,
                None,
                free_cfg,
                with_golds=True,
                progress=bars,
                ledger=ledger,
                unit="free training user",
                failures=failures,
            )
            train_eps.update(free_eps)
            train_stats = {k: train_stats[k] + free_stats[k] for k in train_stats}
    train_users, test_users = _survivors(train_users, failures), _survivors(test_users, failures)
    failures.check_some_left([u.user_id for u in all_train_users], "training users")
    llm_users, free_users = _survivors(llm_users, failures), _survivors(free_users, failures)
    fingerprint = training_fingerprint(cfg, {u.user_id: train_eps[u.user_id] for u in train_users})
    saved = load_trained(out, fingerprint, cfg.model) if cfg.federation.resume else None
    with ledger.stage("train"):
        import torch

        torch.manual_seed(cfg.seed)
        base = HydraBase(cfg.model)
        trainer = Trainer(base, cfg.train)
        build_context = failures.guard(
            lambda u: UserContext.build(task, u.history, embed=trainer.history_embed), "context"
        )
        contexts = {u.user_id: c for u in train_users + test_users if (c := build_context(u)) is not None}
        train_users, test_users = _survivors(train_users, failures), _survivors(test_users, failures)
        llm_users, free_users = _survivors(llm_users, failures), _survivors(free_users, failures)
        if saved is not None:
            _say(progress, f"[2/4] the shared base trained by an earlier run of these settings ({out / 'trained'})")
            base.load_shared_state(saved.base)
            trainer.invalidate()
            report = StageReport(**saved.report)
        else:
            _say(progress, "[2/4] training the shared base with the training users' heads")
            heads = {u.user_id: PersonalHeads.from_shared(base) for u in train_users}
            report = train_stage(
                trainer,
                task,
                {u.user_id: (contexts[u.user_id], train_eps[u.user_id]) for u in train_users},
                heads,
                progress=(lambda s: _say(progress, "      " + s)),
            )
            save_trained(out, fingerprint, base.shared_state(), asdict(report), cfg.model)

    margin = None
    choice = None
    earlier = MarginChoice.from_dict(saved.margin) if saved is not None and saved.margin is not None else None
    decisions = decision_keys(task, cfg.pool)
    if earlier is not None and earlier.anchors_tried() == decisions:  # else chosen over other decisions: again
        choice = earlier
        margin = choice.margin
        _say(
            progress,
            f"      margin {margin:g}, anchor {choice.anchor}, {choice.llm_calls} LLM answers per answer "
            "(chosen by the earlier run)",
        )
    elif cfg.margin_folds and len(train_users) >= 2:
        from shared.training.calibrate import cross_validate_margin

        with ledger.stage("margin"):
            _say(
                progress,
                f"      choosing the decision margin by {cfg.margin_folds}-fold cross-validation over "
                "the training users",
            )
            choice = cross_validate_margin(
                task,
                {u.user_id: (contexts[u.user_id], train_eps[u.user_id]) for u in train_users},
                cfg.model,
                cfg.train,
                folds=min(cfg.margin_folds, len(train_users)),
                seed=cfg.seed,
                progress=(lambda s: _say(progress, "      " + s)),
                calls=call_choices(cfg.pool),
            )
            margin = choice.margin
            _say(
                progress,
                f"      margin {margin:g}, anchor {choice.anchor}, {choice.llm_calls} LLM answers per "
                f"answer: on {choice.points} held-out training "
                f"questions the adapter leaves the anchor {choice.left} times ({choice.helped} helped, "
                f"{choice.hurt} hurt)",
            )
            save_margin(out, fingerprint, choice.as_dict())

    # the new users' onboarding (the LLM labels their history) only where their heads can change an answer: under
    # margin inf no head does, and the SDK skips it (client.sdk.PersonalClient.fit); so does the run
    test_eps: dict[str, list[Episode]] = {}
    test_stats = {"episodes": 0, "skipped": 0, "llm_calls": 0}
    if not history and not heads_needed(margin):
        _say(
            progress,
            f"      the {len(test_users)} new users need no onboarding: under margin inf no head changes an answer",
        )
        ledger.record("new user onboarding", Cost(asked=0, sent=0, llm_seconds=0.0), n=len(test_users))
    elif not history:
        with ledger.stage("onboarding"):
            _say(progress, f"      episodes of {len(test_users)} new users (history only: their onboarding)")
            test_eps, test_stats = build_episodes(
                task,
                test_users,
                llm,
                cfg,
                with_golds=False,
                progress=bars,
                ledger=ledger,
                unit="new user onboarding",
                failures=failures,
            )
        test_users = _survivors(test_users, failures)

    from client.evaluation import evaluate_user
    from client.node import device_bundle
    from client.store import UserStore

    with ledger.stage("export"):
        device_cfg = replace(cfg, store_dir=str(out / "clients"))
        _say(progress, "[3/4] exporting the device bundle (ONNX) of the trained base")
        bundle = device_bundle(
            {k: v.numpy() for k, v in base.shared_state().items()},
            device_cfg,
            margin=margin,
            anchor=choice.anchor if choice is not None else None,
            llm_calls=choice.llm_calls if choice is not None else None,
        )

    with ledger.stage("answer"):
        n_questions = sum(len(u.questions) for u in test_users)
        _say(
            progress,
            f"[4/4] {len(test_users)} users fit their heads on their history (base frozen) and answer "
            f"{n_questions} questions with every method, on the device runtime",
        )

        def evaluate(u: User) -> Predictions:
            store = UserStore(out / "clients", u.user_id, task=task.name)
            store.write_history(u.history)
            episodes = (train_eps if history else test_eps).get(u.user_id)
            if episodes is not None:
                store.write_episodes(episodes)
            return evaluate_user(
                task, u, bundle, device_cfg, llm, out / "clients", dataset.golds, methods=list(cfg.eval_methods) or None
            )

        answered = map_users(
            failures.guard(evaluate, "answer"), test_users, workers=cfg.llm_concurrency, desc="answer", progress=bars
        )
        test_users = _survivors(test_users, failures)
        failures.check_some_left([u.user_id for u in all_test_users], "test users")
        preds = merge_predictions([p for p in answered if p is not None])
        for method, answers in preds.by_method.items():
            ledger.record(
                f"answer ({method})",
                Cost(asked=preds.asked[method], sent=preds.calls[method], llm_seconds=preds.llm_seconds[method]),
                n=len(answers),
            )

    summary = {
        "task": task.name,
        "protocol": cfg.protocol,
        "train_users": len(llm_users),
        "free_train_users": len(free_users),
        "test_users": len(all_test_users),
        "scored_test_users": len(test_users),
        "test_questions": sum(len(u.questions) for u in test_users),
        "failed_users": failures.as_dict(),
        "episodes": {"train": train_stats, "test": test_stats},
        "examples": report.examples,
        "losses": report.losses,
        "editor_loss": report.editor_loss,
        "style_loss": report.style_loss,
        "margin": choice.as_dict() if choice is not None else None,
        "trained_by_earlier_run": saved is not None,
        "stage_seconds": {k: round(v.wall_seconds, 1) for k, v in ledger.stages.items()},
        "wall_seconds": round(time.perf_counter() - started, 1),
        "llm_calls": llm.stats.calls - calls0,
        "llm_concurrency": llm.config.concurrency,
        "llm": llm.stats.as_dict(),
        "ledger": ledger.as_dict(),
    }
    free = f" (+{len(free_users)} free)" if free_users else ""
    failed = f" ({len(all_test_users) - len(test_users)} failed)" if len(test_users) < len(all_test_users) else ""
    title = f"{task.name}: HYDRA, {len(llm_users)}{free} training / {len(test_users)} test users{failed}"
    return finish_run(
        task,
        preds,
        dataset.golds,
        out,
        title=title,
        summary=summary,
        users={q.id: u.user_id for u in test_users for q in u.questions},
        inputs={q.id: q.query for u in test_users for q in u.questions},
        ledger=ledger,
    )
