"""The ``fedhydra`` command line.

Subcommands:

- ``simulate``: the main job, federated HYDRA as a Flower simulation (:mod:`simulations.federated`);
- ``run``: the centralized reference on the same users (:mod:`simulations.hydra_run`);
- ``baseline``: the non-LLM and LLM baselines alone (:mod:`simulations.baseline`);
- ``eval``: the official LaMP metrics of a predictions file, as JSON;
- ``export``: a device bundle (ONNX) of a checkpoint or of the initial base;
- ``synth``: synthetic LaMP-format users with planted personal structure;
- ``llm serve|stop|status``: the embedded LLM server.

``run`` and ``simulate`` print their progress on stderr and, when done, one screen on stdout: the table of the
methods the run evaluated (config key ``eval.methods``: by default returning the input, RAG, HYDRA and HYDRA with
the shared heads; ``--run-config "eval.methods=all"`` every baseline and variant), HYDRA against the strongest
baseline, the plots and the time and LLM cost (:func:`simulations.report.console_summary`); the rest is in the
output folder. Nothing they print carries terminal escape codes: Flower's coloured log lines are made plain
(:func:`simulations.report.plain`) and progress bars are drawn only on a terminal.

Every flag is bounded (:mod:`simulations.cli_args`); exit status 0 done, 2 refused (one line on stderr, nothing
written), 3 (``run``, ``simulate``) done but some users failed (:func:`main`).

Example:
    >>> build_parser().parse_args(["eval", "--golds", "g.json", "--preds", "p.json"]).command
    'eval'
    >>> sorted(LLM_ACTIONS)
    ['serve', 'status', 'stop']
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from shared.errors import ConfigError, DataFormatError, FedHydraError, UnknownTaskError
from simulations.cli_args import Parser, bounded, llm_cache_file, out_path, plain_name, text
from simulations.failures import EXIT_USERS_FAILED

__all__ = ["main", "build_parser", "SYNTH_MAX_ITEMS", "LLM_ACTIONS", "RUN_FLAGS", "BASELINE_FLAGS", "DEFAULT_K"]

SYNTH_MAX_ITEMS = 5_000_000
"""The most items (history items plus questions, over all users) ``fedhydra synth`` writes at once."""

DEFAULT_K = 4
"""Records in ``fedhydra baseline``'s RAG prompt when no ``--k`` is given."""

RUN_FLAGS = (
    ("data", "data.dir"),
    ("task", "data.task"),
    ("split", "data.split"),
    ("train_users", "data.train-users"),
    ("test_users", "data.test-users"),
    ("protocol", "data.protocol"),
    ("seed", "run.seed"),
    ("llm_url", "llm.url"),
    ("llm_model", "llm.model"),
    ("num_rounds", "federation.num-rounds"),
)
"""The flags of ``run`` and ``simulate`` that set a run config key: ``(argparse attribute, config key)``."""


def _add_llm_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("LLM (default: FEDHYDRA_LLM_BASE_URL, else the embedded server, started on demand)")
    g.add_argument("--llm-url", type=text, help="base URL of an OpenAI-compatible API, e.g. http://127.0.0.1:8080/v1")
    g.add_argument("--llm-model", type=text, help="model name sent to that API")
    g.add_argument(
        "--llm-cache", type=llm_cache_file, help="response cache file (default: $FEDHYDRA_HOME/llm-cache.sqlite)"
    )
    g.add_argument(
        "--llm-timeout",
        type=bounded("llm-timeout"),
        default=None,
        help="seconds per request (default: llm.timeout of pyproject's [tool.flwr.app.config])",
    )
    g.add_argument(
        "--llm-concurrency",
        type=bounded("llm-concurrency"),
        default=None,
        help="most requests in flight (default: llm.concurrency of pyproject's [tool.flwr.app.config])",
    )


