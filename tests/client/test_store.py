"""The node-local store survives its writer being killed: each file is at its old version or its new one.

A child process rewrites a user's history, episodes, personal heads and meta in a loop, each write a new
version; the test SIGKILLs it at a random moment, reopens the store as a restarted client would, and checks
that every file loads, holds one version only, and never went back to an older version than it had before
(nothing lost), and that opening removed what the killed writer left. A control run with a naive writer (heads
written in place, no temporary file, no rename) shows that the harness does catch torn files. The harness is
:mod:`lab.faults.store` (the fault-injection script uses it too).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from client.store import LOCK, STALE_TEMP_S, StoreError, UserStore
from lab.faults.store import kill_writer, temporaries, versions
from tests.conftest import REPO


@pytest.mark.slow
def test_a_writer_killed_at_random_leaves_every_file_old_or_new(tmp_path):
    rng = random.Random(0)
    before = {"history": 0, "episodes": 0, "heads": 0, "meta": 0}
    torn_writes, seen = 0, set()
    for trial in range(24):  # even trials: at a random time; odd ones: just before one of the 4 files is renamed
        kill_writer(tmp_path, max(before.values()), rng, "atomic" if trial % 2 == 0 else f"before-rename:{trial % 8}")
        folder = tmp_path / "alice"
        new = {p.name for p in folder.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp")} - seen
        assert len(new) <= 1  # one write at a time
        torn_writes += len(new)
        seen |= new
        store = UserStore(tmp_path, "alice", task="LaMP-7")  # the client restarts: opening must work
        assert temporaries(store) == []  # no writer is alive: what the killed one left is swept, however fresh
        now = versions(store)
        for name in now:
            assert now[name] >= before[name], f"trial {trial}: {name} went back from {before[name]} to {now[name]}"
        before = now
    assert before["history"] >= 5  # the writer got through many versions
    assert torn_writes >= 12  # every odd trial at least killed a write in the middle


NAIVE = r"""
import sys
import numpy as np
from safetensors.numpy import save
from client.store import UserStore
from shared.hydra.spec import ModelConfig

store = UserStore(sys.argv[1], "alice", task="LaMP-7")
meta = {"format": "fedhydra-heads", "version": "4", "model": ModelConfig().to_json()}
print("ready", flush=True)
version = 0
while True:  # what the store must not do: write in place
    version += 1
    data = save({"head.adapter.weight": np.full((512, 512), version, np.float32)}, metadata=meta)
    with open(store.heads_path, "wb") as fh:
        for at in range(0, len(data), 1 << 14):
            fh.write(data[at: at + (1 << 14)])
            fh.flush()
"""


@pytest.mark.slow
def test_the_harness_catches_torn_files_of_a_naive_writer(tmp_path):
    """Control: writing in place does get torn by the same kills (so the test above has teeth)."""
    rng = random.Random(1)
    torn = 0
    for _ in range(6):
        proc = subprocess.Popen([sys.executable, "-c", NAIVE, str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE)
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(rng.uniform(0.05, 0.3))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        try:
            versions(UserStore(tmp_path, "alice", task="LaMP-7"))
        except (StoreError, AssertionError):
            torn += 1
    assert torn >= 3


def test_while_a_writer_is_alive_only_stale_temporaries_are_swept_and_all_once_it_is_gone(tmp_path):
    import fcntl

    store = UserStore(tmp_path, "bob", task="LaMP-7")
    store.write_history([{"id": "1", "text": "kept"}])
    old = store.path / ".heads.safetensors.abc123.tmp"
    fresh = store.path / ".predictions.json.def456.tmp"
    staging = store.path / ".bundle-0a1b2c3d"
    staging.mkdir()
    (staging / "encoder.onnx").write_bytes(b"x" * 1000)
    for p in (old, fresh):
        p.write_text("half a fi")
    os.utime(old, (time.time() - STALE_TEMP_S - 5,) * 2)
    live = os.open(store.path / LOCK, os.O_RDWR)  # a live writer (another process, as far as flock can tell)
    fcntl.flock(live, fcntl.LOCK_SH)
    try:
        reopened = UserStore(tmp_path, "bob", task="LaMP-7")
        assert not old.exists() and fresh.exists() and staging.exists()  # the live writer's may be in use
    finally:
        os.close(live)
    UserStore(tmp_path, "bob", task="LaMP-7")  # no writer alive: every left-over goes, files and folders
    assert not fresh.exists() and not staging.exists()
    assert reopened.read_history() == [{"id": "1", "text": "kept"}]


def test_an_earlier_sdks_scorer_graphs_go_and_the_store_still_loads(tmp_path):
    """Stores of an SDK that wrote each user's ONNX scorer graphs (``scorer-<role>.onnx``; heads are now scored in
    numpy) open as before, and those files are removed once no writer is alive."""
    import fcntl

    store = UserStore(tmp_path, "dan", task="LaMP-7")
    store.write_history([{"id": "1", "text": "kept"}])
    graphs = [store.path / f"scorer-{role}.onnx" for role in ("reranker", "adapter")]
    for graph in graphs:
        graph.write_bytes(b"an old scorer graph")
    live = os.open(store.path / LOCK, os.O_RDWR)  # an earlier SDK's process may still be writing them
    fcntl.flock(live, fcntl.LOCK_SH)
    try:
        UserStore(tmp_path, "dan", task="LaMP-7")
        assert all(graph.exists() for graph in graphs)
    finally:
        os.close(live)
    reopened = UserStore(tmp_path, "dan", task="LaMP-7")
    assert not any(graph.exists() for graph in graphs)
    assert reopened.read_history() == [{"id": "1", "text": "kept"}]


def test_a_damaged_file_is_reported_never_replaced(tmp_path):
    store = UserStore(tmp_path, "carol", task="LaMP-7")
    (store.path / "accepted_base.json").write_text('{"norm": 1')
    with pytest.raises(StoreError, match="accepted_base.json: damaged"):
        store.read_accepted_base()
    assert (store.path / "accepted_base.json").read_text() == '{"norm": 1'
    (store.path / "meta.json").write_text(json.dumps({"format_version": 99, "task": "LaMP-7"}))
    with pytest.raises(StoreError, match="store format version 99"):
        UserStore(tmp_path, "carol", task="LaMP-7")
    (store.path / "meta.json").write_text(json.dumps({"format_version": 2, "user": "carol", "task": "LaMP-7"}))
    store.close()
    for name in ("store.sqlite-wal", "store.sqlite-shm"):
        (store.path / name).unlink(missing_ok=True)
    (store.path / "store.sqlite").write_bytes(b"SQLite format 3\x00" + b"garbage" * 100)
    with pytest.raises(StoreError, match="store.sqlite: damaged"):
        UserStore(tmp_path, "carol", task="LaMP-7").read_history()
