"""A store writer SIGKILLed at random: the harness of ``tests/client/test_store.py`` and the ``store-kill`` scenario
of ``scripts/fault_injection.py``.

A child process rewrites a user's history, episodes, personal heads and meta in a loop, each write a new version
(:data:`WRITER`); :func:`kill_writer` SIGKILLs it at a random moment or just before it renames a temporary file
into place, and :func:`versions` reopens what it left and says which version each file holds, raising
``AssertionError`` when a file mixes versions (a torn write). Mode ``naive`` writes in place, without a temporary
file and a rename: the control that shows the harness catches torn files.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, cast

import numpy as np

from client.store import UserStore
from shared.hydra.spec import ModelConfig

__all__ = ["HISTORY_ITEMS", "WRITER", "versions", "kill_writer", "temporaries"]

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
    if naive:  # what the store must not do: write a file in place (the heads, in 16 KiB pieces)
        from safetensors.numpy import save
        data = save({"head.adapter.weight": np.full((256, 256), version, np.float32)},
                    metadata={"format": "fedhydra-heads", "version": "3", "model": model.to_json()})
        with open(store.heads_path, "wb") as fh:
            for at in range(0, len(data), 1 << 14):
                fh.write(data[at: at + (1 << 14)])
                fh.flush()
        continue
    store.write_history(history)
    store.write_episodes([Episode(qid=f"v{version}-{i}", input="x" * 500, query="x", gold=str(version),
                                  corpus=tuple(history[:20]), top=[0, 1], bm25=[1.0, 0.5]) for i in range(40)])
    store.write_heads({"head.adapter.weight": np.full((256, 256), version, np.float32)}, model)
    store.update_meta(version=version)
""" % {"items": HISTORY_ITEMS}  # noqa: UP031 - Python source full of braces: %-format fills it


def _check(condition: bool, message: str) -> None:
    if not condition:  # (an AssertionError, as the tests' asserts raised, also under python -O)
        raise AssertionError(message)


def versions(store: UserStore) -> dict[str, int]:
    """The version of each file (0 when absent); raises if a file is damaged or mixes versions."""
    out = {}
    history = store.read_history()
    found = {item["text"].split()[0] for item in history}
    _check(len(found) <= 1 and (not history or len(history) == HISTORY_ITEMS), f"history mixes versions {found}")
    out["history"] = int(found.pop()[1:]) if found else 0
    episodes = store.read_episodes() or []
    found = {ep.gold for ep in episodes}
    _check(len(found) <= 1 and (not episodes or len(episodes) == 40), f"episodes mix versions {found}")
    out["episodes"] = int(found.pop()) if found else 0
    heads = store.read_heads(ModelConfig())
    if heads is None:
        out["heads"] = 0
    else:
        values = np.unique(heads["head.adapter.weight"])
        _check(values.size == 1, f"heads mix versions {values[:5]}")
        out["heads"] = int(values[0])
    out["meta"] = int((store.read_meta() or {}).get("version", 0))
    return out


def kill_writer(root: Path, start: int, rng: random.Random, mode: str = "atomic") -> None:
    """Start a writer and SIGKILL it after a random time, or (mode ``before-rename:n``) as it is about to rename
    its n-th temporary file into place."""
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(root), str(start), mode],
        cwd=REPO,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    out = cast(IO[bytes], proc.stdout)  # stdout=PIPE
    try:
        line = out.readline().strip()
        _check(line == b"ready", f"the writer did not start: {line!r}")
        if mode.startswith("before-rename"):
            line = out.readline()
            _check(line.startswith(b"renaming"), f"the writer did not reach a rename: {line!r}")
        else:
            time.sleep(rng.uniform(0.02, 0.6))
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    _check(proc.returncode == -signal.SIGKILL, f"the writer ended with {proc.returncode}, not SIGKILL")


def temporaries(store: UserStore) -> list[Path]:
    """The store's temporary files (each one a write cut before its rename, or one in progress)."""
    return [p for p in store.path.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp")]
