"""Benchmark of LLM serving (issue 14): requests/s and generated tokens/s at 1, 2, 4 and 8 requests in flight.

Run from the repository root on idle cores (about 6 minutes on 2 cores for ``servers`` and ``stub``; the
``episodes`` stage adds about 10 with the default 20 users)::

    .venv/bin/python scripts/bench_llm.py [--only servers|stub|episodes ...] [--out runs/bench_llm]

Stages (all by default; ``--only`` repeatable):

``servers``
    The same real LaMP-7 prompts (``build_messages`` of the task registry's LaMP-7 with the BM25 top
    ``--k`` records of the user's profile, from ``--data``, default ``../shared/data/lamp/lamp7`` relative to
    the repository root) and the same sampling (``--temperature``, ``--max-tokens``, one seed per prompt)
    against (a) today's single-stream server, llama-cpp-python's ``python -m llama_cpp.server`` on
    ``--threads`` threads, run by ``--legacy-python`` (skipped, and said so, when that python cannot import
    ``llama_cpp``), and (b) llama.cpp's ``llama-server`` with ``--slots`` parallel slots (repeat ``--slots`` /
    ``--threads`` to sweep). Each in-flight level gets its own ``--prompts`` fresh prompts, the same for every
    server, so that no server reuses a prompt cached at a lower level.
``stub``
    The same requests against :class:`lab.llm_stub.StubEndpoint` holding each one 0.5 s (no model): what
    the load generator itself can reach; 8 in flight should give close to 8x the requests/s of 1.
``episodes``
    Wall time of building ``--episodes`` LaMP-7 training users' episodes (:func:`simulations.hydra_run.build_episodes`)
    with a cold (fresh, temporary) cache: "before" = the legacy server with client concurrency 1, "after" =
    llama-server with the client concurrency recommended for it. Needs ``LLMConfig.concurrency``; a failure
    of this stage is reported and the others still run.
``answers``
    ``--answers`` LaMP-7 questions' greedy answers and seeded samples (the requests HYDRA sends for a pool), cold,
    through FedHydra's client at concurrency 1 and at the default against fresh llama-servers: how many answers
    differ, and their ROUGE-L against the golds with the paired bootstrap interval of the difference.

Load is made by plain threads with ``requests`` (one session per thread), not by FedHydra's client. Every
figure is printed as a table and written to ``OUT/bench_llm.json`` (and ``OUT/bench_llm.png``), with the CPU
model, the core count and the load average at the start.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from shared.llm.embedded import (  # noqa: E402
    EMBEDDED_MODEL,
    EMBEDDED_SLOTS,
    EMBEDDED_THREADS,
    gguf_path,
    recommended_concurrency,
    start_server,
    stop_server,
)
from shared.procs import free_port  # noqa: E402

DEFAULT_DATA = Path("..") / "shared" / "data" / "lamp" / "lamp7"  # relative to the repository root
LEVELS = (1, 2, 4, 8)


# -- machine -------------------------------------------------------------------------------------
def machine() -> dict:
    """CPU model, cores usable by this process, load average (a busy machine makes every figure lower)."""
    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 0
    return {
        "cpu": model,
        "cores": cores,
        "loadavg_at_start": list(os.getloadavg()),
        "python": platform.python_version(),
    }


# -- prompts -------------------------------------------------------------------------------------
def lamp7_prompts(data: Path, n: int, k: int) -> list[list[dict]]:
    """``n`` real LaMP-7 prompts: each question with the BM25 top ``k`` records of its profile, as the project builds them."""
    from shared.data import load_split
    from shared.prompts import build_messages
    from shared.retrieval import bm25_top_k
    from shared.tasks import get_task

    task = get_task("LaMP-7")
    dataset = load_split(data, task, "dev" if (data / "dev_questions.json").exists() else None)
    if len(dataset.questions) < n:
        raise SystemExit(f"{data} has {len(dataset.questions)} questions, {n} needed")
    out = []
    for q in dataset.questions[:n]:
        top = bm25_top_k(q.query, q.profile_texts(task), k=k)
        out.append(build_messages(task, q.input, [q.profile[i] for i in top]))
    return out


def bodies(prompts: list[list[dict]], model: str, args: argparse.Namespace) -> list[dict]:
    return [
        {
            "model": model,
            "messages": m,
            "temperature": args.temperature,
            "top_p": 0.95,
            "max_tokens": args.max_tokens,
            "seed": 1000 + i,
        }
        for i, m in enumerate(prompts)
    ]


# -- load ----------------------------------------------------------------------------------------
def run_load(url: str, reqs: list[dict], in_flight: int, timeout: float = 300.0) -> dict:
    """Send ``reqs`` with ``in_flight`` threads; requests/s, generated tokens/s, latencies."""
    local = threading.local()

    def one(body: dict) -> tuple[float, int]:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        t0 = time.perf_counter()
        r = session.post(url + "/chat/completions", json=body, timeout=timeout)
        r.raise_for_status()
        usage = r.json().get("usage") or {}
        return time.perf_counter() - t0, int(usage.get("completion_tokens") or 0)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=in_flight) as pool:
        done = list(pool.map(one, reqs))
    wall = time.perf_counter() - t0
    lat = sorted(d[0] for d in done)
    tokens = sum(d[1] for d in done)
    return {
        "in_flight": in_flight,
        "requests": len(reqs),
        "wall_s": round(wall, 3),
        "req_per_s": round(len(reqs) / wall, 3),
        "tok_per_s": round(tokens / wall, 2),
        "completion_tokens": tokens,
        "latency_p50_s": round(lat[len(lat) // 2], 3),
        "latency_max_s": round(lat[-1], 3),
    }


def sweep(
    name: str,
    url: str,
    model: str,
    prompt_sets: list[list[list[dict]]],
    args: argparse.Namespace,
    levels: tuple[int, ...],
) -> list[dict]:
    # one warm-up request (not a benchmark prompt), then each level with its own prompt set
    requests.post(
        url + "/chat/completions",
        json={"model": model, "max_tokens": 4, "messages": [{"role": "user", "content": "Say hi."}]},
        timeout=300,
    ).raise_for_status()
    rows = []
    for level, prompts in zip(levels, prompt_sets):
        row = {"server": name, **run_load(url, bodies(prompts, model, args), level)}
        print(
            f"  {name:<28} {level:>2} in flight: {row['req_per_s']:6.2f} req/s {row['tok_per_s']:7.1f} tok/s",
            flush=True,
        )
        rows.append(row)
    return rows


# -- servers -------------------------------------------------------------------------------------
def legacy_available(python: str) -> bool:
    try:
        return (
            subprocess.run([python, "-c", "import llama_cpp.server"], capture_output=True, timeout=120).returncode == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


class LegacyServer:
    """Today's embedded server: ``python -m llama_cpp.server`` (one request at a time), in its own session."""

    def __init__(self, python: str, threads: int, log_dir: Path):
        self.python, self.threads, self.log_dir = python, threads, log_dir
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> str:
        port = free_port()
        cmd = [
            self.python,
            "-m",
            "llama_cpp.server",
            "--model",
            str(gguf_path()),
            "--model_alias",
            EMBEDDED_MODEL,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_threads",
            str(self.threads),
            "--n_ctx",
            "2048",
            "--verbose",
            "False",
        ]
        log = open(self.log_dir / "legacy-server.log", "ab")
        self.proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
        log.close()
        url = f"http://127.0.0.1:{port}/v1"
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"llama_cpp.server exited ({self.proc.returncode}); see {self.log_dir}/legacy-server.log"
                )
            try:
                if requests.get(url + "/models", timeout=2).status_code == 200:
                    return url
            except requests.RequestException:
                pass
            time.sleep(0.25)
        self.__exit__()
        raise RuntimeError("llama_cpp.server did not answer within 180 s")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            from shared.procs import stop_process_tree

            stop_process_tree(self.proc, grace=10)
            self.proc = None