BASELINE_FLAGS = (
    ("timeline_questions", "data.timeline-questions"),
    ("llm_timeout", "llm.timeout"),
    ("llm_concurrency", "llm.concurrency"),
)
"""The flags of ``baseline`` that set a run config key: ``(argparse attribute, config key)``."""


def _baseline_config(args: argparse.Namespace):
    """The validated run config ``baseline`` reads its settings from: pyproject's [tool.flwr.app.config] with
    :data:`BASELINE_FLAGS` on top."""
    from shared.config import RunConfig, default_mapping

    mapping = default_mapping()
    for flag, key in BASELINE_FLAGS:
        value = getattr(args, flag, None)
        if value is not None:
            mapping[key] = value
    return RunConfig.from_mapping(mapping)


def cmd_eval(args: argparse.Namespace) -> int:
    from shared.data import load_outputs
    from shared.metrics import evaluate
    from shared.tasks import get_task

    task_id, golds = load_outputs(args.golds)  # empty golds: evaluate() refuses them (no metric over nothing)
    _, preds = load_outputs(args.preds)
    name = args.task or task_id
    if name is None:
        raise FedHydraError(f"{args.golds}: no 'task' field; pass --task")
    try:
        task = get_task(name)
    except UnknownTaskError as exc:
        if args.task:
            raise
        raise DataFormatError(args.golds, str(exc), field="task") from None
    if not args.task:  # an official id several tasks share (LaMP_2: movie tags, news categories): the golds decide
        task = _task_of_golds(task, set(golds.values()))
    result = evaluate(task, preds, golds, preds_name=str(args.preds), golds_name=str(args.golds))
    print(json.dumps(result, indent=1))
    return 0


def _task_of_golds(task, values: set[str]):
    """Of the registered tasks with ``task``'s official id, the first whose labels hold every gold value; ``task``
    when none does (or the id is the task's alone).

    >>> from shared.tasks import get_task
    >>> movies = get_task("LaMP-2")
    >>> _task_of_golds(movies, {"sports", "politics"}).name, _task_of_golds(movies, {"comedy"}).name
    ('LaMP-2N', 'LaMP-2')
    """
    from shared.tasks import TASKS

    same_id = [t for t in TASKS.values() if t.official_id == task.official_id]
    return next((t for t in same_id if t.labels and values <= set(t.labels)), task)


def cmd_baseline(args: argparse.Namespace) -> int:
    from shared.baselines import METHODS, methods_for
    from shared.data import load_split
    from shared.llm.client import LLMClient
    from shared.llm.resolver import resolve_llm
    from shared.tasks import get_task
    from simulations.baseline import check_methods, run_baselines, select_users
    from simulations.report import write_table

    task = get_task(args.task)
    cfg = _baseline_config(args)
    dataset = load_split(args.data, task, args.split, timeline_questions=cfg.timeline_questions)
    if dataset.questions and not dataset.golds:
        raise DataFormatError(
            args.data, "no *_outputs.json with the golds beside the questions (baseline scores against them)"
        )
    questions = select_users(dataset, args.users, args.offset)
    ks = args.k or [DEFAULT_K]
    methods = methods_for(task) if "all" in args.method else list(dict.fromkeys(args.method))
    check_methods(task, methods)
    needs_llm = any(METHODS[m].uses_llm for m in methods)
    concurrency = cfg.llm_concurrency if needs_llm else 1
    if needs_llm:
        _check_llm_cache(args.llm_cache)
    out = Path(args.out)
    _clear_results(out)  # a failed rerun leaves nothing of an earlier run looking complete
    started = time.perf_counter()
    if needs_llm:
        with resolve_llm(
            url=args.llm_url or None,
            model=args.llm_model,
            cache_path=args.llm_cache,
            timeout_s=cfg.llm_timeout,
            concurrency=concurrency,
        ) as endpoint:
            llm = LLMClient(endpoint.config)
            results = run_baselines(dataset, questions, methods, llm=llm, ks=ks, style=args.style, out_dir=out)
    else:
        results = run_baselines(dataset, questions, methods, llm=None, ks=ks, style=args.style, out_dir=out)
    n_users = len({q.user_id for q in questions})
    wall = time.perf_counter() - started
    table = write_table(
        results,
        task,
        out,
        title=f"{task.name}: {len(questions)} questions, {n_users} users",
        extra={
            "data": str(args.data),
            "users": n_users,
            "questions": len(questions),
            "wall_seconds": round(wall, 1),
            "style": args.style,
        },
    )
    print(table)
    print(
        f"wall time {wall:.1f} s; LLM calls {sum(r.llm_calls for r in results)}, "
        f"cache hits {sum(r.cache_hits for r in results)}; written to {out}"
    )
    return 0


