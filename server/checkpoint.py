"""Checkpoints of the global base: one versioned safetensors file per round, written atomically (Flower-free).

``<dir>/round-0007.safetensors`` holds the shared tensors after round 7 and, as metadata, the round, the
run's task and (differential privacy runs) the privacy accountant's ledger; :func:`latest_checkpoint` finds the
newest readable one so that a run can resume, :func:`checkpoint_meta` reads its metadata.

Example:
    >>> import tempfile, pathlib, numpy as np
    >>> from shared.hydra.model import ModelConfig
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = save_checkpoint(d, 2, {"base.a": np.ones(2, np.float32)}, model=ModelConfig(), task="LaMP-7")
    >>> rnd, arrays = latest_checkpoint(d, model=ModelConfig())
    >>> rnd, arrays["base.a"].tolist()
    (2, [1.0, 1.0])
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping

import numpy as np

from shared.hydra.bundle import BundleError, load_tensors, save_tensors

__all__ = ["save_checkpoint", "latest_checkpoint", "checkpoint_path", "checkpoint_meta"]

_NAME = re.compile(r"^round-(\d{4,})\.safetensors$")


def checkpoint_path(directory: str | Path, server_round: int) -> Path:
    return Path(directory) / f"round-{server_round:04d}.safetensors"


def save_checkpoint(directory: str | Path, server_round: int, arrays: Mapping[str, np.ndarray], *, model,
                    **meta: object) -> Path:
    """Write the global base after ``server_round`` (atomic: a crash leaves the previous files intact)."""
    return save_tensors(checkpoint_path(directory, server_round), arrays, kind="base", model=model,
                        round=server_round, **meta)


def latest_checkpoint(directory: str | Path, *, model=None) -> tuple[int, dict[str, np.ndarray]] | None:
    """(round, arrays) of the newest readable checkpoint, or None when there is none."""
    folder = Path(directory)
    if not folder.is_dir():
        return None
    rounds = sorted((int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name)))
    for rnd, path in reversed(rounds):
        try:
            arrays, _ = load_tensors(path, kind="base", model=model)
        except BundleError:
            continue  # a damaged file: fall back to the one before
        return rnd, arrays
    return None


def checkpoint_meta(directory: str | Path, server_round: int, *, model=None) -> dict[str, str]:
    """The metadata of the checkpoint of ``server_round`` (raises BundleError if it is missing or damaged)."""
    return load_tensors(checkpoint_path(directory, server_round), kind="base", model=model)[1]