class NewServer:
    """llama-server via :func:`shared.llm.embedded.start_server`, in a private state folder."""

    def __init__(self, slots: int, threads: int, state: Path):
        self.slots, self.threads, self.state = slots, threads, state

    def __enter__(self) -> str:
        return start_server(slots=self.slots, threads=self.threads, state_dir=self.state).url

    def __exit__(self, *exc: object) -> None:
        stop_server(self.state)


def stage_servers(args, prompt_sets, levels, tmp: Path) -> tuple[list[dict], list[str]]:
    rows, notes = [], []
    if legacy_available(args.legacy_python):
        name = f"llama_cpp.server t{args.threads[0]}"
        print(f"{name} (llama-cpp-python, one request at a time):", flush=True)
        with LegacyServer(args.legacy_python, args.threads[0], tmp) as url:
            rows += sweep(name, url, EMBEDDED_MODEL, prompt_sets, args, levels)
    else:
        note = f"legacy server skipped: {args.legacy_python} cannot import llama_cpp"
        print(note, flush=True)
        notes.append(note)
    for threads in args.threads:
        for slots in args.slots:
            name = f"llama-server np{slots} t{threads}" + (
                " (default)" if (slots, threads) == (EMBEDDED_SLOTS, EMBEDDED_THREADS) else ""
            )
            print(f"{name}:", flush=True)
            with NewServer(slots, threads, tmp / f"np{slots}-t{threads}") as url:
                rows += sweep(name, url, EMBEDDED_MODEL, prompt_sets, args, levels)
    return rows, notes


