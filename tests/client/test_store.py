"""The node-local store survives its writer being killed: each file is at its old version or its new one.

A child process rewrites a user's history, episodes, personal heads and meta in a loop, each write a new
version; the test SIGKILLs it at a random moment, reopens the store as a restarted client would, and checks
that every file loads, holds one version only, and never went back to an older version than it had before
(nothing lost). A control run with a naive writer (no temporary file, no rename) shows that the harness does
catch torn files. The harness is :mod:`simulations.faults.store` (the fault-injection script uses it too).
"""

from __future__ import annotations

import json
import os
import random
import time

import pytest

from client.store import STALE_TEMP_S, StoreError, UserStore
from simulations.faults.store import kill_writer, temporaries, versions


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
