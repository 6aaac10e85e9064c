"""SIGKILL during ``add_history``, ``fit`` and ``update_base`` (20 times each, real processes): every store stays
readable (history, episodes, heads, the bundle loads and answers), nothing added is lost, and no leftover survives
the next open (no temporary file, no staging folder; the store's size bounded by one bundle plus its data).
Against a deterministic OpenAI-compatible stub endpoint (not a language model)."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from client.sdk import PersonalClient
from client.store import UserStore
from lab.llm_stub import StubEndpoint
from shared.hydra.spec import ModelConfig
from shared.llm import LLMClient, LLMConfig
from shared.synthetic import generate
from tests.conftest import REPO

pytestmark = pytest.mark.slow

KILLS = 20
CHILD = textwrap.dedent("""
    import json, sys
    from client.sdk import PersonalClient
    from shared.llm import LLMClient, LLMConfig
    args = json.loads(sys.argv[1])
    llm = LLMClient(LLMConfig(base_url=args["url"], cache_path=args["cache"], max_retries=0, concurrency=4))
    client = PersonalClient(args["store"], task="LaMP-7", llm=llm)
    client.models  # loaded before the clock starts
    print("ready", flush=True)
    n = 0
    while True:
        n += 1
        if args["op"] == "add_history":
            client.add_history([{"text": f"{args['tag']} added {n}"}])
        elif args["op"] == "fit":
            client.fit()
        else:
            client.update_base(args["bundles"][n % 2])
        print("did", n, flush=True)
""")
WINDOW = {"add_history": (0.0, 0.4), "fit": (0.0, 2.5), "update_base": (0.0, 5.0)}
"""Seconds after the child is ready within which it is killed (about one or two of its operations)."""


def size_of(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def kill_after(args: dict, delay: float) -> int:
    """Run the child, SIGKILL it ``delay`` seconds after it is ready; returns how many operations it finished."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, json.dumps(args)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        line = proc.stdout.readline().strip()
        assert line == b"ready", proc.stderr.read()[-3000:]
        time.sleep(delay)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        out = proc.communicate(timeout=60)[0]
    assert proc.returncode == -signal.SIGKILL
    return out.count(b"did")


@pytest.mark.parametrize("op", ["add_history", "fit", "update_base"])
def test_sigkill_during_an_operation_leaves_the_store_readable_and_bounded(tmp_path, bundle, op):
    questions, _, _ = generate("LaMP-7", n_users=1, items_per_user=12, seed=5)
    other = shutil.copytree(bundle, tmp_path / "other")
    manifest = json.loads((other / "bundle.json").read_text())
    (other / "bundle.json").write_text(json.dumps({**manifest, "margin": 0.5}))
    rng = random.Random(op)
    with StubEndpoint(delay_s=0.0) as stub:
        cache = str(tmp_path / "cache.sqlite")
        llm = LLMClient(LLMConfig(base_url=stub.url, cache_path=cache, max_retries=0))
        client = PersonalClient(tmp_path / "store", task="LaMP-7", llm=llm, bundle=bundle)
        client.add_history(questions[0]["profile"])
        client.fit()
        folder = client.store.path
        bundle_bytes = size_of(folder / "bundle")
        args = {
            "url": stub.url,
            "cache": cache,
            "store": str(tmp_path / "store"),
            "op": op,
            "bundles": [str(bundle), str(other)],
        }
        items, finished, left = len(client.history), 0, 0
        for trial in range(KILLS):
            if op == "fit" and trial % 2:
                UserStore(tmp_path / "store", "me", task="LaMP-7").clear_episodes()  # onboarding killed too
            finished += kill_after({**args, "tag": f"t{trial}"}, rng.uniform(*WINDOW[op]))
            left += sum(1 for p in folder.iterdir() if p.name.startswith(".") and p.name != ".lock")
            reopened = PersonalClient(tmp_path / "store", task="LaMP-7", llm=llm)  # opening sweeps
            leftovers = [p.name for p in folder.iterdir() if p.name.startswith(".") and p.name != ".lock"]
            assert leftovers == [], f"trial {trial}: {leftovers}"
            history = reopened.history
            assert len(history) >= items and len({h["id"] for h in history}) == len(history), f"trial {trial}"
            items = len(history)
            reopened.store.read_episodes()
            reopened.store.read_heads(ModelConfig())
            if op == "update_base" or trial == KILLS - 1:
                result = reopened.answer(questions[0]["input"], variant="hydra-calls-0")  # the bundle loads, answers
                assert result.output
            assert size_of(folder) <= bundle_bytes + (8 << 20), f"trial {trial}: {size_of(folder)} bytes"
    assert finished >= 1  # the kills did not all land before the first operation
    if op == "update_base":
        assert left > 0  # some kills did leave a staging folder for the next open to sweep
    if op == "add_history":
        assert items > len(questions[0]["profile"])