def stage_stub(args, prompt_sets, levels) -> list[dict]:
    from lab.llm_stub import StubEndpoint

    print("stub endpoint, 0.5 s per request (no model):", flush=True)
    with StubEndpoint(delay_s=0.5) as stub:
        return sweep("stub 0.5 s/request", stub.url, "stub", prompt_sets, args, levels)


# -- episodes ------------------------------------------------------------------------------------
def stage_episodes(args, tmp: Path) -> dict:
    from shared.config import RunConfig
    from shared.data import load_split
    from shared.llm.client import LLMClient, LLMConfig
    from shared.llm.embedded import embedded_config
    from shared.users import split_users
    from simulations.hydra_run import build_episodes

    cfg = RunConfig.from_mapping(
        {"data.task": "LaMP-7", "data.dir": str(args.data), "data.train-users": args.episodes, "data.test-users": 0}
    )
    dataset = load_split(args.data, cfg.task, "dev" if (args.data / "dev_questions.json").exists() else None)
    users, _ = split_users(dataset, train_users=args.episodes, test_users=0)
    out: dict = {"users": len(users)}

    def timed(label: str, config: LLMConfig) -> None:
        llm = LLMClient(config)
        t0 = time.perf_counter()
        _, stats = build_episodes(dataset.task, users, llm, cfg, with_golds=True, progress=False)
        wall = time.perf_counter() - t0
        llm.close()
        out[label] = {
            "concurrency": config.concurrency,
            "wall_s": round(wall, 1),
            **stats,
            "llm_requests": llm.stats.calls,
        }
        print(
            f"  {label:<27} concurrency {config.concurrency}: {wall:7.1f} s for {len(users)} users "
            f"({stats['episodes']} episodes, {llm.stats.calls} LLM requests)",
            flush=True,
        )

    print(f"episodes of {len(users)} LaMP-7 users, cold cache:", flush=True)
    if legacy_available(args.legacy_python):
        with LegacyServer(args.legacy_python, args.threads[0], tmp) as url:
            timed(
                "before",
                LLMConfig(
                    base_url=url,
                    model=EMBEDDED_MODEL,
                    endpoint_id="bench:legacy",
                    cache_path=str(tmp / "cache-before.sqlite"),
                    concurrency=1,
                ),
            )
    else:
        out["before"] = f"skipped: {args.legacy_python} cannot import llama_cpp"
        print("  before: " + out["before"], flush=True)
    with NewServer(EMBEDDED_SLOTS, EMBEDDED_THREADS, tmp / "episodes-new") as url:
        timed(
            "after",
            embedded_config(url, cache_path=str(tmp / "cache-after.sqlite"), concurrency=recommended_concurrency()),
        )
    with NewServer(EMBEDDED_SLOTS, EMBEDDED_THREADS, tmp / "episodes-at-once") as url:
        # the same, but a greedy answer and its samples sent at once (each slot computes the prompt again)
        timed(
            "after, same prompt at once",
            embedded_config(
                url,
                cache_path=str(tmp / "cache-at-once.sqlite"),
                concurrency=recommended_concurrency(),
                same_prompt_in_turn=False,
            ),
        )
    if isinstance(out.get("before"), dict):
        out["speedup"] = round(out["before"]["wall_s"] / out["after"]["wall_s"], 2)
        print(f"  speed-up {out['speedup']}x", flush=True)
    return out