def _mapping(args: argparse.Namespace) -> dict:
    """pyproject's [tool.flwr.app.config], then --run-config, then the explicit flags (dotted keys)."""
    from shared.config import default_mapping, parse_overrides

    mapping = {**default_mapping(), **parse_overrides(args.run_config or "")}
    for flag, key in RUN_FLAGS:
        value = getattr(args, flag, None)
        if value is not None:
            mapping[key] = value
    return mapping


def _run_config(args: argparse.Namespace):
    from shared.config import RunConfig

    return RunConfig.from_mapping(_mapping(args))


def cmd_run(args: argparse.Namespace) -> int:
    from shared.llm.client import LLMClient
    from shared.llm.resolver import resolve_llm
    from simulations.hydra_run import run_central
    from simulations.report import console_summary
    from simulations.run_inputs import checked_inputs

    cfg = _run_config(args)
    out = Path(args.out)
    with checked_inputs(cfg) as inputs:  # every value checked before anything is written
        _check_llm_cache(args.llm_cache)
        _clear_results(out)  # a failed rerun leaves nothing of an earlier run looking complete
        inputs.place(out)
    with resolve_llm(
        url=cfg.llm_url or None,
        model=cfg.llm_model or None,
        cache_path=args.llm_cache,
        timeout_s=cfg.llm_timeout,
        concurrency=cfg.llm_concurrency,
    ) as endpoint:
        llm = LLMClient(endpoint.config)
        summary = run_central(inputs.dataset, cfg, llm, out, progress=_progress)
    print(
        console_summary(
            summary,
            out,
            totals=(
                f"wall time {summary['wall_seconds']} s; LLM calls {summary['llm_calls']} (cache hits "
                f"{summary['llm']['llm_cache_hits']}); pool oracle {summary['pool_oracle']}"
            ),
        )
    )
    return _failed_users_status(
        args, summary, summary["train_users"] + summary["free_train_users"] + summary["test_users"]
    )


def cmd_simulate(args: argparse.Namespace) -> int:
    from shared.config import RunConfig
    from simulations.federated import simulate
    from simulations.report import console_summary

    cfg = RunConfig.from_mapping(_mapping(args))  # validates flags and overrides before anything starts
    _check_llm_cache(args.llm_cache)
    summary = simulate(
        cfg,
        args.out,
        llm_cache=args.llm_cache,
        progress=_progress,
        ray_address=args.ray_address,
        client_cpus=args.client_cpus if args.client_cpus is not None else 2,
    )
    print(
        console_summary(
            summary,
            args.out,
            totals=(
                f"wall time {summary['wall_seconds']} s; LLM calls {summary['llm_calls']}; upload per client per round "
                f"{summary.get('bytes_up_per_client_round', 0):,} B (full encoder {summary.get('full_model_bytes', 0):,} B)"
            ),
        )
    )
    return _failed_users_status(
        args, summary, summary["train_users"] + summary["free_train_users"] + summary["test_users"]
    )


def _progress(line: str) -> None:
    """A progress line of ``run`` or ``simulate``, on stderr at once."""
    print(line, file=sys.stderr, flush=True)


