"""Benchmark of the on-device SDK (issue 5, item 5): answer latency, process memory, a new user's fit time.

Run from the repository root (about 3 minutes on 2 idle cores, longer on busy ones; ``--quick`` about 1)::

    .venv/bin/python scripts/bench_sdk.py [--quick] [--reps N] [--markdown FILE]

It exports a device bundle from a freshly initialized shared base (weights do not matter for speed) into a
temporary folder, and prints markdown tables of:

1. **Latency** of "rerank 10 records + score 8 candidates" for one query (the two scorer calls that
   :meth:`client.sdk.PersonalClient.answer` makes: ``DeviceModels.score`` of the reranker on the BM25 top-10
   records, then of the adapter on 8 candidates, both with the user's personal heads: the ONNX encoder in
   onnxruntime, the user's head on the bundle's trunk in numpy), on 2 threads
   (onnxruntime ``intra_op_num_threads=2``, ``torch.set_num_threads(2)``), for the fp32 and the int8 ONNX
   encoders of the bundle and for torch eager (:meth:`shared.training.train.Trainer.scores` on the same base
   and heads, the same examples). Each is measured *cold* (no embedding cached: every text is encoded) and
   *warm* (the user's history records cached, as the SDK keeps them in the store: only the query and the
   candidates are encoded). Variants run in interleaved blocks so that load from other processes affects
   them alike; the ratios torch/ONNX are of p50s measured in the same run. Also the whole ``answer()`` with
   an instant stand-in LLM (retrieval, context, candidate pool, features and both scorers; no LLM time).
   The int8 encoder's graph is inspected: how many of its linear layers really are int8.
2. **Peak RSS** (``ru_maxrss``) of a fresh SDK process that imports :class:`client.sdk.PersonalClient`,
   opens the user's store (bundle, heads, cached history embeddings) and answers repeatedly; and whether
   torch, flwr, transformers, peft or onnx were imported there (they must not be).
3. **A new user's fit** from a 50-item history with the base frozen, in a new store: installing the bundle
   (apart: ``update_base`` copies, verifies, loads and proves it), ``add_history`` (encodes the records) and the on-device part of ``fit()``
   (``FitReport.fit_seconds``: features from the ONNX base, numpy head fitting, writing the heads). The LLM's labelling of the episodes is NOT
   timed: LaMP-7 episodes are labelled by a deterministic instant stand-in LLM (its calls are counted,
   their time reported apart and excluded); LaMP-3 episodes are label-pool-only pseudo-questions that need
   no LLM at all (the adapter's head only).

Data: real LaMP users from ``../shared/data/lamp/{lamp7,lamp3}`` relative to the repository root (never
copied), else synthetic users from :func:`shared.synthetic.generate`; the printout says which.
The stand-in LLM's answers are simple edits of the prompt's input: they make realistic candidate pools and
episode labels for timing, and are never a quality figure.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, cast

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from shared.llm.client import LLMClient, LLMConfig  # noqa: E402 - after the repository is on sys.path

THREADS = 2
HISTORY = 50
N_RECORDS = 10
N_CANDIDATES = 8
TARGETS = {"int8_p50_ms": 100.0, "goal_ms": 50.0, "speedup": 2.0, "rss_mb": 300.0, "fit_s": 5.0}


def instant_answer(body: Mapping[str, Any]) -> str:
    """The stand-in LLM's answer to a chat-completions request body (deterministic, microseconds).

    A rewrite gets an edit of the prompt's input (greedy: the input ending with a word of the record shown just
    before it, so answers differ by record; sample ``s``: the input without its ``s``-th word), a rating a
    digit derived from the text, a paraphrase request the tweet without mentions and links.
    """
    messages = body["messages"]
    content = str(messages[-1]["content"])
    text = content.split(": ", 1)[-1].strip() or content
    words = text.split()
    if "scale of 1 to 5" in content:
        return str(1 + (len(text) + int(body["seed"])) % 5)
    if content.startswith("Rewrite this tweet"):
        return " ".join(w for w in words if not w.startswith(("@", "http"))).capitalize() or text
    if body["temperature"] > 0 and len(words) > 1:
        drop = int(body["seed"]) % len(words)
        return " ".join(w for i, w in enumerate(words) if i != drop)
    shown = [str(m["content"]).split() for m in messages[:-1] if m["role"] == "assistant"]
    return " ".join(words[:-1] + [shown[-1][0]] if shown and shown[-1] and words else words) or text


class _InstantResponse:
    status_code = 200

    def __init__(self, text: str) -> None:
        self.text = text
        self.headers: dict[str, str] = {}

    def json(self) -> dict[str, Any]:
        return {"choices": [{"message": {"role": "assistant", "content": self.text}}]}


class _InstantSession:
    """Stands for the HTTP session of :class:`LLMClient`: answers every POST at once with :func:`instant_answer`."""

    def post(self, url: str, json: Mapping[str, Any], **_: Any) -> _InstantResponse:
        return _InstantResponse(instant_answer(json))


class InstantLLM(LLMClient):
    """The real LLM client (budgets, stats, parsing) in front of an instant, deterministic stand-in endpoint,
    with no response cache: used only to time what is not the LLM, never for a quality figure."""

    def __init__(self) -> None:
        super().__init__(
            LLMConfig(base_url="http://instant-llm.invalid/v1", cache_path=""), session=cast(Any, _InstantSession())
        )  # a session in all but name


# -- data -----------------------------------------------------------------------------------------------
def lamp7_user(data: Path) -> tuple[str, list[dict[str, str]], str, list[str]]:
    """(source, a 50-item history, that user's question input, other users' inputs as more queries)."""
    from shared.data import load_split
    from shared.tasks import get_task

    folder = data / "lamp7"
    if (folder / "dev_questions.json").exists():
        questions = load_split(folder, get_task("LaMP-7"), split="dev").questions
        user = next(q for q in questions if len(q.profile) >= HISTORY)
        history = [{"id": str(p["id"]), "text": p["text"]} for p in user.profile[:HISTORY]]
        others = [q.input for q in questions if q.id != user.id][:40]
        source = f"real LaMP-7 (dev question {user.id}: first {HISTORY} of the user's {len(user.profile)} tweets)"
        return source, history, user.input, others
    from shared.synthetic import generate

    generated, _, _ = generate("LaMP-7", n_users=1, items_per_user=HISTORY, questions_per_user=41, seed=11)
    history = [{"id": p["id"], "text": p["text"]} for p in generated[0]["profile"]]
    return (
        "synthetic LaMP-7 (shared.synthetic.generate; no real data found)",
        history,
        generated[0]["input"],
        [q["input"] for q in generated[1:]],
    )


def lamp3_user(data: Path) -> tuple[str, list[dict[str, str]]]:
    """(source, a 50-review history)."""
    file = data / "lamp3" / "user_histories.json"
    if file.exists():
        user = json.loads(file.read_text())[0]
        items = [{"id": str(i["id"]), "text": i["text"], "score": str(i["score"])} for i in user["items"][:HISTORY]]
        return f"real LaMP-3 (user {user['user']}: first {HISTORY} of {user['n_items']} reviews)", items
    from shared.synthetic import generate

    questions, _, _ = generate("LaMP-3", n_users=1, items_per_user=HISTORY, seed=11)
    items = [{"id": p["id"], "text": p["text"], "score": p["score"]} for p in questions[0]["profile"]]
    return "synthetic LaMP-3 (shared.synthetic.generate; no real data found)", items


# -- measuring ------------------------------------------------------------------------------------------
def files_mb(files: list[Path]) -> float:
    return sum(f.stat().st_size for f in files) / 1e6


def int8_linear_layers(path: Path) -> tuple[int, int]:
    """(int8 linear ops, float MatMuls whose weight is an initializer, read directly or through a Transpose)."""
    import onnx

    graph = onnx.load(str(path)).graph
    inits = {i.name for i in graph.initializer}
    made_by = {o: n for n in graph.node for o in n.output}
    int8 = sum(n.op_type in ("MatMulInteger", "DynamicQuantizeMatMul", "QLinearMatMul") for n in graph.node)
    float_weights = 0
    for n in graph.node:
        if n.op_type == "MatMul":
            src = made_by.get(n.input[1])
            if n.input[1] in inits or (src is not None and src.op_type == "Transpose" and src.input[0] in inits):
                float_weights += 1
    return int8, float_weights


def ms(seconds: list[float]) -> dict[str, float]:
    a = np.asarray(seconds) * 1000
    return {
        "p50": float(np.percentile(a, 50)),
        "p95": float(np.percentile(a, 95)),
        "min": float(a.min()),
        "n": float(len(a)),
    }


def interleaved(
    variants: Mapping[str, tuple[Callable[[], object], Callable[[], object]]], reps: int, block: int, warmup: int
) -> dict[str, list[float]]:
    """Time each variant's ``run`` (after its untimed ``prepare``) ``reps`` times, in blocks of ``block`` that
    rotate between the variants, after ``warmup`` untimed runs of each."""
    names = list(variants)
    for name in names:
        prepare, run = variants[name]
        for _ in range(warmup):
            prepare()
            run()
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(-(-reps // block)):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            prepare, run = variants[name]
            time.sleep(0.05)  # the other runtime's idle threads stop spinning
            for _ in range(min(block, reps - len(times[name]))):
                prepare()
                started = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - started)
    return times


SDK_PROCESS = r"""
import json, resource, sys, time
sys.path[:0] = [sys.argv[2], sys.argv[3]]
from client.sdk import DeviceConfig, PersonalClient
from client.store import UserStore
from shared.hydra.candidates import PoolConfig
from shared.hydra.infer import InferenceConfig
from bench_sdk import InstantLLM
args = json.loads(sys.argv[1])
started = time.perf_counter()
inference = InferenceConfig(m=args["m"], pool=PoolConfig(n_samples=args["samples"]))
client = PersonalClient(UserStore(args["store"], args["user"], task="LaMP-7"), args["bundle"], llm=InstantLLM(),
                        task="LaMP-7", device=DeviceConfig(threads=2, inference=inference))