# -- answers -------------------------------------------------------------------------------------
def stage_answers(args, tmp: Path) -> dict:
    """The same requests, cold, at client concurrency 1 and at the default against fresh llama-servers: how many
    answers differ (a batch's composition changes llama.cpp's arithmetic) and what that does to their ROUGE-L."""
    from shared.data import load_split
    from shared.hydra.candidates import PoolConfig, pool_calls
    from shared.llm.client import LLMClient
    from shared.llm.embedded import embedded_config
    from shared.metrics import example_score
    from shared.retrieval import bm25_top_k
    from shared.stats import paired_bootstrap
    from shared.tasks import get_task

    task = get_task("LaMP-7")
    dataset = load_split(args.data, task, "dev" if (args.data / "dev_questions.json").exists() else None)
    # questions after the servers stage's prompts: no prompt is shared with another stage
    questions = dataset.questions[len(args.levels.split(",")) * args.prompts :][: args.answers]
    pool = PoolConfig()
    calls, golds, kinds = [], [], []
    for q in questions:
        top = bm25_top_k(q.query, q.profile_texts(task), k=pool.k)
        mine = pool_calls(task, q.input, [q.profile[i] for i in top], pool)  # a greedy answer and its samples, as HYDRA
        calls += mine
        golds += [dataset.golds[q.id]] * len(mine)
        kinds += ["greedy"] + ["sample"] * (len(mine) - 1)
    default = recommended_concurrency()
    runs: dict[int, dict[str, Any]] = {}
    for concurrency in (1, default):
        with NewServer(EMBEDDED_SLOTS, EMBEDDED_THREADS, tmp / f"answers-c{concurrency}") as url:
            llm = LLMClient(embedded_config(url, cache_path="", concurrency=concurrency))
            t0 = time.perf_counter()
            raw = llm.complete_many(calls)
            answers = [task.parse_answer(a) if isinstance(a, str) else "" for a in raw]  # a failure scores 0
            runs[concurrency] = {
                "answers": answers,
                "wall_s": round(time.perf_counter() - t0, 1),
                "failed": sum(not isinstance(a, str) for a in raw),
            }
            llm.close()
    one, many = runs[1]["answers"], runs[default]["answers"]
    out: dict = {
        "questions": len(questions),
        "requests": len(calls),
        "concurrency": [1, default],
        "wall_s": [runs[1]["wall_s"], runs[default]["wall_s"]],
        "failed": [runs[1]["failed"], runs[default]["failed"]],
    }
    for kind in ("greedy", "sample"):
        idx = [i for i, k in enumerate(kinds) if k == kind]
        a = [example_score(task, one[i], golds[i]) for i in idx]
        b = [example_score(task, many[i], golds[i]) for i in idx]
        cmp = paired_bootstrap(a, b)
        out[kind] = {
            "answers": len(idx),
            "differ": sum(one[i] != many[i] for i in idx),
            "rouge_l_concurrency_1": round(sum(a) / len(a), 4),
            "rouge_l_default": round(sum(b) / len(b), 4),
            "difference": round(cmp.mean, 4),
            "interval": [round(cmp.low, 4), round(cmp.high, 4)],
        }
        print(
            f"  {kind}: {out[kind]['differ']} of {len(idx)} answers differ; ROUGE-L {out[kind]['rouge_l_concurrency_1']} "
            f"at 1 in flight, {out[kind]['rouge_l_default']} at {default}: "
            f"{cmp.mean:+.4f} [{cmp.low:+.4f}, {cmp.high:+.4f}]",
            flush=True,
        )
    return out