def _failed_users_status(args: argparse.Namespace, summary: dict, total: int) -> int:
    """0, or :data:`~simulations.failures.EXIT_USERS_FAILED` with one line on stderr naming the failed users (the
    run's outputs are written for the others)."""
    failed = summary.get("failed_users") or {}
    if not failed.get("count"):
        return 0
    named = ", ".join(f"{f['user']} ({f['stage']}: {f['error']})" for f in failed["users"])
    print(
        f"fedhydra {args.command}: {failed['count']} of {total} users failed: {named}; metrics over the "
        f"{summary.get('scored_test_users')} test users that finished, written to {args.out}",
        file=sys.stderr,
    )
    return EXIT_USERS_FAILED


def _check_llm_cache(path: str | None) -> None:
    """Open the LLM response cache (``--llm-cache``, else the default one) before anything else is written: a damaged
    one is refused here, as :class:`~shared.errors.ConfigError` naming the flag (or the typed error of the cache)."""
    import sqlite3

    from shared.llm.cache import ResponseCache
    from shared.paths import llm_cache_path

    try:
        ResponseCache(Path(path) if path else llm_cache_path())
    except sqlite3.DatabaseError as exc:
        raise ConfigError(f"--llm-cache is not a readable LLM cache (SQLite: {exc})") from None
    except OSError as exc:
        raise ConfigError(f"--llm-cache cannot be opened ({exc.strerror})") from None


def cmd_export(args: argparse.Namespace) -> int:
    from server.checkpoint import latest_checkpoint
    from shared.hydra.bundle import load_tensors
    from shared.training.export import export_bundle
    from shared.training.model import initial_shared_state

    cfg = _run_config(args)
    source = "initial base"
    if args.source:
        path = Path(args.source)
        if path.is_dir():
            found = latest_checkpoint(path, model=cfg.model)
            if found is None:
                raise FedHydraError(f"{path}: no readable checkpoint")
            rnd, arrays = found
            source = f"{path} round {rnd}"
        else:
            arrays, meta = load_tensors(path, kind="base", model=cfg.model)
            source = f"{path} round {meta.get('round')}"
    else:
        arrays = initial_shared_state(cfg.model, cfg.seed)
    out = export_bundle(arrays, cfg.model, args.out, quantize=not args.no_int8, source=source)
    print(f"device bundle of the {source} written to {out}")
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    from shared.synthetic import write_synthetic

    if args.users * (args.items + args.questions) > SYNTH_MAX_ITEMS:
        raise ConfigError(
            f"--users x (--items + --questions) must be at most {SYNTH_MAX_ITEMS:,}, got "
            f"{args.users * (args.items + args.questions):,}"
        )
    out = write_synthetic(
        args.out,
        args.task,
        n_users=args.users,
        items_per_user=args.items,
        questions_per_user=args.questions,
        seed=args.seed,
    )
    print(f"wrote {args.users} synthetic {args.task} users to {out}")
    return 0


def _llm_serve(args: argparse.Namespace) -> int:
    from shared.llm.embedded import EMBEDDED_SLOTS, server_lock, set_auto_stop, start_server

    with server_lock():
        info = start_server(port=args.port, threads=args.threads, slots=args.slots or EMBEDDED_SLOTS, n_ctx=args.ctx)
        set_auto_stop(info, False)  # served on request: it stays, even if a run started it to stop when unused
    print(info.url)
    print(
        f"pid {info.pid}; {info.slots} slots (keep up to {info.slots} requests in flight); log {info.log}; "
        f"stop with: fedhydra llm stop",
        file=sys.stderr,
    )
    return 0


def _llm_stop(args: argparse.Namespace) -> int:
    from shared.llm.embedded import server_lock, stop_server

    with server_lock():
        info = stop_server()
    print(f"stopped pid {info.pid} ({info.url})" if info else "no embedded LLM server was running")
    return 0