client.answer(args["queries"][0])
first = time.perf_counter() - started
times = []
for i in range(args["n"]):
    t = time.perf_counter()
    client.answer(args["queries"][i % len(args["queries"])])
    times.append(time.perf_counter() - t)
hwm = [int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")]
print(json.dumps({"maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "first_s": first,
                  "hwm_mb": hwm[0] / 1024 if hwm else None, "answers": len(times) + 1,
                  "p50_ms": sorted(times)[len(times) // 2] * 1000,
                  "loaded": sorted(m for m in ("torch", "flwr", "transformers", "peft", "onnx") if m in sys.modules)}))
"""


def sdk_process(store: Path, queries: list[str], n: int, samples: int, bundle: Path | None, home: Path) -> dict:
    """Peak memory and timings of a fresh process that opens the store and answers ``n + 1`` queries."""
    args = {
        "store": str(store.parent),
        "user": store.name,
        "queries": queries,
        "n": n,
        "m": N_RECORDS,
        "samples": samples,
        "bundle": str(bundle) if bundle else None,
    }
    env = {**os.environ, "FEDHYDRA_HOME": str(home), "OMP_NUM_THREADS": str(THREADS)}
    # ru_maxrss survives exec: a process forked straight from this large one would report this one's RSS.
    # A small launcher forks the measured process, so that its peak is its own.
    launcher = "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"
    command = [
        sys.executable,
        "-c",
        launcher,
        sys.executable,
        "-c",
        SDK_PROCESS,
        json.dumps(args),
        str(ROOT),
        str(Path(__file__).resolve().parent),
    ]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the SDK process failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def new_user(root: Path, task: str, history: list[dict[str, str]], bundle: Path, **options: Any) -> dict:
    """Seconds of each step of a new user's first fit, in a fresh store (and the FitReport)."""
    from client.sdk import DeviceConfig, PersonalClient
    from client.store import UserStore

    t = time.perf_counter()  # install the bundle: copy, verify every file, load it and prove it answers
    client = PersonalClient(
        UserStore(root, "new", task=task),
        bundle,
        llm=InstantLLM(),
        task=task,
        device=DeviceConfig(threads=THREADS, **options),
    )
    _ = client.models  # the onnxruntime sessions (update_base made them while proving the bundle)
    load = time.perf_counter() - t
    t = time.perf_counter()
    client.add_history(history)
    add = time.perf_counter() - t
    t = time.perf_counter()
    report = client.fit()
    total = time.perf_counter() - t
    return {
        "load": load,
        "add": add,
        "fit": report.fit_seconds,
        "episodes": total - report.fit_seconds,
        "report": report,
    }


# -- the benchmark ---------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run, noisier figures)")
    parser.add_argument("--reps", type=int, help="timed repetitions per latency variant (default 60, quick 15)")
    parser.add_argument(
        "--data",
        type=Path,
        default=ROOT.parent / "shared" / "data" / "lamp",
        help="folder with lamp7/ and lamp3/ (default: ../shared/data/lamp from the repository root)",
    )
    parser.add_argument("--markdown", type=Path, help="also write the printed tables to this file")
    args = parser.parse_args(argv)
    reps = args.reps or (15 if args.quick else 60)
    tmp = Path(tempfile.mkdtemp(prefix="fedhydra-bench-sdk-"))
    try:
        lines = run(args, reps, 5 if args.quick else 10, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.markdown:
        args.markdown.write_text("\n".join(lines) + "\n")
    return 0


def run(args: argparse.Namespace, reps: int, block: int, tmp: Path) -> list[str]:
    os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # torch's idle threads sleep, as the SDK's onnxruntime ones
    os.environ["FEDHYDRA_HOME"] = str(tmp / "home")  # nothing of the benchmark lands in the user's cache
    import onnxruntime
    import torch
    from torch import nn

    torch.set_num_threads(THREADS)
    from dataclasses import replace

    from client.device import PERSONAL, DeviceModels
    from client.sdk import HISTORY_ROLE, DeviceConfig, PersonalClient
    from client.store import UserStore, text_digest
    from shared.hydra.candidates import PoolConfig, llm_answers
    from shared.hydra.context import UserContext
    from shared.hydra.episodes import Episode, EpisodeConfig, top_records
    from shared.hydra.examples import RoleExample, adapter_example, reranker_example
    from shared.hydra.infer import InferenceConfig
    from shared.hydra.settings import TrainConfig
    from shared.hydra.tokenizer import TextTokenizer
    from shared.tasks import get_task
    from shared.training.export import export_bundle, template_encoder
    from shared.training.model import (
        HydraBase,
        ModelConfig,
        PersonalHeads,
        initial_shared_state,
    )
    from shared.training.train import Trainer

    load_before = os.getloadavg()
    task = get_task("LaMP-7")
    data7, history, query_input, other_inputs = lamp7_user(args.data)
    data3, history3 = lamp3_user(args.data)
    config = ModelConfig()

    # -- the bundle, from a freshly initialized base ----------------------------------------------------------
    print(f"exporting a bundle into {tmp} ...", file=sys.stderr)
    state = initial_shared_state(config, 0)
    bundle = export_bundle(state, config, tmp / "bundle", template=template_encoder(tmp / "onnx"))
    files = [p for p in bundle.iterdir() if p.is_file()]
    fp32_mb = files_mb([p for p in files if not p.name.endswith(".int8.onnx")])
    int8_mb = files_mb([p for p in files if p.name.endswith(".int8.onnx") or not p.name.startswith("encoder-")])
    int8_ops, float_matmuls = int8_linear_layers(bundle / "encoder-reranker.int8.onnx")

    # -- one user with a fitted store (int8; fp32 gets the same heads), the examples of one query -------------
    print("fitting the benchmark user ...", file=sys.stderr)
    llm = InstantLLM()
    clients: dict[str, PersonalClient] = {}
    for variant in ("int8", "fp32"):
        client = PersonalClient(
            UserStore(tmp / "store", variant, task=task.name),
            llm=llm,
            task=task,
            device=DeviceConfig(threads=THREADS, quantized=variant == "int8", inference=InferenceConfig(m=N_RECORDS)),
        )
        if variant == "fp32":  # the int8 user's heads, in the store before the bundle loads them
            shutil.copyfile(clients["int8"].store.heads_path, client.store.heads_path)
        client.update_base(bundle)
        client.add_history(history)
        if variant == "int8":
            client.fit()
        clients[variant] = client
    int8_client = clients["int8"]
    ctx = UserContext.build(task, history)
    query = task.extract_query(query_input)
    top, bm25 = top_records(task, query, ctx.items, N_RECORDS)
    ep = Episode(qid="", input=query_input, query=query, gold=None, corpus=ctx.items, top=top, bm25=bm25)
    rr_example = reranker_example(task, "", ep, threshold=None)
    assert rr_example is not None and len(rr_example.items) == N_RECORDS
    rr_scores = int8_client.models.score("reranker", rr_example, PERSONAL)
    chosen = [top[i] for i in np.argsort(-rr_scores, kind="stable")[:4]]
    records = [ctx.items[i] for i in chosen]
    for samples in range(1, 12):  # the fewest LLM samples that make a pool of at least 8 candidates
        ep.greedy, ep.samples = llm_answers(task, query_input, records, llm, PoolConfig(n_samples=samples))
        full, pool = adapter_example(task, "", ep, ctx, int8_client.models.editor, records=chosen, with_target=False)
        if len(pool.texts) >= N_CANDIDATES:
            break
    ad_example = RoleExample("", full.query, full.items[:N_CANDIDATES], full.extras[:N_CANDIDATES])
    int8_client.device = replace(
        int8_client.device, inference=InferenceConfig(m=N_RECORDS, pool=PoolConfig(n_samples=samples))
    )
    record_texts = [task.item_text(h) for h in history]

    # -- torch eager: the same base, heads and examples -----------------------------------------------------
    base = HydraBase(config)
    base.load_shared_state(state)
    base.eval()
    trainer = Trainer(base, TrainConfig(), tokenizer=TextTokenizer(bundle / "tokenizer.json"))
    heads = PersonalHeads(config)
    head_state = int8_client.store.read_heads(config)
    if head_state is None:
        raise SystemExit("the benchmark's client has no personal heads after its fit")
    heads.load_state(head_state)
    heads.eval()

    def torch_scores() -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            return (
                trainer.scores("reranker", rr_example, cast(nn.Linear, heads.heads["reranker"])),
                trainer.scores("adapter", ad_example, cast(nn.Linear, heads.heads["adapter"])),
            )

    def onnx_scores(client: PersonalClient) -> tuple[np.ndarray, np.ndarray]:
        m = client.models
        return m.score("reranker", rr_example, PERSONAL), m.score("adapter", ad_example, PERSONAL)

    trainer.embed_frozen(HISTORY_ROLE, record_texts, config.max_item_tokens)
    torch_history = dict(trainer._cache)  # the records' embeddings, put back before each warm run

    def torch_warm() -> None:
        trainer.invalidate()
        trainer._cache.update(torch_history)

    parity = {
        v: max(float(np.abs(a - b).max()) for a, b in zip(torch_scores(), onnx_scores(c), strict=True))
        for v, c in clients.items()
    }

    def cold(client: PersonalClient) -> Callable[[], None]:
        return lambda: client.models.clear_cache(history=True)

    stored = int8_client.store.read_embeddings(int8_client.models.embedding_id(HISTORY_ROLE))
    int8_vectors = np.stack([stored[text_digest(t)] for t in record_texts])

    def warm_models(m: DeviceModels, vectors: np.ndarray = int8_vectors) -> Callable[[], None]:
        def prepare() -> None:
            m.clear_cache(history=True)
            m.pin_history(HISTORY_ROLE, record_texts, vectors)

        return prepare

    def warm(client: PersonalClient) -> Callable[[], None]:
        """Only the history records' embeddings cached, as read back from the store by a new SDK process."""
        m = client.models
        stored = client.store.read_embeddings(m.embedding_id(HISTORY_ROLE))
        return warm_models(m, np.stack([stored[text_digest(t)] for t in record_texts]))

    variants: dict[str, tuple[Callable[[], object], Callable[[], object]]] = {}
    for variant, client in clients.items():
        variants[f"{variant} ONNX|cold"] = (cold(client), functools.partial(onnx_scores, client))
        variants[f"{variant} ONNX|warm"] = (warm(client), functools.partial(onnx_scores, client))
    spinning = DeviceModels(int8_client.bundle_dir, threads=THREADS, quantized=True, spin=True)
    stored_heads = int8_client.store.read_heads(config)
    if stored_heads is None:
        raise SystemExit("the int8 client's store holds no personal heads after its fit")
    for role in ("reranker", "adapter"):
        spinning.load_personal(role, stored_heads)
    variants["int8 ONNX, spinning threads|warm"] = (
        warm_models(spinning),
        lambda: (spinning.score("reranker", rr_example, PERSONAL), spinning.score("adapter", ad_example, PERSONAL)),
    )
    variants["torch eager|cold"] = (trainer.invalidate, torch_scores)
    variants["torch eager|warm"] = (torch_warm, torch_scores)
    variants["int8 answer()|cold"] = (cold(int8_client), lambda: int8_client.answer(query_input))
    variants["int8 answer()|warm"] = (warm(int8_client), lambda: int8_client.answer(query_input))
    print(f"timing {len(variants)} variants x {reps} repetitions ...", file=sys.stderr)
    timings = {k: ms(v) for k, v in interleaved(variants, reps, block, warmup=3).items()}
    pool_size = len(int8_client.answer(query_input).candidates)
    encoded = {}
    for cache in ("cold", "warm"):
        m = int8_client.models
        variants[f"int8 ONNX|{cache}"][0]()
        before = m.encoded, m.encoded_tokens
        variants[f"int8 ONNX|{cache}"][1]()
        encoded[cache] = (m.encoded - before[0], m.encoded_tokens - before[1])

    # -- the SDK process's memory ---------------------------------------------------------------------------
    print("SDK processes ...", file=sys.stderr)
    queries = [query_input, *other_inputs]
    n = 10 if args.quick else 40
    process = sdk_process(int8_client.store.path, queries, n, samples, None, tmp / "home")
    process_bundle = sdk_process(int8_client.store.path, queries, n, samples, bundle, tmp / "home")

    # -- new users' first fit ---------------------------------------------------------------------------------
    print("fitting new users ...", file=sys.stderr)
    fits = [
        (
            "LaMP-7",
            data7,
            "instant stand-in LLM: 4 pseudo-questions (default EpisodeConfig), both heads",
            new_user(tmp / "new7", "LaMP-7", history, bundle, inference=InferenceConfig(m=N_RECORDS)),
        )
    ]
    try:
        label_only = EpisodeConfig(pseudo_questions=0, free_questions=16)  # label-pool-only: no LLM call at all
    except TypeError:  # an EpisodeConfig without LLM-free pseudo-questions
        label_only = None
    if label_only is not None:
        fits.append(
            (
                "LaMP-3",
                data3,
                "16 label-pool-only pseudo-questions, no LLM at all; adapter head only",
                new_user(tmp / "new3", "LaMP-3", history3, bundle, episodes=label_only),
            )
        )
    return report(
        {
            "args": args,
            "reps": reps,
            "versions": f"onnxruntime {onnxruntime.__version__}, torch {torch.__version__}",
            "load": (load_before[0], os.getloadavg()[0]),
            "data": (data7, data3),
            "timings": timings,
            "encoded": encoded,
            "parity": parity,
            "pool_size": pool_size,
            "samples": samples,
            "fp32_mb": fp32_mb,
            "int8_mb": int8_mb,
            "all_mb": files_mb(files),
            "int8_layers": (int8_ops, float_matmuls),
            "processes": (process, process_bundle),
            "fits": fits,
        }
    )


def report(v: dict[str, Any]) -> list[str]:
    """The markdown printout (also returned as lines)."""
    lines: list[str] = []

    def out(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    args, timings, encoded, fits = v["args"], v["timings"], v["encoded"], v["fits"]
    process, process_bundle = v["processes"]
    cpu = platform.processor()
    if Path("/proc/cpuinfo").exists():
        cpu = next(
            (
                ln.split(":", 1)[1].strip()
                for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")
            ),
            cpu,
        )
    command = (
        ".venv/bin/python scripts/bench_sdk.py"
        + (" --quick" if args.quick else "")
        + (f" --reps {args.reps}" if args.reps else "")
    )
    out(
        f"Machine: {os.cpu_count()} cores ({cpu}); {THREADS} threads; {v['versions']}. Load average (1 min) "
        f"{v['load'][0]:.1f} at the start, {v['load'][1]:.1f} at the end"
        + (": other processes shared the cores." if v["load"][0] > 0.5 else " (the benchmark's own processes).")
    )
    out(f"Command: `{command}`: {v['reps']} timed repetitions per variant (after 3 untimed), in interleaved blocks.")
    out(f"Data: {v['data'][0]}; {v['data'][1]}.")
    out()
    out(f"**Rerank {N_RECORDS} records + score {N_CANDIDATES} candidates, one query, {THREADS} threads (ms)**")
    out()
    out("| model | cache | p50 | p95 | min |")
    out("|---|---|---:|---:|---:|")
    words = {"cold": "cold (nothing cached)", "warm": "warm (history records cached)"}
    for key, t in timings.items():
        name, cache = key.split("|")
        if "answer" not in name and "spinning" not in name:
            out(f"| {name} | {words[cache]} | {t['p50']:.1f} | {t['p95']:.1f} | {t['min']:.1f} |")
    ratio = {
        c: (
            timings[f"torch eager|{c}"]["p50"] / timings[f"int8 ONNX|{c}"]["p50"],
            timings[f"torch eager|{c}"]["p50"] / timings[f"fp32 ONNX|{c}"]["p50"],
        )
        for c in ("cold", "warm")
    }
    out()
    out(
        f"torch/int8 (p50): {ratio['warm'][0]:.2f}x warm, {ratio['cold'][0]:.2f}x cold; torch/fp32: "
        f"{ratio['warm'][1]:.2f}x warm, {ratio['cold'][1]:.2f}x cold. Warm: the history records' embeddings are "
        f"cached (the SDK keeps them in the store): the SDK encodes the queries and candidates, {encoded['warm'][0]} "
        f"texts, {encoded['warm'][1]} tokens with padding; cold: also the {N_RECORDS} records, {encoded['cold'][0]} "
        f"texts, {encoded['cold'][1]} tokens. Torch encodes the same texts (the query twice for the adapter, as "
        f"query and as the input candidate). Max |score - torch's|: fp32 {v['parity']['fp32']:.1e}, "
        f"int8 {v['parity']['int8']:.1e}."
    )
    out()
    spin = timings["int8 ONNX, spinning threads|warm"]
    out(
        f"Threads: the SDK's onnxruntime sessions do not spin-wait (`session.intra_op.allow_spinning=0`), and torch "
        f"ran with `OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}`; the same int8 warm path with onnxruntime's "
        f"default spinning threads: p50 {spin['p50']:.1f} ms, p95 {spin['p95']:.1f}, min {spin['min']:.1f}."
    )
    out()
    aw, ac = timings["int8 answer()|warm"], timings["int8 answer()|cold"]
    out(
        f"The whole `answer()` (int8; BM25 over {HISTORY} records, {N_RECORDS} reranked, a pool of {v['pool_size']} "
        f"candidates from an instant stand-in LLM asked for {v['samples']} samples; LLM time ~0): p50 {aw['p50']:.1f} "
        f"ms warm, {ac['p50']:.1f} ms cold (p95 {aw['p95']:.1f} / {ac['p95']:.1f})."
    )
    out()
    out("**Bundle and SDK process**")
    out()
    out("| what | value |")
    out("|---|---:|")
    out(f"| bundle for fp32 (encoders, scorers, base, tokenizer) | {v['fp32_mb']:.1f} MB |")
    out(f"| bundle for int8 | {v['int8_mb']:.1f} MB |")
    out(f"| bundle as exported (both) | {v['all_mb']:.1f} MB |")
    out(
        f"| int8 encoder: int8 linear layers / float MatMuls on a weight | {v['int8_layers'][0]} / "
        f"{v['int8_layers'][1]} |"
    )
    for label, p in (("store holds the bundle", process), ("`bundle=` given (update_base)", process_bundle)):
        out(f"| SDK process peak RSS, {label}, {p['answers']} answers | {p['maxrss_mb']:.0f} MB |")
    loaded = sorted(set(process["loaded"] + process_bundle["loaded"]))
    out(f"| torch / flwr / transformers / peft / onnx imported there | {', '.join(loaded) or 'none'} |")
    out(
        f"| that process: start to first answer; later answers p50 | {process['first_s']:.2f} s; "
        f"{process['p50_ms']:.0f} ms |"
    )
    out()
    out(f"**A new user's first fit, {HISTORY}-item history, base frozen (s)**")
    out()
    out("| task | episodes | load bundle | add_history | fit() on device | add + fit | not timed: episodes |")
    out("|---|---|---:|---:|---:|---:|---:|")
    for name, _, how, f in fits:
        r = f["report"]
        examples = ", ".join(f"{k} {n}" for k, n in r.examples.items())
        out(
            f"| {name} | {how}; examples: {examples} | {f['load']:.2f} | {f['add']:.2f} | {f['fit']:.2f} | "
            f"{f['add'] + f['fit']:.2f} | {f['episodes']:.2f} ({r.llm_calls} LLM calls) |"
        )
    out()
    out(
        "Timed: installing the bundle (`update_base`: copying it into the store, verifying every file, creating "
        "the onnxruntime sessions and answering a probe question; once per bundle), `add_history` (validation, store write, encoding the records and caching them in the store) and "
        "the on-device part of `fit()` (`FitReport.fit_seconds`: features from the frozen ONNX base, numpy head "
        "fitting, writing the heads). Not timed: building the episodes, the LLM's labelling "
        "(with the real LLM the slow part; here the stand-in's calls are counted)."
    )
    out()
    p50w, p50c = timings["int8 ONNX|warm"]["p50"], timings["int8 ONNX|cold"]["p50"]
    worst = max(f["add"] + f["fit"] for *_, f in fits)
    worst_load = max(f["load"] + f["add"] + f["fit"] for *_, f in fits)
    rss = max(process["maxrss_mb"], process_bundle["maxrss_mb"])

    def yes(ok: bool) -> str:
        return "yes" if ok else "no"

    out("**Targets (issue 5)**")
    out()
    out("| target | measured | met |")
    out("|---|---|---|")
    out(
        f"| int8 rerank {N_RECORDS} + score {N_CANDIDATES}: p50 <= 100 ms (goal 50) | {p50w:.1f} ms warm, "
        f"{p50c:.1f} ms cold | {yes(p50w <= 100)} warm, {yes(p50c <= 100)} cold |"
    )
    out(
        f"| int8 >= 2x faster than torch eager (same run) | {ratio['warm'][0]:.2f}x warm, {ratio['cold'][0]:.2f}x "
        f"cold | {yes(ratio['warm'][0] >= 2)} warm, {yes(ratio['cold'][0] >= 2)} cold |"
    )
    out(
        f"| SDK process < 300 MB RSS, no torch or flwr | {rss:.0f} MB, {'neither' if not loaded else 'imported'} | "
        f"{yes(rss < 300 and not loaded)} |"
    )
    out(
        f"| new user's heads <= 5 s, LLM excluded | {worst:.2f} s add + fit ({worst_load:.2f} s with loading the "
        f"bundle), worst task | {yes(worst <= 5)} ({yes(worst_load <= 5)} with loading) |"
    )
    return lines


if __name__ == "__main__":
    sys.exit(main())