# -- report --------------------------------------------------------------------------------------
def table(rows: list[dict]) -> str:
    lines = [
        "| server | in flight | requests/s | tokens/s | p50 latency s | x of 1 in flight |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    base: dict[str, float] = {}
    for r in rows:
        if r["in_flight"] == 1:
            base[r["server"]] = r["req_per_s"]
        ratio = r["req_per_s"] / base[r["server"]] if base.get(r["server"]) else float("nan")
        lines.append(
            f"| {r['server']} | {r['in_flight']} | {r['req_per_s']:.2f} | {r['tok_per_s']:.1f} | "
            f"{r['latency_p50_s']:.2f} | {ratio:.2f} |"
        )
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for name in dict.fromkeys(r["server"] for r in rows):
        mine = [r for r in rows if r["server"] == name]
        ax = axes[1] if name.startswith("stub") else axes[0]
        ax.plot([r["in_flight"] for r in mine], [r["req_per_s"] for r in mine], marker="o", label=name)
    for ax, title in zip(axes, ("LLM servers (real LaMP-7 prompts)", "stub endpoint, 0.5 s per request")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("requests in flight")
        ax.set_ylabel("requests/s")
        ax.set_title(title)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--only",
        action="append",
        choices=["servers", "stub", "episodes", "answers"],
        help="run only this stage (repeatable; default: all)",
    )
    parser.add_argument(
        "--data", type=Path, default=None, help=f"LaMP-7 folder (default {DEFAULT_DATA} from the repository root)"
    )
    parser.add_argument("--prompts", type=int, default=16, help="prompts per in-flight level (default 16)")
    parser.add_argument("--levels", default="1,2,4,8", help="requests in flight (default 1,2,4,8)")
    parser.add_argument("--k", type=int, default=4, help="profile records per prompt (default 4, as prompt.k)")
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument(
        "--slots", type=int, action="append", help=f"llama-server slots (repeatable; default {EMBEDDED_SLOTS})"
    )
    parser.add_argument(
        "--threads", type=int, action="append", help=f"server threads (repeatable; default {EMBEDDED_THREADS})"
    )
    parser.add_argument(
        "--legacy-python", default=sys.executable, help="python that runs llama_cpp.server (default this one)"
    )
    parser.add_argument("--episodes", type=int, default=20, help="LaMP-7 users in the episodes stage (default 20)")
    parser.add_argument("--answers", type=int, default=40, help="LaMP-7 questions in the answers stage (default 40)")
    parser.add_argument("--out", type=Path, default=Path("runs") / "bench_llm")
    args = parser.parse_args(argv)
    args.slots = args.slots or [EMBEDDED_SLOTS]
    args.threads = args.threads or [EMBEDDED_THREADS]
    args.data = (args.data or ROOT / DEFAULT_DATA).resolve()
    levels = tuple(int(x) for x in args.levels.split(","))
    stages = args.only or ["servers", "stub", "episodes", "answers"]

    info = machine()
    print(f"CPU: {info['cpu']}; {info['cores']} cores; load average {info['loadavg_at_start']}", flush=True)
    result: dict = {
        "machine": info,
        "settings": {
            "prompts_per_level": args.prompts,
            "levels": levels,
            "k": args.k,
            "temperature": args.temperature,
            "top_p": 0.95,
            "max_tokens": args.max_tokens,
            "data": str(args.data),
            "slots": args.slots,
            "threads": args.threads,
        },
        "rows": [],
        "notes": [],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-llm-") as tmp_name:
        tmp = Path(tmp_name)
        if "servers" in stages or "stub" in stages:
            flat = lamp7_prompts(args.data, args.prompts * len(levels), args.k)
            prompt_sets = [flat[i * args.prompts : (i + 1) * args.prompts] for i in range(len(levels))]
        if "servers" in stages:
            rows, notes = stage_servers(args, prompt_sets, levels, tmp)
            result["rows"] += rows
            result["notes"] += notes
        if "stub" in stages:
            result["rows"] += stage_stub(args, prompt_sets, levels)
        if "episodes" in stages:
            try:
                result["episodes"] = stage_episodes(args, tmp)
            except Exception as exc:  # noqa: BLE001 - the other stages' figures still count
                note = f"episodes stage failed: {type(exc).__name__}: {exc}"
                print(note, flush=True)
                result["notes"].append(note)
        if "answers" in stages:
            result["answers"] = stage_answers(args, tmp)

    rows = result["rows"]
    if rows:
        print("\n" + table(rows))
        legacy = {r["in_flight"]: r["req_per_s"] for r in rows if r["server"].startswith("llama_cpp.server")}
        default = {r["in_flight"]: r["req_per_s"] for r in rows if r["server"].endswith("(default)")}
        if legacy and default:
            best_legacy = max(legacy.values())
            result["speedup_default_vs_legacy"] = round(
                default.get(EMBEDDED_SLOTS, max(default.values())) / best_legacy, 2
            )
            print(
                f"\nllama-server default at {EMBEDDED_SLOTS} in flight vs today's server at its best: "
                f"{result['speedup_default_vs_legacy']}x"
            )
        stub = {r["in_flight"]: r["req_per_s"] for r in rows if r["server"].startswith("stub")}
        if 1 in stub and 8 in stub:
            result["stub_8_vs_1"] = round(stub[8] / stub[1], 2)
            print(f"stub: 8 in flight = {result['stub_8_vs_1']}x of 1 in flight")
        try:
            plot(rows, args.out / "bench_llm.png")
        except Exception as exc:  # noqa: BLE001 - a plot is optional
            result["notes"].append(f"no plot: {exc}")
    (args.out / "bench_llm.json").write_text(json.dumps(result, indent=1))
    print(f"\nwritten to {args.out}/bench_llm.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
