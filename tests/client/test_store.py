"""The node-local store survives its writer being killed: each file is at its old version or its new one.

A child process rewrites a user's history, episodes, personal heads and meta in a loop, each write a new
version; the test SIGKILLs it at a random moment, reopens the store as a restarted client would, and checks
that every file loads, holds one version only, and never went back to an older version than it had before
(nothing lost). A control run with a naive writer (no temporary file, no rename) shows that the harness does
catch torn files.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from client.store import STALE_TEMP_S, StoreError, UserStore
from shared.hydra.spec import ModelConfig

REPO = Path(__file__).resolve().parents[2]
HISTORY_ITEMS = 4000
WRITER = r"""
import json, sys
import numpy as np
from client.store import UserStore
from shared.hydra.episodes import Episode
from shared.hydra.spec import ModelConfig

root, version, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
naive = mode == "naive"
if mode.startswith("before-rename:"):  # stop before the n-th rename, say so, and wait for the kill
    import os, time
    skip, real_replace = [int(mode.split(":")[1])], os.replace

    def replace(src, dst):
        if skip[0] == 0:
            print("renaming", dst, flush=True)
            time.sleep(60)
        skip[0] -= 1
        real_replace(src, dst)

    os.replace = replace
store = UserStore(root, "alice", task="LaMP-7")
model = ModelConfig()
print("ready", flush=True)
while True:
    version += 1
    history = [{"id": str(i), "text": f"v{version} " + "tweet text " * 4} for i in range(%(items)d)]
    if naive:  # what the store must not do: write in place
        with open(store.path / "history.json", "w", encoding="utf-8") as fh:
            for chunk in json.JSONEncoder().iterencode(history):
                fh.write(chunk)
        continue
    store.write_history(history)
    store.write_episodes([Episode(qid=f"v{version}-{i}", input="x" * 500, query="x", gold=str(version),
                                  corpus=tuple(history[:20]), top=[0, 1], bm25=[1.0, 0.5]) for i in range(40)])
    store.write_heads({"head.adapter.weight": np.full((256, 256), version, np.float32)}, model)
    store.update_meta(version=version)
""" % {"items": HISTORY_ITEMS}


def versions(store: UserStore) -> dict[str, int]:
    """The version of each file (0 when absent); raises if a file is damaged or mixes versions."""
    out = {}
    history = store.read_history()
    found = {item["text"].split()[0] for item in history}
    assert len(found) <= 1 and (not history or len(history) == HISTORY_ITEMS), f"history mixes versions {found}"
    out["history"] = int(found.pop()[1:]) if found else 0
    episodes = store.read_episodes() or []
    found = {ep.gold for ep in episodes}
    assert len(found) <= 1 and (not episodes or len(episodes) == 40), f"episodes mix versions {found}"
    out["episodes"] = int(found.pop()) if found else 0
    heads = store.read_heads(ModelConfig())
    if heads is None:
        out["heads"] = 0
    else:
        values = np.unique(heads["head.adapter.weight"])
        assert values.size == 1, f"heads mix versions {values[:5]}"
        out["heads"] = int(values[0])
    out["meta"] = int((store.read_meta() or {}).get("version", 0))
    return out


def kill_writer(root: Path, start: int, rng: random.Random, mode: str = "atomic") -> None:
    """Start a writer and SIGKILL it after a random time, or (mode ``before-rename:n``) as it is about to rename
    its n-th temporary file into place."""
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(root), str(start), mode],
                            cwd=REPO, stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert proc.stdout.readline().strip() == b"ready"
        if mode.startswith("before-rename"):
            assert proc.stdout.readline().startswith(b"renaming")
        else:
            time.sleep(rng.uniform(0.02, 0.6))
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL


def temporaries(store: UserStore) -> list[Path]:
    return [p for p in store.path.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp")]


@pytest.mark.slow
def test_a_writer_killed_at_random_leaves_every_file_old_or_new(tmp_path):
    rng = random.Random(0)
    before = {"history": 0, "episodes": 0, "heads": 0, "meta": 0}
    torn_writes, seen = 0, set()
    for trial in range(24):  # even trials: at a random time; odd ones: just before one of the 4 files is renamed
        kill_writer(tmp_path, max(before.values()), rng, "atomic" if trial % 2 == 0 else f"before-rename:{trial % 8}")
        store = UserStore(tmp_path, "alice", task="LaMP-7")  # the client restarts: opening must work
        now = versions(store)
        for name in now:
            assert now[name] >= before[name], f"trial {trial}: {name} went back from {before[name]} to {now[name]}"
        before = now
        new = set(temporaries(store)) - seen
        assert len(new) <= 1  # one write at a time
        torn_writes += len(new)
        seen |= new
    assert before["history"] >= 5  # the writer got through many versions
    assert torn_writes >= 12  # every odd trial at least killed a write in the middle
    store = UserStore(tmp_path, "alice", task="LaMP-7")
    assert len(temporaries(store)) == torn_writes  # fresh ones are not swept on open (a writer may be live)
    store.sweep(max_age_s=0)
    assert temporaries(store) == [] and versions(store) == before


@pytest.mark.slow
def test_the_harness_catches_torn_files_of_a_naive_writer(tmp_path):
    """Control: writing in place does get torn by the same kills (so the test above has teeth)."""
    rng = random.Random(1)
    torn = 0
    for _ in range(6):
        kill_writer(tmp_path, 0, rng, "naive")
        try:
            versions(UserStore(tmp_path, "alice", task="LaMP-7"))
        except (StoreError, AssertionError):
            torn += 1
    assert torn >= 3


def test_stale_temporaries_are_swept_when_the_store_opens_and_fresh_ones_kept(tmp_path):
    store = UserStore(tmp_path, "bob", task="LaMP-7")
    store.write_history([{"id": "1", "text": "kept"}])
    old = store.path / ".history.json.abc123.tmp"
    fresh = store.path / ".episodes.jsonl.def456.tmp"
    for p in (old, fresh):
        p.write_text("half a fi")
    os.utime(old, (time.time() - STALE_TEMP_S - 5,) * 2)
    reopened = UserStore(tmp_path, "bob", task="LaMP-7")
    assert not old.exists() and fresh.exists()
    assert reopened.read_history() == [{"id": "1", "text": "kept"}]


def test_a_damaged_file_is_reported_never_replaced(tmp_path):
    store = UserStore(tmp_path, "carol", task="LaMP-7")
    (store.path / "history.json").write_text('[{"id": "1", "te')
    with pytest.raises(StoreError, match="history.json: damaged"):
        store.read_history()
    assert (store.path / "history.json").read_text() == '[{"id": "1", "te'
    (store.path / "meta.json").write_text(json.dumps({"format_version": 99, "task": "LaMP-7"}))
    with pytest.raises(StoreError, match="store format version 99"):
        UserStore(tmp_path, "carol", task="LaMP-7")