def _llm_status(args: argparse.Namespace) -> int:
    from shared.llm.embedded import running_server

    info = running_server()
    print(info.url if info else "not running")
    return 0 if info else 1


LLM_ACTIONS = {"serve": _llm_serve, "stop": _llm_stop, "status": _llm_status}
"""``fedhydra llm <action>``: each action's function (status 1 from ``status``: none is running)."""


def cmd_llm(args: argparse.Namespace) -> int:
    return LLM_ACTIONS[args.action](args)


def _add_run_args(p: argparse.ArgumentParser) -> None:
    """The flags of ``run`` and ``simulate``: keys of the run config (bounded by :mod:`shared.config` when the config
    is built) and the output folder and LLM (bounded here)."""
    p.add_argument("--data", type=text, help="LaMP-format directory (default from pyproject: synthetic users)")
    p.add_argument("--task", type=text, help="LaMP task (default from pyproject)")
    p.add_argument("--split", type=plain_name, help="file prefix when the directory holds several splits")
    p.add_argument("--train-users", type=int, help="users whose questions train the base")
    p.add_argument("--test-users", type=int, help="new users who fit heads and answer their questions")
    p.add_argument("--protocol", choices=["disjoint", "history"], help="user protocol (see pyproject)")
    p.add_argument("--seed", type=int)
    p.add_argument(
        "--run-config",
        type=text,
        help='more settings, e.g. "pool.n-samples=4 train.epochs=2" (keys of [tool.flwr.app.config])',
    )
    p.add_argument("--out", type=out_path, required=True, help="output directory")
    p.add_argument("--llm-url", type=text, help="OpenAI-compatible base URL (default: env, else the embedded server)")
    p.add_argument("--llm-model", type=text, help="model name for that endpoint")
    p.add_argument(
        "--llm-cache", type=llm_cache_file, help="response cache file (default: $FEDHYDRA_HOME/llm-cache.sqlite)"
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``fedhydra`` parser: every flag of every subcommand is bounded (:mod:`simulations.cli_args`), and a
    refusal is one line on stderr with exit status 2."""
    parser = Parser(prog="fedhydra", description="Federated on-device HYDRA for black-box LLMs")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("eval", help="score predictions with the official LaMP metrics (prints JSON)")
    p.add_argument("--golds", type=text, required=True, help="official *_outputs.json with the golds")
    p.add_argument("--preds", type=text, required=True, help="predictions in the same layout")
    p.add_argument("--task", type=text, help="task name when the golds file does not say it (or to force LaMP-2N)")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("baseline", help="run baselines and write predictions plus a metrics table")
    p.add_argument("--data", type=text, required=True, help="directory with *_questions.json and *_outputs.json")
    p.add_argument("--task", type=text, required=True, help="LaMP-1, 2, 2N, 3, 4, 5, 6 or 7")
    p.add_argument("--split", type=plain_name, help="file prefix when the directory holds several splits (e.g. dev)")
    p.add_argument("--users", type=bounded("users"), help="number of users (default: all)")
    p.add_argument(
        "--offset", type=bounded("offset"), default=0, help="skip this many users first (fewer than the data has)"
    )
    p.add_argument(
        "--method",
        type=text,
        action="append",
        required=True,
        help="input, style-rules, majority, user-mean, user-ridge, global-ridge, zero-shot, rag or all (repeatable)",
    )
    p.add_argument(
        "--timeline-questions",
        type=bounded("timeline-questions"),
        default=None,
        help="with --split timeline: the last this many reviews of each user are questions "
        "(default: data.timeline-questions of the config)",
    )
    p.add_argument(
        "--k", type=bounded("k"), action="append", help=f"records in the RAG prompt (repeatable; default {DEFAULT_K})"
    )
    p.add_argument("--style", default="turns", choices=["turns", "inline"], help="RAG prompt style")
    p.add_argument("--out", type=out_path, required=True, help="output directory")
    _add_llm_args(p)
    p.set_defaults(func=cmd_baseline)

    p = sub.add_parser("run", help="the centralized HYDRA reference: baselines and HYDRA variants on the same users")
    _add_run_args(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("simulate", help="the main job: federated HYDRA as a Flower simulation (one SuperNode per user)")
    _add_run_args(p)
    p.add_argument("--num-rounds", type=int, help="federated rounds")
    p.add_argument(
        "--ray-address",
        type=text,
        help="HOST:PORT of a running Ray cluster's head: the ClientApps run on its nodes "
        "(default: a Ray instance of the simulation's own on this machine)",
    )
    p.add_argument(
        "--client-cpus",
        type=bounded("client-cpus"),
        help="whole CPUs each ClientApp holds on the Ray cluster (default 2); "
        "cluster CPUs / this many ClientApps run at once",
    )
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("export", help="write a device bundle (ONNX encoders and scorers) of a global base")
    p.add_argument(
        "--from",
        dest="source",
        type=text,
        help="a checkpoint file, or a checkpoint directory (its latest round); default: the seeded initial base",
    )
    p.add_argument("--no-int8", action="store_true", help="skip the int8 quantized encoders")
    p.add_argument(
        "--run-config", type=text, help='model settings, e.g. "model.lora-rank=8" (must match the checkpoint)'
    )
    p.add_argument("--out", type=out_path, required=True, help="bundle directory")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("synth", help="write synthetic LaMP-format users with planted personal structure")
    p.add_argument("--task", type=text, default="LaMP-7", help="LaMP-3 or LaMP-7")
    p.add_argument("--users", type=bounded("synth-users"), default=20)
    p.add_argument("--items", type=bounded("items"), default=30, help="history items per user")
    p.add_argument("--questions", type=bounded("questions"), default=1, help="questions per user")
    p.add_argument("--seed", type=bounded("seed"), default=0)
    p.add_argument("--out", type=out_path, required=True)
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("llm", help="the embedded LLM server (llama.cpp's llama-server + SmolLM2-135M-Instruct)")
    p.add_argument("action", choices=list(LLM_ACTIONS))
    p.add_argument("--port", type=bounded("port"), default=0, help="port (default: a free one)")
    p.add_argument("--threads", type=bounded("threads"), default=2, help="CPU threads (default 2)")
    p.add_argument(
        "--slots",
        type=bounded("slots"),
        default=None,
        help="requests decoded in parallel (default: shared.llm.embedded.EMBEDDED_SLOTS)",
    )
    p.add_argument("--ctx", type=bounded("ctx"), default=2048, help="context length in tokens, per slot")
    p.set_defaults(func=cmd_llm)
    return parser


def _clear_results(out: Path) -> None:
    from simulations.federated import clear_results

    clear_results(out)


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fedhydra`` console script.

    Exit status: 0 done; 2 refused or failed, one line on stderr (a bad argument, a typed FedHydra error: bad data,
    a bad config value, a damaged cache), and nothing written; 3 (``run``, ``simulate``) done with the outputs
    written, but one or more users failed (named on stderr and in ``summary.json``'s ``failed_users``).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # a refused argument (one line on stderr, status 2) or --help (0)
        return exc.code if isinstance(exc.code, int) else 2
    # SIGTERM unwinds like Ctrl-C, so what a command started (an embedded LLM server, a SuperLink) is stopped
    signal.signal(signal.SIGTERM, _terminate)
    try:
        return int(args.func(args) or 0)
    except FedHydraError as exc:  # typed errors, wherever they arise: one line, never a traceback
        print(f"fedhydra {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2


def _one_line(exc: BaseException) -> str:
    """An error's message on one line (a message that spans lines would read as several errors)."""
    return " ".join(str(exc).splitlines())


if __name__ == "__main__":
    sys.exit(main())
